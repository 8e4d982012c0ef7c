"""Unpadded execution: the contract every framework's `unpadded=True` follows, written once.

A padded batch `[batch, seq]` with an attention mask is run on its real tokens only:

- the flat row-major positions where the mask is 1 are gathered into a packed
  `[tokens, hidden]` sequence; embeddings, every dense layer, LayerNorm and the
  feed-forward run on it (position and token-type ids are gathered from the padded
  layout, so the numbers are the padded path's);
- attention runs per sequence, each sequence attending to its own real tokens only;
- the outputs come back in the padded layout, with **zeros at padded positions**
  (hidden states, and the logits of token-level heads); the pooler and the
  sentence-level heads read `<s>` as before;
- token-level losses leave out padded positions, as if their labels were `IGNORE_INDEX`.

Where the whole shape must be static (JAX under `jit`, TF under XLA), the packed length is
a *token budget*: the real-token count rounded up to a bucket from `token_budget`, so one
program is compiled per bucket rather than per count, and the unused tail of the budget is
filler that no real token attends to.
"""

from __future__ import annotations

import numpy as np

from .errors import short as _short

# The smallest bucket; below it the saving is not worth a compilation.
MIN_TOKEN_BUDGET = 64
# Buckets have this many significant bits, so a budget wastes at most 1 / 2**(bits - 1) of itself.
BUDGET_SIGNIFICANT_BITS = 4

# What a user can ask for alongside `unpadded=True`, and cannot have: each needs the
# padded `[batch, seq]` layout inside the encoder.
UNPADDED_CONFLICTS = (
    "past_key_values",
    "use_cache",
    "encoder_hidden_states",
    "output_attentions",
    "head_mask",
)


