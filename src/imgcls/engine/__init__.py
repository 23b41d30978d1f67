"""Layer 3: training for any task — plan(config) -> Plan, fit(plan), the loop, transfer policies,
checkpoints and DDP. `train(config)` is `fit(plan(config))`."""
from imgcls.engine.checkpoint import load_checkpoint, save_checkpoint
from imgcls.engine.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from imgcls.engine.fit import RunResult, fit, train
from imgcls.engine.plan import Plan, plan
from imgcls.engine.transfer import TransferPolicy

__all__ = ["Config", "DataConfig", "ModelConfig", "OptimConfig", "Plan", "RunResult", "TrainConfig", "TransferPolicy",
           "fit", "load_checkpoint", "plan", "save_checkpoint", "train"]
