"""Training: configuration, loss, metrics, EMA, checkpoints, data parallelism and the loop."""

from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_checkpoint", "load_config",
           "model_from_checkpoint", "save_checkpoint", "train"]
