"""Shared tiny models for the Flax tests: built once per session, so jit and eager caches are reused."""

from __future__ import annotations

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import numpy as np  # noqa: E402

import xlmr_flax  # noqa: E402
from tests.cross import harness  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402

HEADS = harness.HEADS


def tiny_config(**overrides) -> XLMRobertaConfig:
    """The shared tiny config: every dimension different, so a transposed or swapped weight cannot pass."""
    return harness.tiny_config(**overrides)


def model_class(head: str):
    return getattr(xlmr_flax, f"FlaxXLMRoberta{head}")


@pytest.fixture(scope="session")
def make_model():
    """`make_model(head, seed=0, **config_overrides)`, cached per arguments."""
    cache = {}

    def make(head, seed=0, **overrides):
        if head == "ForQuestionAnswering":
            overrides.setdefault("num_labels", 2)
        key = (head, seed, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = model_class(head)(tiny_config(**overrides), seed=seed)
        return cache[key]

    return make


def token_batch(config, batch=2, length=7, seed=0, choices=None):
    """Ids starting with <s>, the second row right-padded by three tokens."""
    rng = np.random.default_rng(seed)
    shape = (batch, length) if choices is None else (batch, choices, length)
    input_ids = rng.integers(3, config.vocab_size, size=shape)
    input_ids[..., 0] = config.bos_token_id
    attention_mask = np.ones(shape, np.int32)
    attention_mask[1, ..., length - 3 :] = 0
    input_ids[attention_mask == 0] = config.pad_token_id
    return input_ids.astype(np.int32), attention_mask
