"""How the layers' weights start: random normal draws, or storage left unwritten for loading.

`from_pretrained` builds a model `uninitialised` (kernels and tables allocated, never written,
as torch's meta device) and `CheckpointIO` then calls `initialise_randomly` on what the
checkpoint lacks. Both live here so that loading needs nothing from the model classes.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Mapping

import keras
import tensorflow as tf
from keras.src.backend.common.name_scope import current_path

from xlmr_core import XLMRobertaConfig
from xlmr_core.weight_mapping import to_canonical_name

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


class _UnknownShape(Exception):
    """A layer whose variables' shapes `build_variables` cannot tell without running the model."""


def build_variables(model: keras.Model, shapes: Mapping[str, tuple], layout: str) -> bool:
    """Create `model`'s variables from the canonical `shapes` (`xlmr_core.architecture`), without a call.

    Each layer is built inside its parents' name scopes, so the variables get the paths a first
    call would give them: a dense layer takes its input width from its canonical weight's shape
    (`layout` names the rules of `xlmr_core.weight_mapping`), a LayerNorm its width likewise, and
    layers whose `build` needs no input shape (blocks, tables, heads) build as they are. Returns
    False, with the layers it could build built, when a layer's shape is not known that way:
    the caller then runs the model once to build the rest.
    """

    def width(path: str, leaf: str) -> int:
        # The model's own name starts every path; canonical names of a head carry `roberta.`.
        name = to_canonical_name(f"{path.split('/', 1)[1]}/{leaf}", layout)
        shape = shapes.get(name, shapes.get(name.removeprefix(f"{model.base_model_prefix}.")))
        if shape is None:
            raise _UnknownShape(name)
        return shape[-1]

    def visit(layer: keras.layers.Layer) -> None:
        if not layer.built:
            path = f"{current_path()}/{layer.name}".lstrip("/")
            if isinstance(layer, Dense):
                layer.build((None, width(path, "kernel")))
            elif isinstance(layer, keras.layers.LayerNormalization):
                layer.build((None, width(path, "gamma")))
            elif type(layer).build is keras.layers.Layer.build:  # no variables of its own (dropout)
                layer.build(None)
            elif _builds_without_shape(layer):
                layer.build()
            else:
                raise _UnknownShape(path)
        with layer._open_name_scope():  # the children's variables go below this layer's path
            for child in layer._flatten_layers(include_self=False, recursive=False):
                visit(child)

    try:
        visit(model)
    except _UnknownShape:
        return False
    return True


def _builds_without_shape(layer: keras.layers.Layer) -> bool:
    parameters = list(inspect.signature(layer.build).parameters.values())
    return all(p.default is not inspect.Parameter.empty for p in parameters)
