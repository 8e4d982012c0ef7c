"""The activation functions by `config.hidden_act` name.

The exact GELU is written with `erf`, as the reference implementation writes it:
`tf.nn.gelu(x, approximate=False)` lowers to `Erfc`, which tf2onnx cannot convert.
"""

from __future__ import annotations

import math

import tensorflow as tf


def gelu(x: tf.Tensor) -> tf.Tensor:
    """Exact GELU, `0.5 * x * (1 + erf(x / sqrt(2)))`, in the dtype of `x`."""
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.math.tanh,
}
