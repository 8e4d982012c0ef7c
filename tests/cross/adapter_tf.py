"""Harness adapter for xlmr_tf (see tests/cross/harness.py for the protocol)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import xlmr_tf  # noqa: E402


def _to_numpy(value):
    if tf.is_tensor(value) or isinstance(value, keras.Variable):
        array = np.asarray(value)
        return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array
    if isinstance(value, (tuple, list)):
        return tuple(_to_numpy(v) for v in value)
    return value


def _to_tf(value):
    if isinstance(value, np.ndarray):
        return tf.convert_to_tensor(value)
    if isinstance(value, (tuple, list)):
        return tuple(_to_tf(v) for v in value)
    return value


def _arguments(inputs, options=None):
    return {key: _to_tf(value) for key, value in {**inputs, **(options or {})}.items()}


def _canonical(model, per_variable):
    """(variable, array) pairs -> {canonical name: array} in canonical layout."""
    paths = {id(variable): path for path, variable in model._variables_by_path().items()}
    return model.to_canonical({paths[id(variable)]: np.asarray(value) for variable, value in per_variable})


class Adapter:
    name = "tf"

    def load(self, directory, head, **config_overrides):
        return getattr(xlmr_tf, f"TFXLMRoberta{head}").from_pretrained(directory, **config_overrides)

    def save(self, model, directory):
        model.save_pretrained(directory)

    def forward(self, model, inputs, **options):
        # Keras takes only tensors in the first (positional) argument: flags go as keywords.
        flags = {key: value for key, value in options.items() if isinstance(value, bool)}
        tensors = {key: value for key, value in options.items() if key not in flags}
        out = model(_arguments(inputs, tensors), training=False, return_dict=True, **flags)
        return {key: _to_numpy(value) for key, value in out.items()}

    def loss_and_grads(self, model, inputs, **options):
        variables = model.trainable_variables
        with tf.GradientTape() as tape:  # dropout off; options are flags (keywords)
            loss = model(_arguments(inputs), training=False, return_dict=True, **options).loss
        grads = tape.gradient(loss, variables)
        # Embedding gradients arrive as IndexedSlices; densify them.
        pairs = [(v, tf.convert_to_tensor(g)) for v, g in zip(variables, grads) if g is not None]
        return float(loss), _canonical(model, pairs)

    def sgd_step(self, model, inputs, learning_rate):
        variables = model.trainable_variables
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate)
        with tf.GradientTape() as tape:
            loss = model(_arguments(inputs), training=False, return_dict=True).loss
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return _canonical(model, [(v, v.numpy()) for v in model.weights])

    def random_checkpoint(self, config, head, directory, seed=0):
        """Save a model of `head` whose every weight is random (no zero biases, no unit
        LayerNorm), so a swapped or transposed tensor anywhere shows in the outputs."""
        keras.utils.set_random_seed(seed)
        model = getattr(xlmr_tf, f"TFXLMRoberta{head}")(config)
        rng = np.random.default_rng(seed)
        for variable in model.weights:
            variable.assign(variable.numpy() + 0.05 * rng.standard_normal(variable.shape).astype(np.float32))
        model.save_pretrained(directory)
        return model
