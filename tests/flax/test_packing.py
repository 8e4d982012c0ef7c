"""`xlmr_flax.packing.Packing`: the unpadded layout, checked against numpy boolean indexing."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xlmr_core.modeling_utils import IGNORE_INDEX
from xlmr_flax.packing import Packing

MASK = np.array([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 0]], np.int32)  # right, left, mostly padding


def test_from_mask_without_budget_packs_exactly_the_real_tokens():
    x = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    packing = Packing.from_mask(jnp.asarray(MASK))
    assert packing.budget == 7  # 3 + 3 + 1 real tokens
    np.testing.assert_array_equal(np.asarray(packing.pack(x)), x[MASK.astype(bool)])
    np.testing.assert_array_equal(np.asarray(packing.unpack(packing.pack(x))), x * MASK[..., None])


def test_a_larger_budget_adds_filler_rows_the_labels_ignore():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    packing = Packing.from_mask(jnp.asarray(MASK), budget=9)
    packed = np.asarray(packing.pack_labels(labels))
    np.testing.assert_array_equal(packed[:7], labels[MASK.astype(bool)])
    np.testing.assert_array_equal(packed[7:], [IGNORE_INDEX] * 2)


def test_first_tokens_are_position_zero_or_zeros_where_it_is_padding():
    x = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2) + 1
    packing = Packing.from_mask(jnp.asarray(MASK), budget=9)
    first = np.asarray(packing.first_tokens(packing.pack(x)))
    assert first.shape == (3, 1, 2)
    np.testing.assert_array_equal(first[:, 0], x[:, 0] * MASK[:, :1])


def test_block_and_pair_budgets_hold_every_mask_within_the_token_budget():
    """Every length vector of 3 rows of width 9 (blocks of 4): the traced-mask bounds are at
    least the exact counts (by enumeration), and reached by some mask (they are not loose)."""
    import itertools

    from xlmr_core import unpadding

    rows, width, block = 3, 9, 4
    for budget in (1, 5, 9, 14, 27):
        for causal in (False, True):
            most_blocks = unpadding.block_budget_bound(budget, rows, width, block)
            most_pairs = unpadding.pair_budget_bound(budget, rows, width, block, causal)
            seen_blocks = seen_pairs = 0
            for lengths in itertools.product(range(width + 1), repeat=rows):
                if sum(lengths) > budget:
                    continue
                blocks = unpadding.sequence_blocks(lengths, block)
                seen_blocks = max(seen_blocks, int(blocks.sum()))
                seen_pairs = max(seen_pairs, unpadding.block_pairs(blocks, causal))
                exact = unpadding.packed_attention_budgets(lengths, block, causal, budget, rows, width)
                assert exact[0] >= blocks.sum() and exact[1] >= unpadding.block_pairs(blocks, causal)
                assert exact[0] <= most_blocks and exact[1] <= most_pairs
            assert (most_blocks, most_pairs) == (seen_blocks, max(seen_pairs, 1)), (budget, causal)
