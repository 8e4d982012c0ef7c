"""Input checks of the TF models: shapes while tracing, values eagerly or as graph assertions.

Wrong inputs fail here with a message naming the argument instead of deep inside a
gather (an opaque error on CPU, silent zeros on GPU, clamping under XLA). Shapes are
checked whenever they are known while tracing (always in eager mode) and raise
`ValueError`; value checks raise `ValueError` in eager mode and become `tf.debugging`
assertions with the same message inside a `tf.function`.
"""

from __future__ import annotations

import tensorflow as tf

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import check_index_range, check_labels_shape, check_sequence_length


def check_shape(tensor, expected, name: str) -> None:
    """Compare the dimensions known while tracing; `None` in either shape matches anything."""
    shape = tuple(tensor.shape)
    expected = tuple(d if isinstance(d, int) else None for d in expected)
    if len(shape) != len(expected) or any(
        a is not None and b is not None and a != b for a, b in zip(shape, expected)
    ):
        raise ValueError(f"{name} has shape {shape}; expected {expected}")


def check_integer(tensor, name: str) -> None:
    if not tensor.dtype.is_integer:
        raise ValueError(f"{name} must hold integers, got dtype {tensor.dtype.name}")


def check_range(ids, size: int, name: str, ignore_index: int | None = None):
    """Every value of `ids` must be in [0, size) (or equal `ignore_index`); see the module docstring.

    Returns `ids`; in a graph, guarded so that nothing reads them before the check has run.
    """
    check_integer(ids, name)
    if tf.executing_eagerly():
        values = ids.numpy()
        if ignore_index is not None:
            values = values[values != ignore_index]
        if values.size == 0:
            return ids
        low, high = int(values.min()), int(values.max())
        if ignore_index is None:
            check_index_range(name, low, high, size)
        elif low < 0 or high >= size:
            raise ValueError(
                f"{name} must be in [0, {size}) or {ignore_index} (ignored); got values from {low} to {high}"
            )
        return ids
    valid = tf.logical_and(ids >= 0, ids < size)
    if ignore_index is not None:
        valid = tf.logical_or(valid, tf.equal(ids, ignore_index))
    check = tf.debugging.Assert(
        tf.reduce_all(valid),
        [f"{name} must be in [0, {size}); got values from", tf.reduce_min(ids), "to", tf.reduce_max(ids)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def check_length(config: XLMRobertaConfig, past_length, seq_length) -> None:
    if isinstance(past_length, int) and isinstance(seq_length, int):
        check_sequence_length(config, past_length, seq_length)
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
