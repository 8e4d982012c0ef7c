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

    def __init__(self, attention_mask, budget=None, pair_budget=None, causal=False):
        mask = tf.cast(attention_mask, tf.bool)
        self.mask = mask
        self.pair_budget = pair_budget  # at most this many attention block pairs (static), or None
        self._layouts = {}  # causal -> BlockLayout, made once per call by the first layer
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
        self.lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)  # real tokens per row
        # Whether the tokens, or their attention pairs, overflow the budgets (see `guard`): made
        # here, once, since the guard runs on the embeddings before any layout exists.
        self.overflow = self.count > self.budget
        if pair_budget is not None and self.static_shape[1] is not None:
            block = unpadding.attention_block_size(self.static_shape[1])
            _, pairs = _exact_counts(self.lengths, block, causal)
            self.overflow = self.overflow | (pairs > pair_budget)

    @classmethod
    def from_mask(cls, attention_mask, budget=None, pair_budget=None, causal=False) -> Packing:
        """The packing of `attention_mask` `[batch, seq]` into `budget` rows (None: the real-token
        count), its attention over at most `pair_budget` block pairs when given (static budgets:
        see `xlmr_core.unpadding.static_budgets`; `causal`: a decoder's pairs)."""
        return cls(attention_mask, budget, pair_budget, causal)

    def block_layout(self, causal: bool) -> BlockLayout | None:
        """The block layout of this packing's attention (`causal`: a decoder's pairs), or None
        under XLA with shapes unknown while tracing (attention then runs in the padded layout).

        Block and pair counts: a concrete mask's exact counts, bucketed (`xlmr_core.unpadding`);
        under XLA with a traced mask, the worst case any mask within the budget reaches; in a
        graph with run-time shapes, the exact counts as tensors.
        """
        if causal not in self._layouts:
            self._layouts[causal] = self._make_layout(causal)
        return self._layouts[causal]

    def _make_layout(self, causal: bool) -> BlockLayout | None:
        batch, seq_length = self.static_shape
        lengths = self.lengths
        static = isinstance(self.budget, int) and batch is not None and seq_length is not None
        if static:
            block = unpadding.attention_block_size(seq_length)
            concrete = tf.get_static_value(self.mask)
            if concrete is not None:
                blocks, pairs = unpadding.packed_attention_budgets(
                    concrete.sum(axis=1), block, causal, self.budget, batch, seq_length, self.pair_budget
                )
            elif in_xla_compilation():  # the worst case any mask within the budgets reaches
                blocks, pairs = unpadding.traced_attention_budgets(
                    self.budget, batch, seq_length, block, causal, self.pair_budget
                )
            else:
                blocks, pairs = _exact_counts(lengths, block, causal)
            return BlockLayout(lengths, seq_length, self.budget, block, blocks, pairs, causal)
        if in_xla_compilation():  # counts must be static there, and the shapes are not yet
            return None
        if seq_length is not None:
            block = unpadding.attention_block_size(seq_length)
        else:
            seq_length = self.shape[1]
            block = tf.maximum(tf.minimum(unpadding.ATTENTION_BLOCK, seq_length), 1)
        blocks, pairs = _exact_counts(lengths, block, causal)
        return BlockLayout(lengths, seq_length, self.budget, block, blocks, pairs, causal)

    def take_rows(self, x, rows):
        """Rows `rows` of packed `x` (`budget`: a zero row)."""
        return tf.gather(self._with_zero_row(x), rows)

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
        """NaN everywhere when the real tokens, or their attention pairs, did not fit the budgets
        (only possible under XLA, which drops the checks): a wrong budget shows instead of
        silently dropping tokens."""
        return tf.where(self.overflow, tf.constant(float("nan"), x.dtype), x)

    def pack_labels(self, labels, ignore_index: int = IGNORE_INDEX):
        """Padded-layout labels -> packed, `ignore_index` on the filler rows."""
        labels = self.pack(labels)
        return tf.where(self.real, labels, tf.cast(ignore_index, labels.dtype))


