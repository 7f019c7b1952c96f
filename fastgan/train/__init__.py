"""Training: the loop, configuration and presets, checkpoints, distributed helpers."""

from .build import build_models
from .checkpoint import CheckpointError, load_checkpoint
from .config import DEFAULT_PRESET, PRESETS, TrainConfig, load_config_file, make_config
from .evaluation import load_generator_for_eval
from .loop import NonFiniteLossError, Trainer, TrainResult, train

__all__ = [
    "CheckpointError", "DEFAULT_PRESET", "NonFiniteLossError", "PRESETS", "TrainConfig", "TrainResult",
    "Trainer", "build_models", "load_checkpoint", "load_config_file", "load_generator_for_eval", "make_config", "train",
]
