"""xlmr_core.fill_mask: reading masked-LM logits back into words, and held-out scoring."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from xlmr_core.fill_mask import (
    masked_evaluation_set,
    masked_token_accuracy,
    top_predictions,
    unigram_baseline_accuracy,
)

TEXTS = ["Hello world, how are you?", "Das Essen war ausgezeichnet.", "Hi"]


def test_top_predictions_ranks_the_mask_positions_only(tokenizer):
    ids = np.array([[0, tokenizer.mask_token_id, 2], [0, 5, tokenizer.mask_token_id]])
    logits = np.zeros((2, 3, len(tokenizer)))
    logits[0, 1, 7], logits[0, 1, 9] = 3.0, 2.0
    logits[1, 2, 11] = 5.0
    logits[1, 1, 12] = 50.0  # not a mask: must be ignored
    first, second = top_predictions(tokenizer, ids, logits, top_k=2)
    assert len(first) == 1 and len(second) == 1
    (token_a, p_a), (token_b, p_b) = first[0]
    # Softmax by hand: e^3 / (e^3 + e^2 + (V - 2) e^0).
    expected_a = np.exp(3) / (np.exp(3) + np.exp(2) + len(tokenizer) - 2)
    assert p_a == pytest.approx(expected_a) and p_b == pytest.approx(expected_a / np.e)
    assert token_a == (tokenizer.decode([7]).strip() or tokenizer.convert_ids_to_tokens(7))
    assert second[0][0][0] == (tokenizer.decode([11]).strip() or tokenizer.convert_ids_to_tokens(11))


def test_top_predictions_rejects_logits_of_another_shape(tokenizer):
    with pytest.raises(ValueError, match="do not match input_ids"):
        top_predictions(tokenizer, np.zeros((1, 4), dtype=int), np.zeros((1, 3, len(tokenizer))))


def test_the_evaluation_set_masks_ordinary_tokens_only_and_at_least_one_per_text(tokenizer):
    evaluation = masked_evaluation_set(tokenizer, TEXTS, rate=0.15, seed=0)
    special = set(tokenizer.all_special_ids)
    for row, text in enumerate(TEXTS):
        original = tokenizer.encode(text)
        masked = np.flatnonzero(evaluation.labels[row] != -100)
        assert len(masked) == max(1, round(0.15 * (len(original) - 2)))
        assert all(original[i] not in special for i in masked)
        assert (evaluation.input_ids[row, masked] == tokenizer.mask_token_id).all()
        assert evaluation.labels[row, masked].tolist() == [original[i] for i in masked]
        untouched = [i for i in range(len(original)) if i not in set(masked)]
        assert evaluation.input_ids[row, untouched].tolist() == [original[i] for i in untouched]
        assert evaluation.attention_mask[row].sum() == len(original)


def test_the_evaluation_set_depends_only_on_texts_rate_and_seed(tokenizer):
    a = masked_evaluation_set(tokenizer, TEXTS, seed=3)
    b = masked_evaluation_set(tokenizer, TEXTS, seed=3)
    c = masked_evaluation_set(tokenizer, TEXTS * 4, seed=4)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.input_ids, b.input_ids)
    assert not np.array_equal(np.tile(a.labels, (4, 1)), c.labels)


def test_the_evaluation_set_truncates_to_max_length(tokenizer):
    evaluation = masked_evaluation_set(tokenizer, ["word " * 50], max_length=10)
    assert evaluation.input_ids.shape == (1, 10)


@pytest.mark.parametrize("rate", [0, 1, -0.5])
def test_the_evaluation_set_rejects_a_rate_outside_zero_one(tokenizer, rate):
    with pytest.raises(ValueError, match="rate"):
        masked_evaluation_set(tokenizer, TEXTS, rate=rate)


def test_accuracies_count_masked_positions_only():
    labels = np.array([[-100, 4, -100, 6], [5, -100, -100, 4]])
    logits = np.zeros((2, 4, 8))
    logits[0, 1, 4] = logits[0, 3, 1] = logits[1, 0, 5] = logits[1, 3, 4] = 1.0
    logits[0, 0, 7] = 1.0  # an unmasked position, right or wrong, does not count
    assert masked_token_accuracy(logits, labels) == pytest.approx(3 / 4)
    assert unigram_baseline_accuracy(labels, Counter({4: 10, 5: 3})) == pytest.approx(2 / 4)


def test_accuracies_need_masked_positions():
    with pytest.raises(ValueError, match="no masked positions"):
        masked_token_accuracy(np.zeros((1, 2, 3)), np.full((1, 2), -100))
