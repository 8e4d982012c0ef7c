"""Flax / JAX XLM-RoBERTa: the seven models over the shared `xlmr_core` config and checkpoints,
plus jitted optax training steps (`xlmr_flax.training`)."""

from . import modeling
from .modeling import *  # noqa: F403  (the seven models and their base class, `modeling.__all__`)
from .pipeline import pipeline  # the function; the module stays importable by name
from .ray_predictor import RayPredictor

__all__ = [*modeling.__all__, "pipeline", "RayPredictor"]
