"""The FLOP counts behind the benchmark report's "% of matmul peak" (benchmarks/_flops.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xlmr_core import XLMRobertaConfig
from xlmr_core.architecture import expected_shapes

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_flops.py"
_spec = importlib.util.spec_from_file_location("bench_flops", _PATH)
flops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flops)


def tiny(**overrides) -> XLMRobertaConfig:
    values = dict(
        vocab_size=99, hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )
    return XLMRobertaConfig(**{**values, **overrides})


def test_forward_of_a_tiny_model_by_hand():
    # h = 4, f = 8, one layer, one sequence of S = 2 tokens. Per token: Q, K, V and the attention
    # output are 4x4 (4 * 2*16 = 128 FLOPs), the FFN 4x8 and 8x4 (2 * 2*32 = 128); the scores
    # (2 keys x 4 dims) and the context (2 values x 4 dims) 2*8 each (32). Two tokens:
    # 2 * 288 = 576; the pooler, a 4x4 product on the first token only, adds 32.
    assert flops.forward_flops(tiny(), batch=1, length=2) == 608


def test_classifier_forward_by_hand():
    # The same encoder (576) and the classification head on the first token: dense 4x4 (32) and
    # out_proj 4x3 (24); no pooler in that model.
    assert flops.classifier_forward_flops(tiny(num_labels=3), batch=1, length=2) == 576 + 32 + 24


def test_train_step_is_three_forwards():
    config = tiny(num_labels=3)
    assert flops.train_step_flops(config, 2, 5) == 3 * flops.classifier_forward_flops(config, 2, 5)


@pytest.mark.parametrize("preset", ["xlm-roberta-base", "xlm-roberta-large"])
@pytest.mark.parametrize(("batch", "length"), [(1, 1), (8, 128), (4, 512)])
def test_encoder_is_two_flops_per_weight_per_token_plus_attention(preset, batch, length):
    """Independently of the formula: every encoder weight matrix in the checkpoint's shape table
    is one multiply-add per token, and attention adds Q K^T and P V (2 * 2 * S * h per token)."""
    config = XLMRobertaConfig.from_pretrained(preset)
    shapes = expected_shapes(config, "Model")
    matrix_weights = sum(
        rows * cols
        for name, shape in shapes.items()
        if name.startswith("encoder.") and name.endswith(".weight") and len(shape) == 2
        for rows, cols in [shape]
    )
    tokens = batch * length
    attention = tokens * config.num_hidden_layers * 4 * length * config.hidden_size
    assert flops.encoder_flops(config, batch, length) == 2 * matrix_weights * tokens + attention


def test_forward_accepts_a_config_dict():
    config = tiny()
    assert flops.forward_flops(config.to_dict(), 3, 7) == flops.forward_flops(config, 3, 7)


def test_matmul():
    assert flops.matmul_flops(3) == 2 * 27
