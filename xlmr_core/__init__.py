"""Framework-neutral core of xlmr: config, tokenizers, checkpoint format, outputs.

Importing this package never imports torch, tensorflow or jax.
"""

from .configuration import PRESETS, XLMRobertaConfig
from .outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

__version__ = "0.1.0"

# The tokenizers pull in sentencepiece / tokenizers; load them on first use.
_LAZY = {
    "XLMRobertaTokenizer": ".tokenization",
    "XLMRobertaTokenizerFast": ".tokenization_fast",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'xlmr_core' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "XLMRobertaConfig",
    "XLMRobertaTokenizer",
    "XLMRobertaTokenizerFast",
    "ModelOutput",
    "BaseModelOutputWithPoolingAndCrossAttentions",
    "CausalLMOutputWithCrossAttentions",
    "MaskedLMOutput",
    "MultipleChoiceModelOutput",
    "QuestionAnsweringModelOutput",
    "SequenceClassifierOutput",
    "TokenClassifierOutput",
]
