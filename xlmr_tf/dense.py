"""`keras.layers.Dense` whose kernel is kept in the checkpoints' `[out, in]` layout.

Every checkpoint we read stores a linear weight as torch does, `[out, in]`. Keeping the kernel
that way (and multiplying with `transpose_b=True`) lets `from_pretrained` copy it as it lies in
the file, or with `mmap=True` adopt the file's memory as the variable without any copy, where
Keras's `[in, out]` kernel needs a strided transpose of every kernel (most of TF's load time).

On `[..., in]` inputs the matmul is one 2-D matmul between two reshapes: Keras applies a
rank-3 input with `tf.tensordot`, whose output shape tf2onnx 1.17 gets wrong, and the reshapes
keep the rank for it.

Keras's own files (`.keras`, `.weights.h5`, hence `BackupAndRestore`) still hold Keras's
`[in, out]` kernel: `save_own_variables` / `load_own_variables` transpose, so files written
before and after this layout change load the same way.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from xlmr_core.errors import OneLineError


class UnsupportedLayerOption(OneLineError, ValueError):
    """A Keras option that assumes Keras's `[in, out]` kernel (quantisation, LoRA)."""


def _refuse(option: str):
    raise UnsupportedLayerOption(
        f"{option} is not supported: the xlmr_tf Dense kernel is stored [out, in] (the checkpoint layout)"
    )


class Dense(keras.layers.Dense):
    """`keras.layers.Dense` (same names, config and arithmetic) with an `[out, in]` kernel."""

    def __init__(self, units, *args, lora_rank=None, **kwargs):
        if lora_rank:
            _refuse("lora_rank")
        super().__init__(units, *args, **kwargs)

    def build(self, input_shape):
        if self.quantization_mode:
            _refuse(f"quantization mode {self.quantization_mode!r}")
        in_features = int(input_shape[-1])
        self._kernel = self.add_weight(
            name="kernel",
            shape=(self.units, in_features),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: in_features})
        self.built = True

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def call(self, inputs, training=None):
        kernel = tf.convert_to_tensor(self.kernel)  # in the call's autocast scope: the compute dtype
        if kernel.dtype != inputs.dtype:  # Keras's promotion (e.g. integer inputs)
            dtype = keras.backend.result_type(inputs.dtype, kernel.dtype)
            inputs, kernel = tf.cast(inputs, dtype), tf.cast(kernel, dtype)
        if inputs.shape.rank == 2:
            outputs = tf.matmul(inputs, kernel, transpose_b=True)
        else:
            rows = tf.reshape(inputs, [-1, kernel.shape[1]])
            shape = tf.concat([tf.shape(inputs)[:-1], [self.units]], 0)
            outputs = tf.reshape(tf.matmul(rows, kernel, transpose_b=True), shape)
        if self.bias is not None:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs

    # -- Keras's files keep Keras's `[in, out]` kernel (see the module docstring)
    def save_own_variables(self, store):
        if not self.built:
            return
        store["0"] = np.transpose(self._kernel.numpy())
        if self.bias is not None:
            store["1"] = self.bias.numpy()

    def load_own_variables(self, store):
        self._check_load_own_variables(store)
        if not self.built:
            return
        self._kernel.assign(np.transpose(np.asarray(store["0"])))
        if self.bias is not None:
            self.bias.assign(np.asarray(store["1"]))

    def enable_lora(self, *args, **kwargs):
        _refuse("enable_lora")

    def quantize(self, mode=None, *args, **kwargs):
        _refuse(f"quantize({mode!r})")
