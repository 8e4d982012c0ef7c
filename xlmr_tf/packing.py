"""Packed (unpadded) execution: a padded batch's real tokens as `[budget, ...]` rows.

The contract is `xlmr_core.unpadding`. A model packs once from the attention mask, runs the
embeddings, every layer and its head on the packed rows, and unpacks once at its output.
"""

from __future__ import annotations

import tensorflow as tf

from xlmr_core import unpadding
from xlmr_core.modeling_utils import IGNORE_INDEX


def in_xla_compilation() -> bool:
    """Whether the current trace is compiled by XLA (`jit_compile=True`), where shapes must be static."""
    if tf.executing_eagerly():
        return False
    try:  # TF's own test of an XLA context; no public accessor in TF 2.21
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


class Packing:
    """Where a padded batch's real tokens sit in a packed `[budget, ...]` layout.

    Real tokens take rows `0 .. count - 1` in row-major order. With a static `budget` the layout
    has `budget` rows and the tail is filler (copies of position 0 that nothing real reads);
    with `budget=None` it has exactly `count` rows, a shape known only at run time.
    """

    def __init__(self, attention_mask, budget=None):
        mask = tf.cast(attention_mask, tf.bool)
        self.shape = tf.shape(mask)
        self.static_shape = mask.shape
        flat = tf.reshape(mask, [-1])
        ones = tf.cast(flat, tf.int32)
        self.count = tf.reduce_sum(ones)
        rank = tf.cumsum(ones) - 1  # a real token's packed row
        if budget is None:
            self.budget = self.count
            self.flat_index = tf.cast(tf.where(flat)[:, 0], tf.int32)
        else:
            # A scatter, not a data-dependent `tf.where`, so the shape is static under XLA; padding
            # (and any token beyond the budget) lands in the extra row `budget`, then dropped.
            self.budget = budget
            slots = tf.where(flat, tf.minimum(rank, budget), budget)
            self.flat_index = tf.scatter_nd(slots[:, None], tf.range(tf.size(flat)), [budget + 1])[:budget]
        self.real = tf.range(self.budget) < self.count  # which packed rows are real tokens
        # Each padded position's packed row; padding reads the zero row appended at `budget`.
        self.unpack_index = tf.where(flat, tf.minimum(rank, self.budget), self.budget)

    @classmethod
    def from_mask(cls, attention_mask, budget=None) -> Packing:
        """The packing of `attention_mask` `[batch, seq]` into `budget` rows (None: the real-token count)."""
        return cls(attention_mask, budget)

    def pack(self, x):
        """`[batch, seq, ...]` -> `[budget, ...]`."""
        flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))
        return tf.gather(flat, self.flat_index)

    def _with_zero_row(self, x):
        return tf.concat([x, tf.zeros(tf.concat([[1], tf.shape(x)[1:]], axis=0), x.dtype)], axis=0)

    def unpack(self, x):
        """`[budget, ...]` -> `[batch, seq, ...]`, zeros at padded positions."""
        padded = tf.gather(self._with_zero_row(x), self.unpack_index)
        padded = tf.reshape(padded, tf.concat([self.shape, tf.shape(x)[1:]], axis=0))
        padded.set_shape(self.static_shape.concatenate(x.shape[1:]))
        return padded

    def unpack_output(self, x):
        """`unpack` for a model's output: NaN everywhere when the tokens overflowed the budget."""
        return self.guard(self.unpack(x))

    def first_tokens(self, x):
        """`[budget, hidden]` -> `[batch, 1, hidden]`: position 0 of each row (zeros where it is padding)."""
        first = tf.reshape(self.unpack_index, self.shape)[:, :1]
        tokens = tf.gather(self._with_zero_row(x), first)
        tokens.set_shape(self.static_shape[:1].concatenate([1]).concatenate(x.shape[1:]))
        return tokens

    def guard(self, x):
        """NaN everywhere when the real tokens did not fit the budget (only possible under XLA,
        which drops the check): a wrong budget shows instead of silently dropping tokens."""
        return tf.where(self.count > self.budget, tf.constant(float("nan"), x.dtype), x)

    def pack_labels(self, labels, ignore_index: int = IGNORE_INDEX):
        """Padded-layout labels -> packed, `ignore_index` on the filler rows."""
        labels = self.pack(labels)
        return tf.where(self.real, labels, tf.cast(ignore_index, labels.dtype))


def packing_for_call(attention_mask, unpadded: bool, token_budget) -> Packing | None:
    """The `Packing` of a call with `unpadded` and `token_budget`, or None for the padded path.

    A concrete mask gives a bucketed budget (`xlmr_core.unpadding.token_budget`) or, without
    padding, the padded path itself. A traced mask without `token_budget` packs to its run-time
    count (dynamic shapes) in a plain `tf.function`, and to batch × seq under XLA (static).
    """
    if not unpadded or attention_mask is None:
        return None
    budget = token_budget
    concrete = tf.get_static_value(attention_mask)
    if concrete is not None:
        real = int(concrete.astype(bool).sum())
        if real == concrete.size:
            return None
        if budget is None:
            budget = unpadding.token_budget(real, concrete.size)
    elif budget is None and in_xla_compilation():
        budget = attention_mask.shape.num_elements() or tf.size(attention_mask)
    elif budget is not None and not in_xla_compilation():
        # XLA drops assertions; a plain graph stops here rather than drop tokens.
        count = tf.reduce_sum(tf.cast(tf.cast(attention_mask, tf.bool), tf.int32))
        check = tf.debugging.assert_less_equal(
            count, budget, message=f"token_budget={budget} is smaller than the batch's real tokens"
        )
        with tf.control_dependencies([check]):
            attention_mask = tf.identity(attention_mask)
    return Packing.from_mask(attention_mask, budget)
