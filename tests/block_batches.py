"""A batch whose rows cover every case of block-sparse packed attention, shared by the TF and
Flax tests of it (`xlmr_core.unpadding.ATTENTION_BLOCK` lowered to `BLOCK` by the
`small_blocks` fixture of tests/conftest.py)."""

from __future__ import annotations

import numpy as np

# Width 12 in blocks of 4: a sequence over several blocks with a partial last one (11), exactly
# one block (4), a single token (1), two whole blocks (8), left padding (7 real of 12) and an
# empty row.
BLOCK, BLOCK_WIDTH = 4, 12
BLOCK_ROWS = [(0, 11), (0, 4), (0, 1), (0, 8), (5, 12), (0, 0)]


def block_batch(config, seed=0):
    """int32 `(input_ids, attention_mask)` with the rows of `BLOCK_ROWS`, `<s>` where each starts."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(3, config.vocab_size, size=(len(BLOCK_ROWS), BLOCK_WIDTH))
    mask = np.zeros(input_ids.shape, np.int32)
    for row, (start, stop) in enumerate(BLOCK_ROWS):
        mask[row, start:stop] = 1
        if stop > start:
            input_ids[row, start] = config.bos_token_id
    input_ids[mask == 0] = config.pad_token_id
    return input_ids.astype(np.int32), mask
