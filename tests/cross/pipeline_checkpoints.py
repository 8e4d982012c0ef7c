"""Small checkpoints for the pipeline tests, shared by tests/cross and tests/parity.

Each is a directory with the bundled tokenizer (xlmr-tiny's 4,002 pieces) and a random model of
a tiny config whose head carries meaningful `id2label` names, saved by xlmr_torch, so that every
framework and the reference library load the same weights.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizerFast
from xlmr_core.pretrained import bundled_checkpoint

NLI_LABELS = ("contradiction", "neutral", "entailment")
TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")

# name -> (head, config overrides)
CHECKPOINTS = {
    "classifier": (
        "ForSequenceClassification",
        {"id2label": dict(enumerate(("negative", "neutral", "positive")))},
    ),
    "nli": ("ForSequenceClassification", {"id2label": dict(enumerate(NLI_LABELS))}),
    "ranker": ("ForSequenceClassification", {"num_labels": 1}),
    "regression": ("ForSequenceClassification", {"num_labels": 1, "problem_type": "regression"}),
    "multilabel": (
        "ForSequenceClassification",
        {"id2label": dict(enumerate(("a", "b", "c"))), "problem_type": "multi_label_classification"},
    ),
    "tagger": ("ForTokenClassification", {"id2label": dict(enumerate(TAGS))}),
    "qa": ("ForQuestionAnswering", {"num_labels": 2}),
}


def tiny_config(**overrides) -> XLMRobertaConfig:
    values = dict(
        vocab_size=4002,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=66,
        type_vocab_size=1,
    )
    values.update(overrides)
    return XLMRobertaConfig(**values)


def make_checkpoint(name: str, directory: Path, seed: int = 0) -> Path:
    """Write checkpoint `name` of `CHECKPOINTS` (random weights, larger than init so scores spread)."""
    import torch

    head, overrides = CHECKPOINTS[name]
    torch.manual_seed(seed)
    model = getattr(importlib.import_module("xlmr_torch"), f"XLMRoberta{head}")(tiny_config(**overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    model.save_pretrained(directory)
    XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint()).save_pretrained(directory)
    return directory


def checkpoint_factory(tmp_path_factory):
    """`get(name) -> directory`, each made once (the bundled checkpoint is "tiny")."""
    made = {"tiny": bundled_checkpoint()}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = make_checkpoint(name, tmp_path_factory.mktemp(f"pipeline-{name}"))
        return made[name]

    return get
