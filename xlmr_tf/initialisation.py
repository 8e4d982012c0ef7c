"""How the layers' weights start: random normal draws, or storage left unwritten for loading.

`from_pretrained` builds a model `uninitialised` (kernels and tables allocated, never written,
as torch's meta device) and `CheckpointIO` then calls `initialise_randomly` on what the
checkpoint lacks. Both live here so that loading needs nothing from the model classes.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import tensorflow as tf

from xlmr_core import XLMRobertaConfig

from .dense import Dense


class _Initialisation:
    """Whether layers built now draw random weights (see `uninitialised`)."""

    random = True


@keras.saving.register_keras_serializable(package="xlmr_tf")
class Uninitialised(keras.initializers.Initializer):
    """Allocates a variable's storage and never writes it (torch's `to_empty`): see `uninitialised`."""

    def __call__(self, shape, dtype=None):
        dtype = tf.as_dtype(dtype or keras.config.floatx())
        return tf.raw_ops.Empty(shape=shape, dtype=dtype, init=False)


@contextlib.contextmanager
def uninitialised():
    """Build models whose kernels and tables are allocated but never written, as torch's meta device.

    For `from_pretrained`, which replaces them with the checkpoint's arrays and draws only what
    the checkpoint lacks (`initialise_randomly`): drawing 278M normal numbers at base size takes
    seconds, and storage that is never written costs no memory before it is replaced. Until
    then their contents are undefined; biases and LayerNorm weights start as usual.
    """
    previous, _Initialisation.random = _Initialisation.random, False
    try:
        yield
    finally:
        _Initialisation.random = previous


def normal(config: XLMRobertaConfig) -> keras.initializers.Initializer:
    """The initializer of kernels and tables: `N(0, initializer_range)`, or none inside `uninitialised`."""
    if not _Initialisation.random:
        return Uninitialised()
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


def zero_row(value: tf.Tensor, row: int) -> tf.Tensor:
    """`value` (a table) with row `row` set to zero, as torch's `padding_idx` starts the pad row.

    A tensor op before the value becomes a variable: any scatter or slice write into the
    variable would switch it to TF's copy-on-read mode, in which every dense read of it (each
    lookup) copies the whole table.
    """
    return tf.tensor_scatter_nd_update(value, [[row]], tf.zeros((1, value.shape[1]), value.dtype))


def with_zero_row(initializer, row: int):
    """`initializer` whose tables start with row `row` at zero (torch's `padding_idx`)."""
    return functools.partial(_zero_padding_row, initializer, row=row)


def _zero_padding_row(initializer, shape, dtype=None, *, row: int) -> tf.Tensor:
    return zero_row(initializer(shape, dtype=dtype), row)


def dense(config: XLMRobertaConfig, units: int, name: str, **kwargs) -> keras.layers.Dense:
    """A dense layer whose kernel starts as `normal(config)`."""
    return Dense(units, kernel_initializer=normal(config), name=name, **kwargs)


def layer_norm(config: XLMRobertaConfig, name: str) -> keras.layers.LayerNormalization:
    """A LayerNorm with the config's epsilon."""
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


class Block(keras.layers.Layer):
    """A layer made of other layers, which create their variables on their first call.

    Without a `build` of its own Keras would trace `call` symbolically before the first
    eager call just to create the sublayers' variables, which doubles construction time.
    """

    def build(self, input_shape=None):
        pass


def initialise_randomly(model: keras.Model, variables) -> None:
    """Draw the kernels and tables among `variables` as a freshly built `model` does.

    For a model built `uninitialised`; the other variables (biases, LayerNorm weights)
    keep the zeros and ones they were built with. A layer owning a drawn table says so with
    a `drawn_table` attribute, `(variable, padding row or None)`.
    """
    padding_rows = {}  # id of each variable drawn at random -> its padding row (or None)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dense):
            padding_rows[id(layer.kernel)] = None
        elif getattr(layer, "drawn_table", None) is not None:
            table, row = layer.drawn_table
            padding_rows[id(table)] = row
    draw = keras.initializers.RandomNormal(stddev=model.config.initializer_range)
    for variable in variables:
        if id(variable) not in padding_rows:
            continue
        value = draw(tuple(variable.shape), dtype=variable.dtype)
        if padding_rows[id(variable)] is not None:
            value = zero_row(value, padding_rows[id(variable)])
        variable.assign(value)  # a dense assign: the variable takes the new buffer as it is