class BlockLayout:
    """The block-aligned layout of packed rows for attention that costs about Σ L_i².

    Sequence i occupies ceil(L_i / block) whole blocks of the `[blocks * block]` block rows;
    pair p is query block `query_block[p]` meeting key block `key_block[p]` of the same
    sequence, the key block's first `key_limit[p]` rows real, `offset[p]` the query block's
    start minus the key block's (in tokens; relative positions), `diagonal[p]` whether they
    are the same block (the causal mask). `combine[j]` lists the pairs of query block `j`
    (padded with `pairs`, a dummy). Pairs past the real count are filler no block reads.
    The counts `blocks` and `pairs` are Python ints (static budgets, see `xlmr_core.unpadding`)
    or, in a graph with dynamic shapes, the exact counts as tensors. Mirrors `xlmr_flax.packing`.
    """

    def __init__(self, lengths, seq_length, budget, block, blocks, pairs, causal):
        batch = tf.shape(lengths)[0]
        lengths = tf.cast(lengths, tf.int32)
        token_start = tf.cumsum(lengths, exclusive=True)
        counts = (lengths + block - 1) // block
        block_end = tf.cumsum(counts)
        block_start = block_end - counts

        def sequence_of(ends, index):  # searchsorted: sequence i holds [ends[i-1], ends[i])
            found = tf.searchsorted(ends[None], index[None], side="right", out_type=tf.int32)[0]
            return tf.minimum(found, batch - 1)

        block_ids = tf.range(blocks, dtype=tf.int32)
        block_sequence = sequence_of(block_end, block_ids)
        position = block_ids - tf.gather(block_start, block_sequence)  # the block's index in its sequence
        real_block = block_ids < block_end[-1]
        local = position[:, None] * block + tf.range(block, dtype=tf.int32)[None, :]
        real_row = real_block[:, None] & (local < tf.gather(lengths, block_sequence)[:, None])
        gather = tf.where(real_row, tf.gather(token_start, block_sequence)[:, None] + local, budget)
        self.gather = tf.reshape(gather, [-1])  # packed row of each block row (`budget`: a zero row)

        tokens = tf.range(budget, dtype=tf.int32)
        token_sequence = sequence_of(tf.cumsum(lengths), tokens)
        scatter = (
            tf.gather(block_start, token_sequence) * block + tokens - tf.gather(token_start, token_sequence)
        )
        scatter = tf.where(tokens < tf.reduce_sum(lengths), scatter, 0)
        # Over the budget (a traced mask under XLA): the output is NaN anyway (`Packing.guard`).
        self.scatter = tf.clip_by_value(scatter, 0, blocks * block - 1)  # block row of each packed row

        counts_of_block = tf.gather(counts, block_sequence)
        per_query = tf.where(real_block, position + 1 if causal else counts_of_block, 0)
        pair_end = tf.cumsum(per_query)
        pair_start = pair_end - per_query
        pair_ids = tf.range(pairs, dtype=tf.int32)
        query_block = tf.searchsorted(pair_end[None], pair_ids[None], side="right", out_type=tf.int32)[0]
        self.query_block = tf.minimum(query_block, blocks - 1)
        real_pair = pair_ids < pair_end[-1]
        key_position = pair_ids - tf.gather(pair_start, self.query_block)
        sequence = tf.gather(block_sequence, self.query_block)
        self.key_block = tf.where(real_pair, tf.gather(block_start, sequence) + key_position, 0)
        # Filler pairs see no key: finite numbers that no query block combines.
        limit = tf.clip_by_value(tf.gather(lengths, sequence) - key_position * block, 0, block)
        self.key_limit = tf.where(real_pair, limit, 0)
        query_position = tf.gather(position, self.query_block)
        self.offset = tf.where(real_pair, (query_position - key_position) * block, 0)
        self.diagonal = real_pair & tf.equal(key_position, query_position)
        width = (seq_length + block - 1) // block  # the most key blocks a query block meets
        slot = tf.range(width, dtype=tf.int32)[None, :]
        self.combine = tf.where(slot < per_query[:, None], pair_start[:, None] + slot, pairs)
        self.block = block


def _exact_counts(lengths, block, causal):
    """Blocks and block pairs of sequences of `lengths` tokens, as run-time tensors."""
    counts = (lengths + block - 1) // block
    pairs = counts * (counts + 1) // 2 if causal else counts * counts
    return tf.reduce_sum(counts), tf.reduce_sum(pairs)


def packing_for_call(
    attention_mask, unpadded: bool, token_budget, pair_budget=None, causal: bool = False
) -> Packing | None:
    """The `Packing` of a call with `unpadded`, `token_budget` and `pair_budget`, or None for the
    padded path (`causal`: the model is a decoder).

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
    elif not in_xla_compilation():
        # XLA drops assertions; a plain graph stops here rather than drop tokens.
        attention_mask = _asserting_budgets(attention_mask, budget, pair_budget, causal)
    return Packing.from_mask(attention_mask, budget, pair_budget, causal)


def _asserting_budgets(attention_mask, token_budget, pair_budget, causal):
    """`attention_mask`, behind run-time assertions that its tokens and pairs fit the budgets."""
    mask = tf.cast(tf.cast(attention_mask, tf.bool), tf.int32)
    checks = []
    if token_budget is not None:
        message = f"token_budget={token_budget} is smaller than the batch's real tokens"
        checks.append(tf.debugging.assert_less_equal(tf.reduce_sum(mask), token_budget, message=message))
    if pair_budget is not None and attention_mask.shape[1] is not None:
        block = unpadding.attention_block_size(attention_mask.shape[1])
        _, pairs = _exact_counts(tf.reduce_sum(mask, axis=1), block, causal)
        message = f"pair_budget={pair_budget} is smaller than the batch's attention block pairs"
        checks.append(tf.debugging.assert_less_equal(pairs, pair_budget, message=message))
    if not checks:
        return attention_mask
    with tf.control_dependencies(checks):
        return tf.identity(attention_mask)
