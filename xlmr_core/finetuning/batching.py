"""Batches of a `TaskData`, in an order drawn from the seed, with masked-LM's dynamic masking.

Every framework's trainer reads its batches from here, so the three see the same rows in the same
order with the same masks: the order of epoch e comes from `np.random.default_rng((seed, e))`, the
masks of step s from `np.random.default_rng((seed, s, 1))` (its own stream, apart from the order's).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import short
from ..modeling_utils import IGNORE_INDEX
from .data import FinetuningError
from .task_data import TaskData

# Dynamic masking as the reference's masked-LM collator: 15 % of the real non-special tokens are
# chosen; of those 80 % become <mask>, 10 % a random id and 10 % stay as they are.
MASK_PROBABILITY = 0.15
MASK_TOKEN_SHARE = 0.8
RANDOM_TOKEN_SHARE = 0.5  # of the chosen tokens not turned into <mask>: half of 20 %


def batches(
    data: TaskData,
    batch_size: int,
    seed: int,
    *,
    shuffle: bool = True,
    mask_token_id: int | None = None,
    vocab_size: int | None = None,
    special_ids=None,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `data`: with `shuffle`, epoch after epoch without end, each epoch's last partial
    batch dropped; without, one pass in order, the last partial batch kept. Masked LM needs
    `mask_token_id`, `vocab_size` and `special_ids` (never masked); other tasks refuse them."""
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    masking = _masking(data.task, mask_token_id, vocab_size, special_ids)
    rows = len(data)
    if shuffle and batch_size > rows:
        raise FinetuningError(
            f"batch_size ({batch_size}) is larger than the {rows} rows of the {data.task} data: "
            "no full batch can be drawn"
        )
    return _generate(data, batch_size, seed, shuffle, masking)


def _generate(data, batch_size, seed, shuffle, masking):
    rows, step, epoch = len(data), 0, 0
    while True:
        order = np.random.default_rng((seed, epoch)).permutation(rows) if shuffle else np.arange(rows)
        stop = rows - rows % batch_size if shuffle else rows
        for begin in range(0, stop, batch_size):
            batch = {key: value[order[begin : begin + batch_size]] for key, value in data.features.items()}
            batch = trim(batch)
            if masking is not None:
                batch = mask_tokens(batch, np.random.default_rng((seed, step, 1)), *masking)
            step += 1
            yield batch
        if not shuffle:
            return
        epoch += 1


def _check_int(name: str, value, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise FinetuningError(f"{name} must be an integer of at least {minimum}, got {short(value, 40)}")
    return int(value)


def _masking(task, mask_token_id, vocab_size, special_ids):
    given = {"mask_token_id": mask_token_id, "vocab_size": vocab_size, "special_ids": special_ids}
    if task != "masked-lm":
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise FinetuningError(f"{extra[0]} is for masked-lm batches only, not {task}")
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise FinetuningError(f"masked-lm batches need {', '.join(missing)} (the tokenizer's)")
    _check_int("vocab_size", vocab_size, 1)
    if not isinstance(mask_token_id, (int, np.integer)) or not 0 <= mask_token_id < vocab_size:
        raise FinetuningError(
            f"mask_token_id must be an id below vocab_size {vocab_size}, got {short(mask_token_id, 40)}"
        )
    special = np.asarray(list(special_ids), dtype=np.int64)
    return int(mask_token_id), int(vocab_size), special


def trim(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch cut to its longest real row: every array laid out like `attention_mask` loses the
    trailing positions no row uses (rows are right-padded, so nothing real is cut)."""
    mask = batch["attention_mask"]
    length = max(int(mask.sum(axis=-1).max()), 1)
    return {key: value[..., :length] if value.shape == mask.shape else value for key, value in batch.items()}


def mask_tokens(batch, rng: np.random.Generator, mask_token_id: int, vocab_size: int, special: np.ndarray):
    """`batch` with dynamic masking drawn from `rng`: `input_ids` masked, `labels` the original ids
    at the chosen positions and `IGNORE_INDEX` elsewhere."""
    ids = batch["input_ids"]
    eligible = (batch["attention_mask"] == 1) & ~np.isin(ids, special)
    chosen = eligible & (rng.random(ids.shape) < MASK_PROBABILITY)
    if not chosen.any() and eligible.any():
        # A batch with no target would make the loss 0/0 (NaN): one eligible token is chosen then.
        chosen.flat[rng.choice(np.flatnonzero(eligible))] = True
    to_mask = chosen & (rng.random(ids.shape) < MASK_TOKEN_SHARE)
    to_random = chosen & ~to_mask & (rng.random(ids.shape) < RANDOM_TOKEN_SHARE)
    masked = np.where(to_mask, mask_token_id, ids)
    masked = np.where(to_random, rng.integers(0, vocab_size, ids.shape), masked).astype(np.int64)
    return {**batch, "input_ids": masked, "labels": np.where(chosen, ids, IGNORE_INDEX).astype(np.int64)}
