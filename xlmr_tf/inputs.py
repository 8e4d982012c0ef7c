"""Input checks of the TF models: shapes while tracing, values eagerly or as graph assertions.

Wrong inputs fail here with a message naming the argument instead of deep inside a
gather (an opaque error on CPU, silent zeros on GPU, clamping under XLA). Shapes are
checked whenever they are known while tracing (always in eager mode) and raise
`ValueError`; value checks raise `ValueError` in eager mode and become `tf.debugging`
assertions with the same message inside a `tf.function`. The models run these checks in
their `__call__`, before Keras's call wrapper, so an error stays the one line raised here.
"""

from __future__ import annotations

import tensorflow as tf

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import (
    check_index_range,
    check_integer_dtype,
    check_labels_shape,
    check_sequence_length,
)

try:  # Keras's marker of its symbolic passes (no public accessor in Keras 3.15)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope
except ImportError:  # pragma: no cover - a Keras without it never builds from float ids

    def in_symbolic_scope() -> bool:
        return False


# The dtype every id is cast to once checked: what `tf.gather` and the losses index with.
INDEX_DTYPE = tf.int32


def dim(tensor: tf.Tensor, axis: int):
    """The size of `axis`: a Python int when known while tracing, else a scalar tensor."""
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]


def check_shape(tensor, expected, name: str) -> None:
    """Compare the dimensions known while tracing; `None` in either shape matches anything."""
    shape = tuple(tensor.shape)
    expected = tuple(d if isinstance(d, int) else None for d in expected)
    if len(shape) != len(expected) or any(
        a is not None and b is not None and a != b for a, b in zip(shape, expected)
    ):
        raise ValueError(f"{name} has shape {shape}; expected {expected}")


def check_integer(tensor, name: str) -> None:
    """`TypeError` (the shared text) unless `tensor` holds integers of some dtype."""
    if not tensor.dtype.is_integer:
        check_integer_dtype(name, tensor.dtype.name)


def symbolic_ids(tensor) -> bool:
    """Whether `tensor` is a float stand-in for ids in one of Keras's symbolic passes.

    Under `tf.distribute`, Keras builds compiled losses and metrics by tracing the model on
    the MEAN of the replicas' first batches, which turns integer ids into floats; only the
    outputs' shapes and dtypes matter there, so such ids are cast instead of refused.
    """
    return not tensor.dtype.is_integer and not tf.executing_eagerly() and in_symbolic_scope()


def as_index(tensor):
    """An integer tensor (any integer dtype, already range-checked) in `INDEX_DTYPE`."""
    return tensor if tensor.dtype == INDEX_DTYPE else tf.cast(tensor, INDEX_DTYPE)


def check_range(ids, size: int, name: str, ignore_index: int | None = None):
    """Every value of `ids` must be in [0, size) (or equal `ignore_index`); see the module docstring.

    Works on any integer dtype (uint64 past int64 included, so check before casting).
    Returns `ids`; in a graph, guarded so that nothing reads them before the check has run.
    """
    check_integer(ids, name)
    if tf.executing_eagerly():
        values = ids.numpy()
        if ignore_index is not None and not ids.dtype.is_unsigned:  # uint cannot hold -100
            values = values[values != ignore_index]
        if values.size == 0:
            return ids
        low, high = int(values.min()), int(values.max())
        check_index_range(name, low, high, size, ignore_index)
        return ids
    if in_symbolic_scope():
        return ids  # no values to check
    wide = tf.cast(ids, tf.int64)  # comparisons of every integer dtype, exactly up to int64
    valid = tf.logical_and(wide >= 0, wide < size)
    if ignore_index is not None:
        valid = tf.logical_or(valid, tf.equal(wide, ignore_index))
    check = tf.debugging.Assert(
        tf.reduce_all(valid),
        [f"{name} must be in [0, {size}); got values from", tf.reduce_min(wide), "to", tf.reduce_max(wide)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def check_length(config: XLMRobertaConfig, past_length, seq_length) -> None:
    if isinstance(past_length, int) and isinstance(seq_length, int):
        check_sequence_length(config, past_length, seq_length)
        return
    if in_symbolic_scope():
        return
    tf.debugging.assert_less_equal(
        past_length + seq_length,
        config.max_sequence_length,
        message=f"sequence longer than the position table allows (at most {config.max_sequence_length} "
        "positions); truncate the input",
    )


def check_label_shapes(labels, shapes, name: str = "labels") -> None:
    """`labels` must have one of `shapes` (dimensions unknown while tracing match anything)."""
    for shape in shapes:
        try:
            check_shape(labels, shape, name)
            return
        except ValueError:
            continue
    check_labels_shape(name, labels.shape, tuple(shapes[0]))
