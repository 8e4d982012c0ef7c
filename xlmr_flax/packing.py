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

from xlmr_core.modeling_utils import IGNORE_INDEX, is_static
from xlmr_core.unpadding import check_budget_fits, check_contiguous_rows, check_unpadded_arguments
from xlmr_core.unpadding import token_budget as bucketed_token_budget

from .inputs import concrete


def packed_length(attention_mask, unpadded, token_budget) -> int | None:
    """The static packed length of a call, or None for the padded path.

    With a concrete mask the budget defaults to the real-token count's bucket (one compilation
    per bucket) and a mask without padding takes the padded path; a traced mask (under `jit`)
    takes `token_budget`, else `batch * sequence` (correct, no saving).
    """
    check_unpadded_arguments(unpadded, token_budget)
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
    count = int(np.count_nonzero(values))
    if count == capacity:
        return None  # no padding: the padded path is the unpadded one
    if token_budget is None:
        return bucketed_token_budget(count, capacity)
    check_budget_fits(token_budget, count)
    return int(token_budget)


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

    @classmethod
    def from_mask(cls, attention_mask, budget: int | None = None) -> Packing:
        """Packing of `attention_mask`'s real tokens into `budget` rows (None: the real-token
        count, which needs a concrete mask; under `jit` it is `batch * seq`)."""
        batch_size, seq_length = attention_mask.shape
        if budget is None:
            values = concrete(attention_mask)
            budget = batch_size * seq_length if values is None else int(np.count_nonzero(values))
        flat = attention_mask.reshape(-1).astype(bool)
        (rows,) = jnp.nonzero(flat, size=budget, fill_value=batch_size * seq_length)
        order = jnp.cumsum(flat) - 1
        # Tokens beyond the budget (a traced mask with too many) land on the zero row; the
        # call then returns NaN (see `guard`).
        slots = jnp.where(flat & (order < budget), order, budget).astype(jnp.int32)
        # Sentence-level heads read position 0 as before (as xlmr_torch: zeros for a left-padded row).
        first = jnp.arange(batch_size) * seq_length
        return cls(rows.astype(jnp.int32), slots, jnp.sum(flat), first, batch_size, seq_length)

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
        """NaN everywhere when the real tokens did not fit the budget (only possible under `jit`)."""
        return jnp.where(self.count > self.budget, jnp.nan, x).astype(x.dtype)
