"""Unpadded execution (`unpadded=True`): the real tokens of a batch, packed into `budget` rows.

The contract is `xlmr_core.unpadding`. The backbone packs once from the attention mask,
every layer and head runs on the packed rows, and the output is unpacked once. The packed
length is static (a shape under `jit`): `packed_length` picks it for a call.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xlmr_core import unpadding
from xlmr_core.modeling_utils import IGNORE_INDEX, is_static
from xlmr_core.unpadding import check_contiguous_rows, check_mask_fits, check_unpadded_arguments
from xlmr_core.unpadding import token_budget as bucketed_token_budget

from .inputs import concrete


def packed_length(attention_mask, unpadded, token_budget, pair_budget=None, causal=False) -> int | None:
    """The static packed length of a call, or None for the padded path.

    With a concrete mask the budget defaults to the real-token count's bucket (one compilation
    per bucket) and a mask without padding takes the padded path; a traced mask (under `jit`)
    takes `token_budget`, else `batch * sequence` (correct, no saving). A concrete mask must fit
    the budgets given (`pair_budget`: of a decoder's pairs when `causal`).
    """
    check_unpadded_arguments(unpadded, token_budget, pair_budget)
    if not unpadded or attention_mask is None:  # no mask: nothing is padding
        return None
    rows = attention_mask.reshape(-1, attention_mask.shape[-1])  # multiple choice: one row per choice
    capacity = rows.shape[0] * rows.shape[1]
    values = concrete(attention_mask)
    if values is None:
        if token_budget is None and not is_static(capacity):
            raise ValueError("unpadded=True with symbolic shapes (jax.export) needs a static token_budget")
        return int(capacity if token_budget is None else token_budget)
    check_contiguous_rows(values.reshape(rows.shape))
    check_mask_fits(values.reshape(rows.shape), token_budget, pair_budget, causal)
    count = int(np.count_nonzero(values))
    if count == capacity:
        return None  # no padding: the padded path is the unpadded one
    return bucketed_token_budget(count, capacity) if token_budget is None else int(token_budget)


class BlockLayout(NamedTuple):
    """The block-aligned layout of packed rows for attention that costs about Σ L_i².

    Sequence i occupies ceil(L_i / block) whole blocks of the `[blocks * block]` block rows;
    pair p is query block `query_block[p]` meeting key block `key_block[p]` of the same
    sequence, the key block's first `key_limit[p]` rows real, `offset[p]` the query block's
    start minus the key block's (in tokens; relative positions), `diagonal[p]` whether they
    are the same block (the causal mask). `combine[j]` lists the pairs of query block `j`
    (padded with `pairs`, a dummy). Pairs past the real count are filler no block reads.
    """

    gather: jax.Array  # [blocks * block] packed row of each block row (`budget`: a zero row)
    scatter: jax.Array  # [budget] block row of each packed row (filler: row 0)
    query_block: jax.Array
    key_block: jax.Array
    key_limit: jax.Array
    offset: jax.Array
    diagonal: jax.Array
    combine: jax.Array
    overflow: jax.Array  # the sequences need more blocks or pairs than the budgets (traced mask)
    block: int

    @property
    def pairs(self) -> int:
        return self.query_block.shape[0]

    @classmethod
    def from_lengths(cls, lengths, seq_length, budget, block, blocks, pairs, causal) -> BlockLayout:
        """The layout of rows of `lengths` (at most `seq_length`) real tokens packed in order into
        `budget` rows, with `blocks` blocks and `pairs` pairs (static budgets: see
        `xlmr_core.unpadding`)."""
        batch = lengths.shape[0]
        lengths = lengths.astype(jnp.int32)
        token_start = jnp.cumsum(lengths) - lengths
        counts = (lengths + block - 1) // block
        block_end = jnp.cumsum(counts)
        block_start = block_end - counts

        def sequence_of(ends, index):  # searchsorted: sequence i holds [ends[i-1], ends[i])
            return jnp.minimum(jnp.searchsorted(ends, index, side="right"), batch - 1).astype(jnp.int32)

        block_ids = jnp.arange(blocks, dtype=jnp.int32)
        block_sequence = sequence_of(block_end, block_ids)
        position = block_ids - block_start[block_sequence]  # the block's index in its sequence
        real_block = block_ids < block_end[-1]
        local = position[:, None] * block + jnp.arange(block, dtype=jnp.int32)[None, :]
        real_row = real_block[:, None] & (local < lengths[block_sequence][:, None])
        gather = jnp.where(real_row, token_start[block_sequence][:, None] + local, budget).reshape(-1)

        tokens = jnp.arange(budget, dtype=jnp.int32)
        token_sequence = sequence_of(jnp.cumsum(lengths), tokens)
        scatter = block_start[token_sequence] * block + tokens - token_start[token_sequence]
        scatter = jnp.where(tokens < jnp.sum(lengths), scatter, 0)
        scatter = jnp.clip(scatter, 0, blocks * block - 1)  # over budget (traced mask): NaN anyway

        per_query = jnp.where(real_block, position + 1 if causal else counts[block_sequence], 0)
        pair_end = jnp.cumsum(per_query)
        pair_start = pair_end - per_query
        pair_ids = jnp.arange(pairs, dtype=jnp.int32)
        query_block = jnp.minimum(jnp.searchsorted(pair_end, pair_ids, side="right"), blocks - 1)
        query_block = query_block.astype(jnp.int32)
        real_pair = pair_ids < pair_end[-1]
        key_position = pair_ids - pair_start[query_block]
        sequence = block_sequence[query_block]
        key_block = jnp.where(real_pair, block_start[sequence] + key_position, 0)
        # Filler pairs see no key: finite numbers that no query block combines.
        key_limit = jnp.where(real_pair, jnp.clip(lengths[sequence] - key_position * block, 0, block), 0)
        offset = jnp.where(real_pair, (position[query_block] - key_position) * block, 0)
        diagonal = real_pair & (key_position == position[query_block])
        width = -(-seq_length // block)  # the most key blocks a query block meets
        slot = jnp.arange(width, dtype=jnp.int32)[None, :]
        combine = jnp.where(slot < per_query[:, None], pair_start[:, None] + slot, pairs)
        return cls(
            gather.astype(jnp.int32),
            scatter.astype(jnp.int32),
            query_block,
            key_block.astype(jnp.int32),
            key_limit.astype(jnp.int32),
            offset.astype(jnp.int32),
            diagonal,
            combine.astype(jnp.int32),
            (block_end[-1] > blocks) | (pair_end[-1] > pairs),
            block,
        )


class Packing(NamedTuple):
    """Where the packed real tokens of an `unpadded=True` call sit in the padded layout.

    `rows[i]` is the flat `[batch * seq]` position of packed row `i` (rows past the real-token
    count are filler, pointing past the end); `slots[p]` is the packed row of padded position
    `p`, or `budget` (a zero row) for padding. Everything is a gather: XLA CPU runs gathers in
    parallel, scatters serially.
    """

    rows: jax.Array
    slots: jax.Array
    count: jax.Array
    first: jax.Array
    batch_size: int
    seq_length: int
    layout: BlockLayout | None = None

    @classmethod
    def from_mask(
        cls, attention_mask, budget: int | None = None, causal: bool = False, pair_budget: int | None = None
    ) -> Packing:
        """Packing of `attention_mask`'s real tokens into `budget` rows (None: the real-token
        count, which needs a concrete mask; under `jit` it is `batch * seq`), with the block
        layout of its attention (`causal`: a decoder's pairs; `pair_budget`: at most that many,
        see `xlmr_core.unpadding.static_budgets`)."""
        batch_size, seq_length = attention_mask.shape
        values = concrete(attention_mask)
        if budget is None:
            budget = batch_size * seq_length if values is None else int(np.count_nonzero(values))
        flat = attention_mask.reshape(-1).astype(bool)
        (rows,) = jnp.nonzero(flat, size=budget, fill_value=batch_size * seq_length)
        order = jnp.cumsum(flat) - 1
        # Tokens beyond the budget (a traced mask with too many) land on the zero row; the
        # call then returns NaN (see `guard`).
        slots = jnp.where(flat & (order < budget), order, budget).astype(jnp.int32)
        # Sentence-level heads read position 0 as before (as xlmr_torch: zeros for a left-padded row).
        first = jnp.arange(batch_size) * seq_length
        if not is_static(batch_size, seq_length):  # jax.export: attention in the padded layout
            return cls(rows.astype(jnp.int32), slots, jnp.sum(flat), first, batch_size, seq_length)
        block = unpadding.attention_block_size(seq_length)
        if values is None:  # traced: the worst case any mask within the budget reaches, or the promise
            blocks, pairs = unpadding.traced_attention_budgets(
                budget, batch_size, seq_length, block, causal, pair_budget
            )
        else:
            blocks, pairs = unpadding.packed_attention_budgets(
                values.astype(bool).sum(1), block, causal, budget, batch_size, seq_length, pair_budget
            )
        lengths = jnp.sum(attention_mask.astype(bool), axis=1)
        layout = BlockLayout.from_lengths(lengths, seq_length, budget, block, blocks, pairs, causal)
        return cls(rows.astype(jnp.int32), slots, jnp.sum(flat), first, batch_size, seq_length, layout)

    @property
    def budget(self) -> int:
        return self.rows.shape[0]

    def pack(self, x):
        """`[batch, seq, ...]` -> `[budget, ...]`: real tokens, then filler (the last position again)."""
        flat = x.reshape(self.batch_size * self.seq_length, *x.shape[2:])
        return jnp.take(flat, self.rows, axis=0, mode="clip")

    def pack_labels(self, labels):
        """Labels of the packed rows; padded positions are not in them, filler rows get `IGNORE_INDEX`."""
        real = jnp.arange(self.budget) < self.count
        return jnp.where(real, self.pack(labels), IGNORE_INDEX)

    def _with_zero_row(self, x):
        return jnp.concatenate([x, jnp.zeros((1, *x.shape[1:]), x.dtype)], axis=0)

    def unpack(self, x):
        """`[budget, ...]` -> `[batch, seq, ...]` with zeros at padded positions."""
        padded = jnp.take(self._with_zero_row(x), self.slots, axis=0)
        return padded.reshape(self.batch_size, self.seq_length, *x.shape[1:])

    def first_tokens(self, x):
        """`[budget, hidden]` -> `[batch, 1, hidden]`: position 0 of each row (zeros where it is padding)."""
        return jnp.take(self._with_zero_row(x), self.slots[self.first], axis=0)[:, None]

    def rows_of(self, positions):
        """Packed rows of flat padded `positions` (-1 or padding: the zero row), for gathers from `x`."""
        safe = jnp.where(positions >= 0, positions, 0)
        return jnp.where(positions >= 0, self.slots[safe], self.budget)

    def take_rows(self, x, rows):
        """Rows `rows` of packed `x` (`budget`: a zero row)."""
        return jnp.take(self._with_zero_row(x), rows, axis=0)

    def guard(self, x):
        """NaN everywhere when the real tokens, or their attention pairs, did not fit the budgets
        (only possible under `jit`): a wrong budget shows instead of silently dropping tokens."""
        overflow = self.count > self.budget
        if self.layout is not None:
            overflow = overflow | self.layout.overflow
        return jnp.where(overflow, jnp.nan, x).astype(x.dtype)
