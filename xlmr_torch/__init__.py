"""PyTorch XLM-RoBERTa: the seven model classes over the shared `xlmr_core` config and checkpoints."""

from .modeling import (
    XLMRobertaForCausalLM,
    XLMRobertaForMaskedLM,
    XLMRobertaForMultipleChoice,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
    XLMRobertaModel,
    XLMRobertaPreTrainedModel,
)
from .pipeline import pipeline  # the function; the module stays importable by name
from .ray_predictor import RayPredictor

__all__ = [
    "XLMRobertaModel",
    "XLMRobertaForCausalLM",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
    "XLMRobertaPreTrainedModel",
    "pipeline",
    "RayPredictor",
]
