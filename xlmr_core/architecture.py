"""Which canonical tensors a model of a given config and head has, known without any framework.

`inspect` reports missing and unexpected keys with it, `verify` picks the heads to run, and
the fairseq import checks shapes against it. A test holds it equal to the PyTorch models'
own state dicts, so it cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .configuration import XLMRobertaConfig
from .weight_mapping import BASE_MODEL_PREFIX

HEADS = (
    "Model",
    "ForCausalLM",
    "ForMaskedLM",
    "ForSequenceClassification",
    "ForMultipleChoice",
    "ForTokenClassification",
    "ForQuestionAnswering",
)
# Heads whose model keeps the pooler (the others are built without it, as in the reference).
_WITH_POOLER = ("Model", "ForMultipleChoice")


def _linear(shapes: dict, name: str, outputs: int, inputs: int) -> None:
    shapes[f"{name}.weight"] = (outputs, inputs)
    shapes[f"{name}.bias"] = (outputs,)


def _layer_norm(shapes: dict, name: str, size: int) -> None:
    shapes[f"{name}.weight"] = (size,)
    shapes[f"{name}.bias"] = (size,)


def _attention(shapes: dict, name: str, config: XLMRobertaConfig, relative: bool) -> None:
    hidden = config.hidden_size
    for part in ("query", "key", "value"):
        _linear(shapes, f"{name}.self.{part}", hidden, hidden)
    if relative:
        shapes[f"{name}.self.distance_embedding.weight"] = (
            2 * config.max_position_embeddings - 1,
            config.head_dim,
        )
    _linear(shapes, f"{name}.output.dense", hidden, hidden)
    _layer_norm(shapes, f"{name}.output.LayerNorm", hidden)


def base_model_shapes(config: XLMRobertaConfig, prefix: str = "", pooler: bool = True) -> dict[str, tuple]:
    """Canonical name -> shape for the encoder (embeddings, layers, optional pooler)."""
    hidden, shapes = config.hidden_size, {}
    shapes[f"{prefix}embeddings.word_embeddings.weight"] = (config.vocab_size, hidden)
    shapes[f"{prefix}embeddings.position_embeddings.weight"] = (config.max_position_embeddings, hidden)
    shapes[f"{prefix}embeddings.token_type_embeddings.weight"] = (config.type_vocab_size, hidden)
    _layer_norm(shapes, f"{prefix}embeddings.LayerNorm", hidden)
    for i in range(config.num_hidden_layers):
        layer = f"{prefix}encoder.layer.{i}"
        relative = config.position_embedding_type in ("relative_key", "relative_key_query")
        _attention(shapes, f"{layer}.attention", config, relative)
        if config.add_cross_attention:  # cross-attention always uses absolute positions
            _attention(shapes, f"{layer}.crossattention", config, relative=False)
        _linear(shapes, f"{layer}.intermediate.dense", config.intermediate_size, hidden)
        _linear(shapes, f"{layer}.output.dense", hidden, config.intermediate_size)
        _layer_norm(shapes, f"{layer}.output.LayerNorm", hidden)
    if pooler:
        _linear(shapes, f"{prefix}pooler.dense", hidden, hidden)
    return shapes


def expected_shapes(config: XLMRobertaConfig, head: str) -> dict[str, tuple]:
    """Canonical name -> shape of every tensor a `head` model saves (tied copies excluded)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    prefix = "" if head == "Model" else BASE_MODEL_PREFIX + "."
    shapes = base_model_shapes(config, prefix, pooler=head in _WITH_POOLER)
    hidden = config.hidden_size
    if head in ("ForMaskedLM", "ForCausalLM"):
        _linear(shapes, "lm_head.dense", hidden, hidden)
        _layer_norm(shapes, "lm_head.layer_norm", hidden)
        if not config.tie_word_embeddings:
            shapes["lm_head.decoder.weight"] = (config.vocab_size, hidden)
        shapes["lm_head.bias"] = (config.vocab_size,)
    elif head == "ForSequenceClassification":
        _linear(shapes, "classifier.dense", hidden, hidden)
        _linear(shapes, "classifier.out_proj", config.num_labels, hidden)
    elif head == "ForMultipleChoice":
        _linear(shapes, "classifier", 1, hidden)
    elif head == "ForTokenClassification":
        _linear(shapes, "classifier", config.num_labels, hidden)
    elif head == "ForQuestionAnswering":
        _linear(shapes, "qa_outputs", config.num_labels, hidden)
    return shapes


def detect_heads(names: Iterable[str], config: XLMRobertaConfig) -> list[str]:
    """The heads whose weights a checkpoint holds (`Model` when it holds none)."""
    names = set(names)
    architectures = " ".join(config.architectures or [])
    heads = []
    if any(name.startswith("lm_head.") for name in names):
        heads.append("ForCausalLM" if "CausalLM" in architectures else "ForMaskedLM")
    if "classifier.out_proj.weight" in names:
        heads.append("ForSequenceClassification")
    if "classifier.weight" in names:
        heads.append("ForMultipleChoice" if "MultipleChoice" in architectures else "ForTokenClassification")
    if "qa_outputs.weight" in names:
        heads.append("ForQuestionAnswering")
    return heads or ["Model"]
