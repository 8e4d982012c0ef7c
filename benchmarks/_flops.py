"""Floating-point operation counts for the benchmark workloads, from the config alone.

Only matrix products are counted (a multiply-add is 2 FLOPs); embedding look-ups,
LayerNorm, softmax, GELU, dropout and the optimizer update are element-wise and left
out, so the counts are a slight underestimate of the work done. With hidden size h,
intermediate size f, L layers, sequence length S, batch B and C labels:

    per token and layer:   2 * (4 h^2 + 2 h f)       Q, K, V, attention output, two FFN matrices
                         + 2 * 2 * S * h             attention scores Q K^T and context P V
    encoder forward:       B * S * L * (8 h^2 + 4 h f + 4 S h)
    pooler (bare model):   B * 2 h^2                 first token only
    classification head:   B * (2 h^2 + 2 h C)       first token only (no pooler in that model)
    train step:            3 * forward               backward = gradients w.r.t. inputs and weights

Plain Python, no framework: importable anywhere (the tests check it by hand).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FORMULA = (
    "forward FLOPs = B·S·L·(8h² + 4hf + 4Sh) + pooler 2Bh² (bare model) or classifier B·(2h² + 2hC); "
    "train step = 3 × forward of the classification model; matmul n×n×n = 2n³. "
    "Only matrix products are counted (element-wise ops, embedding look-ups and the optimizer "
    "update are not)."
)


def _get(config: Any, name: str) -> int:
    return int(config[name] if isinstance(config, Mapping) else getattr(config, name))


def encoder_flops(config: Any, batch: int, length: int) -> int:
    """Matrix-product FLOPs of the encoder layers on a `batch` x `length` input."""
    hidden, intermediate = _get(config, "hidden_size"), _get(config, "intermediate_size")
    per_token_and_layer = 2 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * length * hidden
    return batch * length * _get(config, "num_hidden_layers") * per_token_and_layer


def forward_flops(config: Any, batch: int, length: int) -> int:
    """The bare model (`XLMRobertaModel`): encoder plus pooler."""
    hidden = _get(config, "hidden_size")
    return encoder_flops(config, batch, length) + batch * 2 * hidden * hidden


def classifier_forward_flops(config: Any, batch: int, length: int) -> int:
    """`XLMRobertaForSequenceClassification` forward: encoder plus classification head."""
    hidden, labels = _get(config, "hidden_size"), _get(config, "num_labels")
    return encoder_flops(config, batch, length) + batch * (2 * hidden * hidden + 2 * hidden * labels)


def train_step_flops(config: Any, batch: int, length: int) -> int:
    """One sequence-classification training step: forward plus a backward pass of twice its cost."""
    return 3 * classifier_forward_flops(config, batch, length)


def matmul_flops(n: int) -> int:
    """An n x n by n x n matrix product."""
    return 2 * n**3
