"""Flax / JAX XLM-RoBERTa: the seven models over the shared `xlmr_core` config and checkpoints,
plus jitted optax training steps (`xlmr_flax.training`)."""

from .modeling import (
    FlaxXLMRobertaForCausalLM,
    FlaxXLMRobertaForMaskedLM,
    FlaxXLMRobertaForMultipleChoice,
    FlaxXLMRobertaForQuestionAnswering,
    FlaxXLMRobertaForSequenceClassification,
    FlaxXLMRobertaForTokenClassification,
    FlaxXLMRobertaModel,
    FlaxXLMRobertaPreTrainedModel,
)
from .pipeline import pipeline  # the function; the module stays importable by name
from .ray_predictor import RayPredictor

__all__ = [
    "FlaxXLMRobertaModel",
    "FlaxXLMRobertaForCausalLM",
    "FlaxXLMRobertaForMaskedLM",
    "FlaxXLMRobertaForSequenceClassification",
    "FlaxXLMRobertaForMultipleChoice",
    "FlaxXLMRobertaForTokenClassification",
    "FlaxXLMRobertaForQuestionAnswering",
    "FlaxXLMRobertaPreTrainedModel",
    "pipeline",
    "RayPredictor",
]
