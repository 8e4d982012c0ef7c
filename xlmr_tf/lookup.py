"""Embedding lookups whose gradient every Keras optimizer applies correctly.

`tf.gather`'s gradient is an `IndexedSlices` with one row per looked-up id, repeated ids
repeated. Keras 3's optimizers apply such rows one by one (Adam squares each row's part
before summing: `Adam(0.1)` moves a row that three ids hit with 1.0, -0.5, 0.2 by -0.062
instead of the -0.1 of the summed gradient), so training drifts away from PyTorch's and
JAX's. Here the gradient is the dense table-shaped sum, as PyTorch's embedding gives it:
right for every optimizer and gradient clipping, and XLA-compilable (no dynamic shapes).
"""

from __future__ import annotations

import tensorflow as tf


@tf.custom_gradient
def embedding_lookup(table: tf.Tensor, ids: tf.Tensor):
    """`tf.gather(table, ids)`, with the repeated ids' gradients summed into a dense table gradient."""

    def gradient(upstream):
        rows = tf.shape(table, out_type=ids.dtype)[0]
        return tf.math.unsorted_segment_sum(upstream, ids, rows), None

    return tf.gather(table, ids), gradient
