"""The PyTorch model: in-graph log-mel front end, audio encoder, text encoder, fusion, heads."""

from mos.model.config import ModelConfig, TargetSpec
from mos.model.mos_model import MosModel

__all__ = ["ModelConfig", "TargetSpec", "MosModel"]