def token_budget(real_tokens: int, capacity: int) -> int:
    """The packed length for `real_tokens` real tokens out of `capacity` (= batch × seq).

    The smallest number ≥ `real_tokens` with at most `BUDGET_SIGNIFICANT_BITS` significant
    bits and at least `MIN_TOKEN_BUDGET`, capped at `capacity`: about 8 buckets per doubling,
    each at most 12.5 % larger than what it holds.
    """
    real_tokens, capacity = int(real_tokens), int(capacity)
    if real_tokens < 0 or capacity < 0 or real_tokens > capacity:
        raise ValueError(f"token_budget: {real_tokens} real tokens do not fit a capacity of {capacity}")
    if real_tokens <= MIN_TOKEN_BUDGET:
        return min(MIN_TOKEN_BUDGET, capacity)
    step = 1 << max(real_tokens.bit_length() - BUDGET_SIGNIFICANT_BITS, 0)
    return min(-(-real_tokens // step) * step, capacity)


def check_unpadded_arguments(unpadded, token_budget, pair_budget=None) -> None:
    """`unpadded` is a bool; `token_budget` and `pair_budget` are None or positive Python ints,
    given with `unpadded=True`.

    Budgets are static sizes (shapes under `jit` and XLA), so a traced or floating value is
    refused rather than rounded.
    """
    if not isinstance(unpadded, (bool, np.bool_)):
        raise TypeError(f"unpadded must be True or False, got {type(unpadded).__name__}")
    for name, value, what in (
        ("token_budget", token_budget, "the packed length"),
        ("pair_budget", pair_budget, "the attention block pairs"),
    ):
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer or None, got {_short(value)}")
        if not unpadded:
            raise ValueError(f"{name} is {what} of unpadded=True; pass unpadded=True with it")


def check_budget_fits(token_budget, real_tokens: int) -> None:
    """A `token_budget` must hold every real token of the batch."""
    if token_budget is not None and int(token_budget) < int(real_tokens):
        raise ValueError(
            f"token_budget={int(token_budget)} is smaller than the batch's {int(real_tokens)} real tokens"
        )


def padding_fraction(attention_mask) -> float:
    """The share of a padded batch's positions that are padding (mask 0)."""
    mask = np.asarray(attention_mask)
    return 0.0 if mask.size == 0 else float(1.0 - np.count_nonzero(mask) / mask.size)


def conflict_message(option: str) -> str:
    """The text of the `ValueError` for an option that does not combine with `unpadded=True`."""
    return (
        f"unpadded=True does not combine with {option}: it needs the padded [batch, seq] layout "
        "inside the encoder; call without unpadded=True"
    )


def check_unpadded_options(**options) -> None:
    """Raise `ValueError` naming the first of `UNPADDED_CONFLICTS` that is set (not None/False)."""
    for name in UNPADDED_CONFLICTS:
        value = options.get(name)
        if value is not None and value is not False:
            raise ValueError(conflict_message(name))


def check_contiguous_rows(attention_mask) -> None:
    """Raise `ValueError` unless each row's real tokens are one run (right or left padding).

    Per-sequence attention over packed tokens equals padded attention only when no padding
    sits between two real tokens of a row (relative positions would otherwise differ).
    Works on a concrete numpy mask; traced masks are the framework's to check or trust.
    """
    mask = np.asarray(attention_mask).astype(bool)
    if mask.ndim != 2 or mask.shape[1] == 0:
        return
    starts = np.count_nonzero(mask[:, 1:] & ~mask[:, :-1], axis=1) + mask[:, 0]
    bad = np.flatnonzero(starts > 1)
    if bad.size:
        raise ValueError(
            f"unpadded=True needs each row of attention_mask to be one run of 1s (right or left "
            f"padding); row {int(bad[0])} has padding between real tokens"
        )


# Output fields with a sequence axis, which the unpadded path zeroes at padded positions; a
# `logits` field has one only for the token-level heads.
TOKEN_FIELDS = ("last_hidden_state", "start_logits", "end_logits")
TOKEN_LOGIT_HEADS = ("ForMaskedLM", "ForCausalLM", "ForTokenClassification")


def zero_padded_positions(head: str, outputs: dict, attention_mask) -> dict:
    """`outputs` (numpy, padded path) as the unpadded path returns them: padded positions zero.

    `head` is a head name as in `xlmr_core.architecture.HEADS` ("Model", "ForMaskedLM", ...);
    fields without a sequence axis (pooler output, sentence-level logits, losses) pass unchanged.
    """
    keep = np.asarray(attention_mask).astype(bool)
    zeroed = {}
    for field, value in outputs.items():
        if field in TOKEN_FIELDS or (field == "logits" and head in TOKEN_LOGIT_HEADS):
            value = np.where(keep.reshape(keep.shape + (1,) * (value.ndim - keep.ndim)), value, 0.0)
        zeroed[field] = value
    return zeroed


# ----------------------------------------------------------------------------- block-sparse packed attention
#
# Packed attention that costs about Σ L_i² (TF / Flax under XLA, static shapes): every sequence
# starts on a block boundary of `block` rows and occupies ceil(L_i / block) whole blocks; the
# (query block, key block) pairs of the same sequence number Σ ceil(L_i / block)² (each query
# block with the key blocks up to its own in a decoder). Block and pair counts are static: the
# exact counts of a concrete mask, bucketed, or the worst case any mask within a token budget
# can reach.

# Rows per attention block: big enough for efficient small matmuls, small enough that a short
# sequence wastes little of its last block.
ATTENTION_BLOCK = 64


def attention_block_size(seq_length: int) -> int:
    """The block of a `[batch, seq_length]` batch: `ATTENTION_BLOCK`, or the row length if shorter."""
    return max(1, min(ATTENTION_BLOCK, int(seq_length)))


def bucket(count: int, capacity: int) -> int:
    """`count` rounded up to at most `BUDGET_SIGNIFICANT_BITS` significant bits, capped at
    `capacity` (at least 1): the bucket rule of `token_budget` without its minimum."""
    count, capacity = max(int(count), 1), max(int(capacity), 1)
    step = 1 << max(count.bit_length() - BUDGET_SIGNIFICANT_BITS, 0)
    return min(-(-count // step) * step, max(capacity, count))


def sequence_blocks(lengths, block: int) -> np.ndarray:
    """Blocks each sequence of `lengths` real tokens occupies (ceil(L / block))."""
    return -(-np.asarray(lengths, np.int64) // int(block))


def block_pairs(blocks, causal: bool) -> int:
    """(query block, key block) pairs of sequences of `blocks` blocks: n² each, n(n+1)/2 causal."""
    blocks = np.asarray(blocks, np.int64)
    return int((blocks * (blocks + 1) // 2).sum() if causal else (blocks * blocks).sum())


def _most_blocks(real_tokens: int, sequences: int, block: int) -> int:
    """Most blocks `sequences` non-empty sequences of `real_tokens` tokens in all can occupy."""
    # A sequence of n blocks holds at least (n - 1) * block + 1 tokens.
    return (int(real_tokens) + sequences * (block - 1)) // block


def block_budget_bound(token_budget: int, batch: int, seq_length: int, block: int) -> int:
    """The most blocks any mask of `batch` rows of `seq_length` with at most `token_budget`
    real tokens occupies (the block budget under a traced mask)."""
    per_row = -(-int(seq_length) // block)
    sequences = max(1, min(int(batch), int(token_budget)))
    return max(1, min(_most_blocks(token_budget, sequences, block), sequences * per_row))


def pair_budget_bound(token_budget: int, batch: int, seq_length: int, block: int, causal: bool) -> int:
    """The most block pairs any such mask gives (the pair budget under a traced mask).

    For k non-empty rows the block count is bounded (`_most_blocks`); the pair count, convex in
    each row's blocks, is largest with as many rows as possible at the most blocks a row holds,
    one remainder row and the rest at one block. The bound is the maximum over k.
    """
    per_row = -(-int(seq_length) // block)
    best = 1
    for sequences in range(1, max(1, min(int(batch), int(token_budget))) + 1):
        blocks = min(_most_blocks(token_budget, sequences, block), sequences * per_row)
        extra = blocks - sequences  # blocks beyond the first of every row
        full, rest = divmod(extra, per_row - 1) if per_row > 1 else (0, 0)
        full = min(full, sequences)
        counts = [per_row] * full + ([1 + rest] if full < sequences else []) + [1] * (sequences - full - 1)
        best = max(best, block_pairs(counts, causal))
    return best


def packed_attention_budgets(
    lengths, block: int, causal: bool, token_budget: int, batch: int, seq_length: int, pair_budget=None
) -> tuple[int, int]:
    """`(blocks, pairs)` static budgets for the concrete `lengths` of a batch's rows: the exact
    counts, bucketed (one compilation per bucket), never above the worst-case bounds; with a
    `pair_budget` (checked to hold the pairs) that many pairs, as a traced mask would get."""
    blocks = sequence_blocks(lengths, block)
    if pair_budget is not None:
        check_pairs_fit(pair_budget, block_pairs(blocks, causal))
        return traced_attention_budgets(token_budget, batch, seq_length, block, causal, pair_budget)
    block_cap = block_budget_bound(token_budget, batch, seq_length, block)
    pair_cap = pair_budget_bound(token_budget, batch, seq_length, block, causal)
    return bucket(int(blocks.sum()), block_cap), bucket(block_pairs(blocks, causal), pair_cap)


def traced_attention_budgets(
    token_budget: int, batch: int, seq_length: int, block: int, causal: bool, pair_budget=None
) -> tuple[int, int]:
    """`(blocks, pairs)` static budgets when the mask is traced: the worst case any mask within
    `token_budget` reaches, or fewer pairs when the caller promises them (`pair_budget`; a
    batch that needs more gives NaN, as one with too many tokens does). Every block has at least
    one pair (itself), so blocks never exceed pairs."""
    blocks = block_budget_bound(token_budget, batch, seq_length, block)
    pairs = pair_budget_bound(token_budget, batch, seq_length, block, causal)
    if pair_budget is not None:
        pairs = min(pairs, int(pair_budget))
        blocks = min(blocks, pairs)
    return blocks, pairs


def check_pairs_fit(pair_budget, pairs: int) -> None:
    """A `pair_budget` must hold every (query block, key block) pair of the batch's attention."""
    if pair_budget is not None and int(pair_budget) < int(pairs):
        raise ValueError(
            f"pair_budget={int(pair_budget)} is smaller than the batch's {int(pairs)} attention block "
            "pairs; take both budgets from xlmr_core.unpadding.static_budgets(attention_mask)"
        )


def check_mask_fits(attention_mask, token_budget, pair_budget, causal: bool) -> None:
    """A concrete mask's real tokens and attention block pairs must fit the budgets given."""
    check_budget_fits(token_budget, int(np.count_nonzero(attention_mask)))
    if pair_budget is not None:
        check_pairs_fit(pair_budget, attention_pairs(attention_mask, causal))


def attention_pairs(attention_mask, causal: bool = False) -> int:
    """The (query block, key block) pairs the packed attention of a concrete mask computes."""
    mask = np.asarray(attention_mask).astype(bool)
    mask = mask.reshape(-1, mask.shape[-1])
    block = attention_block_size(mask.shape[1])
    return block_pairs(sequence_blocks(mask.sum(axis=1), block), causal)


def static_budgets(attention_mask, causal: bool = False) -> dict:
    """`{"token_budget": .., "pair_budget": ..}` for an `unpadded=True` call whose mask is traced
    (under `jax.jit` or `jit_compile=True`), computed from the concrete mask beforehand.

    Both are bucketed (one compilation per bucket pair). A traced mask otherwise pays the worst
    case any mask within the token budget can reach: on real length mixes about twice the
    attention pairs. `causal`: the model is a decoder (`config.is_decoder`). Pass them as static
    arguments: `model(ids, mask, unpadded=True, **static_budgets(mask))`.
    """
    mask = np.asarray(attention_mask).astype(bool)
    rows = mask.reshape(-1, mask.shape[-1])
    tokens = token_budget(int(rows.sum()), rows.size)
    block = attention_block_size(rows.shape[1])
    _, pairs = packed_attention_budgets(rows.sum(axis=1), block, causal, tokens, *rows.shape)
    return {"token_budget": tokens, "pair_budget": pairs}


# ----------------------------------------------------------------------------- long inputs

# Above this many query positions the padded path's attention runs `QUERY_CHUNK` queries at a
# time, so the scores of one layer are `[batch, heads, QUERY_CHUNK, keys]`, never
# `[batch, heads, L, L]`; at or below it the plain path runs unchanged.
LONG_INPUT_THRESHOLD = 1024
QUERY_CHUNK = 512
