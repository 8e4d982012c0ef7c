"""Batches: the seeded order, dropped and kept partial batches, trimming, and masked-LM's dynamic
masking (rates checked statistically on a large batch, exactly reproducible from the seed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from xlmr_core.finetuning import FinetuningError, TaskData, batches
from xlmr_core.modeling_utils import IGNORE_INDEX

PAD, BOS, EOS, MASK, VOCAB = 1, 0, 2, 99, 100
SPECIAL = [BOS, PAD, EOS, 3, MASK]


def lm_data(task="masked-lm", rows=10, length=8, seed=0) -> TaskData:
    """Rows of <s> ids </s> with lengths 3..length, right-padded; ids drawn from 5..98."""
    rng = np.random.default_rng(seed)
    ids = np.full((rows, length), PAD, dtype=np.int64)
    mask = np.zeros((rows, length), dtype=np.int64)
    for i in range(rows):
        n = int(rng.integers(3, length + 1))
        ids[i, :n] = [BOS, *rng.integers(5, MASK, n - 2), EOS]
        mask[i, :n] = 1
    return TaskData(task, {"input_ids": ids, "attention_mask": mask}, [{}] * rows, np.arange(rows))


def classification_data(rows=5) -> TaskData:
    ids = np.arange(rows * 4, dtype=np.int64).reshape(rows, 4) + 10
    mask = np.ones_like(ids)
    mask[:, 3] = 0  # no row uses the last position
    features = {"input_ids": ids, "attention_mask": mask, "labels": np.arange(rows, dtype=np.int64)}
    return TaskData("text-classification", features, [{}] * rows, np.arange(rows), id2label={})


def test_each_epoch_is_ordered_from_seed_and_epoch_and_drops_its_partial_batch():
    data = classification_data(5)
    got = [b["labels"].tolist() for b in itertools.islice(batches(data, 2, seed=7), 6)]
    expected = []
    for epoch in range(3):
        order = np.random.default_rng((7, epoch)).permutation(5).tolist()
        expected += [order[0:2], order[2:4]]  # the 5th row of each epoch is dropped
    assert got == expected


def test_evaluation_is_one_pass_in_order_keeping_the_partial_batch():
    got = [b["labels"].tolist() for b in batches(classification_data(5), 2, seed=0, shuffle=False)]
    assert got == [[0, 1], [2, 3], [4]]


def test_batches_are_trimmed_to_their_longest_real_row():
    batch = next(batches(classification_data(), 2, seed=0))
    assert batch["input_ids"].shape == (2, 3) and batch["attention_mask"].shape == (2, 3)
    assert batch["labels"].shape == (2,)


def test_multiple_choice_rows_are_trimmed_over_all_choices():
    ids = np.ones((2, 3, 6), dtype=np.int64)
    mask = np.zeros_like(ids)
    mask[0, 1, :4] = mask[1, 2, :2] = 1
    features = {"input_ids": ids, "attention_mask": mask, "labels": np.zeros(2, np.int64)}
    data = TaskData("multiple-choice", features, [{}, {}], np.arange(2))
    batch = next(batches(data, 2, seed=0, shuffle=False))
    assert batch["input_ids"].shape == (2, 3, 4) and batch["labels"].shape == (2,)


def test_a_batch_larger_than_the_data_is_refused_rather_than_looping_forever():
    with pytest.raises(FinetuningError, match=r"batch_size \(6\) is larger than the 5 rows"):
        batches(classification_data(5), 6, seed=0)
    assert len(list(batches(classification_data(5), 6, seed=0, shuffle=False))) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
        ({"seed": -1}, "seed must be an integer of at least 0"),
        ({"mask_token_id": MASK}, "mask_token_id is for masked-lm batches only"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    arguments = {"batch_size": 2, "seed": 0} | kwargs
    with pytest.raises(FinetuningError, match=message):
        batches(classification_data(), **arguments)


def test_masked_lm_needs_the_tokenizer_ids():
    with pytest.raises(FinetuningError, match="masked-lm batches need vocab_size, special_ids"):
        batches(lm_data(), 2, seed=0, mask_token_id=MASK)


def masked(data, batch_size, seed, count=1, **kwargs):
    stream = batches(
        data, batch_size, seed, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL, **kwargs
    )
    return list(itertools.islice(stream, count))


def test_masking_rates_on_a_large_batch():
    data = lm_data(rows=4000, length=32)
    (batch,) = masked(data, 4000, seed=3)
    original = data.features["input_ids"][np.random.default_rng((3, 0)).permutation(4000)][
        :, : batch["input_ids"].shape[1]
    ]
    mask = batch["attention_mask"] == 1
    eligible = mask & ~np.isin(original, SPECIAL)
    chosen = batch["labels"] != IGNORE_INDEX
    # Targets are the original ids at exactly the chosen positions; specials and padding never chosen.
    assert (batch["labels"][chosen] == original[chosen]).all()
    assert not (chosen & ~eligible).any()
    assert (batch["input_ids"][~chosen] == original[~chosen]).all()
    n, c = eligible.sum(), chosen.sum()
    to_mask = (batch["input_ids"] == MASK) & chosen
    kept = (batch["input_ids"] == original) & chosen
    random = chosen & ~to_mask & ~kept
    # Binomial bounds, 5 standard deviations: 15 % chosen; of those 80 % <mask>, 10 % random, 10 % kept.
    for observed, total, p in [
        (c, n, 0.15),
        (to_mask.sum(), c, 0.8),
        (random.sum(), c, 0.1),
        (kept.sum(), c, 0.1),
    ]:
        assert abs(observed / total - p) < 5 * np.sqrt(p * (1 - p) / total), (observed, total, p)
    assert n > 50_000  # the bounds above are about 0.0008 and 0.004 wide


def test_masking_is_reproducible_from_the_seed_and_differs_by_step():
    data = lm_data(rows=40, length=16)
    first, again = masked(data, 20, seed=5, count=3), masked(data, 20, seed=5, count=3)
    for a, b in zip(first, again):
        assert all((a[k] == b[k]).all() for k in a)
    assert not (first[0]["labels"] == masked(data, 20, seed=6)[0]["labels"]).all()
    # The same rows masked at another step get other masks (epoch 1 re-reads epoch 0's rows).
    single = lm_data(rows=1, length=16)
    step0, step1 = masked(single, 1, seed=5, count=2)
    assert not (step0["labels"] == step1["labels"]).all()
    # Evaluation (one pass, in order) masks the same way every time.
    a, b = masked(data, 40, seed=5, shuffle=False)[0], masked(data, 40, seed=5, shuffle=False)[0]
    assert (a["input_ids"] == b["input_ids"]).all() and (a["labels"] == b["labels"]).all()


def test_a_batch_never_lacks_a_target():
    # One row of 3 real tokens has one eligible token: chosen 15 % of the time by chance alone.
    data = lm_data(rows=1, length=3)
    for seed in range(20):
        (batch,) = masked(data, 1, seed=seed)
        assert (batch["labels"] != IGNORE_INDEX).sum() == 1
