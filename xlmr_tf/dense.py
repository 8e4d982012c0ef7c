"""`keras.layers.Dense` whose kernel, on `[..., in]` inputs, is one 2-D matmul between two reshapes.

Keras applies a Dense kernel to a rank-3 input with `tf.tensordot`, whose output shape tf2onnx
1.17 gets wrong (the query projection came out `[tokens, hidden]` in the ONNX graph and the
head split failed in onnxruntime). Here the same 2-D `MatMul` that `tf.tensordot` runs is written
out with the output shape taken from the input's: the same kernel on the same data, so the
numbers are bit-identical, and tf2onnx keeps the rank.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class Dense(keras.layers.Dense):
    """`keras.layers.Dense` (same weights, names and config) with the matmul above."""

    def call(self, inputs, training=None):
        kernel = tf.convert_to_tensor(self.kernel)  # in the call's autocast scope: the compute dtype
        if inputs.shape.rank is None or inputs.shape.rank <= 2 or kernel.dtype != inputs.dtype:
            return super().call(inputs, training=training)  # rank 2 is a plain matmul already
        rows = tf.reshape(inputs, [-1, kernel.shape[0]])
        outputs = tf.reshape(tf.matmul(rows, kernel), tf.concat([tf.shape(inputs)[:-1], [self.units]], 0))
        if self.bias is not None:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs
