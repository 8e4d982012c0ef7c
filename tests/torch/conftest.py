"""Tiny configs and inputs for the PyTorch model tests."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import xlmr_torch  # noqa: E402
from tests.cross import harness  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402

HEADS = tuple(f"XLMRoberta{head}" for head in harness.HEADS)
POSITION_KINDS = harness.POSITION_KINDS

VOCAB = 99
PAD = 1
HIDDEN = 32
HEADS_PER_LAYER = 4
LAYERS = 2


def tiny_config(**overrides) -> XLMRobertaConfig:
    """A 2-layer, 32-wide model with a 40-row position table; no dropout unless asked."""
    values = dict(
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,  # larger than the default so differences are visible
        num_labels=2,
    )
    values.update(overrides)
    return harness.tiny_config(**values)


def decoder_config(**overrides) -> XLMRobertaConfig:
    return tiny_config(**{"is_decoder": True, "add_cross_attention": True, **overrides})


def build(head: str, config: XLMRobertaConfig | None = None, **overrides):
    """A head by class name, in eval mode, with a deterministic initialisation."""
    if config is None:
        config = decoder_config(**overrides) if head == "XLMRobertaForCausalLM" else tiny_config(**overrides)
    torch.manual_seed(0)
    return getattr(xlmr_torch, head)(config).eval()


def token_ids(batch: int = 2, length: int = 7, seed: int = 1) -> torch.Tensor:
    """Random non-special ids (never the pad id)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=generator)


def inputs_for(head: str, batch: int = 2, length: int = 7, choices: int = 3) -> dict:
    """Minimal forward arguments for a head (multiple choice takes [batch, choices, length])."""
    if head == "XLMRobertaForMultipleChoice":
        ids = token_ids(batch * choices, length).view(batch, choices, length)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ids = token_ids(batch, length)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
