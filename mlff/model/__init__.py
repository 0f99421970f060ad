"""Model configuration and construction."""

from .builder import build_model
from .config import ModelConfig
from .potential import Potential

__all__ = ["ModelConfig", "Potential", "build_model"]
