"""XLM-RoBERTa in TensorFlow / Keras 3: the seven models as `keras.Model`s.

Every model reads and writes the shared checkpoint format (see `xlmr_core`) and trains
with `model.compile(optimizer=...)` + `model.fit(...)` using its own loss.
"""

from .modeling import (
    TFXLMRobertaForCausalLM,
    TFXLMRobertaForMaskedLM,
    TFXLMRobertaForMultipleChoice,
    TFXLMRobertaForQuestionAnswering,
    TFXLMRobertaForSequenceClassification,
    TFXLMRobertaForTokenClassification,
    TFXLMRobertaModel,
    TFXLMRobertaPreTrainedModel,
)

__all__ = [
    "TFXLMRobertaModel",
    "TFXLMRobertaForCausalLM",
    "TFXLMRobertaForMaskedLM",
    "TFXLMRobertaForSequenceClassification",
    "TFXLMRobertaForMultipleChoice",
    "TFXLMRobertaForTokenClassification",
    "TFXLMRobertaForQuestionAnswering",
    "TFXLMRobertaPreTrainedModel",
]
