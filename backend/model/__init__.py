"""ZeroShape-W, one file per part; `ZeroShapeW` is the facade (`encode`, `query`)."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import CONFIGS, ModelConfig, PreprocessConfig, get_config
from .zeroshape import COMPONENTS, Latent, ZeroShapeW

__all__ = [
    "COMPONENTS",
    "CONFIGS",
    "CheckpointError",
    "Latent",
    "ModelConfig",
    "PreprocessConfig",
    "ZeroShapeW",
    "get_config",
    "load_checkpoint",
    "save_checkpoint",
]
