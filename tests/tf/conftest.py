"""Tiny configs and inputs for the TF model tests (no PyTorch needed)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import xlmr_tf  # noqa: E402
from tests.cross import harness  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402

tf.get_logger().setLevel(logging.ERROR)


HEADS = tuple(f"TFXLMRoberta{head}" for head in harness.HEADS)
# XLMR_HEAVY=1 runs the slow per-head checks (SavedModel, .keras) for every head, not a slice.
HEAVY = os.environ.get("XLMR_HEAVY") == "1"


def heads_or(*default: str) -> tuple[str, ...]:
    """Every head under XLMR_HEAVY=1, else `default` (the default run's deterministic slice)."""
    return HEADS if HEAVY else default


POSITION_KINDS = harness.POSITION_KINDS
VOCAB = 99
PAD = 1
HIDDEN = 32


def tiny_config(**overrides) -> XLMRobertaConfig:
    """A 2-layer, 32-wide model with a 40-row position table; no dropout unless asked."""
    values = dict(
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,  # larger than the default so differences are visible
    )
    values.update(overrides)
    return harness.tiny_config(**values)


def config_for(head: str, **overrides) -> XLMRobertaConfig:
    if head == "TFXLMRobertaForCausalLM":
        overrides = {"is_decoder": True, "add_cross_attention": True, **overrides}
    if head == "TFXLMRobertaForQuestionAnswering":
        overrides = {"num_labels": 2, **overrides}
    return tiny_config(**overrides)


def build(head: str, config: XLMRobertaConfig | None = None, seed: int = 0, **overrides):
    """A head by class name with a deterministic initialisation."""
    keras.utils.set_random_seed(seed)
    return getattr(xlmr_tf, head)(config or config_for(head, **overrides))


def token_ids(shape=(2, 7), seed: int = 1) -> np.ndarray:
    """Random non-special ids (never the pad id)."""
    return np.random.default_rng(seed).integers(3, VOCAB, shape).astype(np.int32)


def inputs_for(head: str, batch: int = 2, length: int = 7, choices: int = 3) -> dict:
    """Minimal call arguments for a head (multiple choice takes [batch, choices, length])."""
    shape = (batch, choices, length) if head == "TFXLMRobertaForMultipleChoice" else (batch, length)
    ids = token_ids(shape)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if head == "TFXLMRobertaForCausalLM":
        encoder_states = np.random.default_rng(3).standard_normal((batch, 3, HIDDEN))
        inputs["encoder_hidden_states"] = encoder_states.astype(np.float32)
    return inputs


def labels_for(head: str, batch: int = 2, length: int = 7, seed: int = 2) -> dict:
    """Training targets for a head, matching `inputs_for`."""
    rng = np.random.default_rng(seed)
    if head in ("TFXLMRobertaForCausalLM", "TFXLMRobertaForMaskedLM"):
        return {"labels": rng.integers(0, VOCAB, (batch, length)).astype(np.int32)}
    if head == "TFXLMRobertaForTokenClassification":
        return {"labels": rng.integers(0, 3, (batch, length)).astype(np.int32)}
    if head == "TFXLMRobertaForQuestionAnswering":
        return {
            "start_positions": rng.integers(0, length, batch).astype(np.int32),
            "end_positions": rng.integers(0, length, batch).astype(np.int32),
        }
    if head == "TFXLMRobertaModel":
        return {}
    return {"labels": rng.integers(0, 3, batch).astype(np.int32)}


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends in float32, whatever a mixed-precision test set."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
