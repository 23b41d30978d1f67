"""Layer 3: training for any task — plan(config) -> Plan, fit(plan), the loop, transfer policies,
checkpoints and DDP. `train(config)` is `fit(plan(config))`. The names below are imported when first
used (imgcls.lazy): `imgcls train --help` reads engine.config without importing torch."""
from imgcls.lazy import lazy_exports

__all__ = lazy_exports(__name__, {
    "imgcls.engine.checkpoint": ["load_checkpoint", "save_checkpoint"],
    "imgcls.engine.config": ["Config", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig"],
    "imgcls.engine.fit": ["RunResult", "fit", "train"],
    "imgcls.engine.plan": ["Plan", "plan"],
    "imgcls.engine.transfer": ["TransferPolicy"]})
