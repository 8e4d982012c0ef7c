"""PyTorch XLM-RoBERTa: the seven model classes over the shared `xlmr_core` config and checkpoints."""

from . import modeling
from .modeling import *  # noqa: F403 - the seven public models and their base class
from .pipeline import pipeline  # the function; the module stays importable by name
from .ray_predictor import RayPredictor

__all__ = [*modeling.__all__, "pipeline", "RayPredictor"]
