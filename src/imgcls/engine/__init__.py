"""Layer 3: the training loop, transfer-learning policies, checkpoints and evaluation."""
from imgcls.engine.checkpoint import load_checkpoint, save_checkpoint
from imgcls.engine.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from imgcls.engine.trainer import RunResult, Trainer, train
from imgcls.engine.transfer import TransferPolicy

__all__ = ["Config", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "RunResult", "Trainer", "train",
           "TransferPolicy", "load_checkpoint", "save_checkpoint"]
