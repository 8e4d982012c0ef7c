"""The framework-neutral pieces of unpadded execution: budgets, padding share, option checks."""

import numpy as np
import pytest

from xlmr_core.unpadding import (
    MIN_TOKEN_BUDGET,
    UNPADDED_CONFLICTS,
    check_contiguous_rows,
    check_unpadded_options,
    padding_fraction,
    token_budget,
    zero_padded_positions,
)


@pytest.mark.parametrize(
    ("real", "capacity", "expected"),
    [
        (0, 4096, 64),  # the smallest bucket
        (64, 4096, 64),
        (65, 4096, 72),  # 65 = 0b1000001: rounded up at 4 significant bits, a step of 8
        (100, 4096, 104),
        (128, 4096, 128),  # a power of two is its own bucket
        (129, 4096, 144),
        (3200, 4096, 3328),
        (3329, 3400, 3400),  # never more than the padded batch holds
        (10, 32, 32),
    ],
)
def test_token_budget_rounds_up_to_a_bucket(real, capacity, expected):
    assert token_budget(real, capacity) == expected


def test_token_budget_wastes_at_most_an_eighth_above_the_minimum():
    for real in range(MIN_TOKEN_BUDGET + 1, 20000, 7):
        budget = token_budget(real, 1 << 20)
        assert real <= budget < real * 1.125 + 1


def test_token_budget_has_few_buckets():
    # about 8 per doubling: a jit compiles once per bucket, not once per count
    budgets = {token_budget(real, 16384) for real in range(16385)}
    assert len(budgets) == 1 + 8 * 8


def test_token_budget_rejects_more_tokens_than_capacity():
    with pytest.raises(ValueError, match="do not fit"):
        token_budget(33, 32)


def test_padding_fraction_counts_zeros():
    assert padding_fraction(np.array([[1, 1, 0, 0], [1, 0, 0, 0]])) == pytest.approx(5 / 8)
    assert padding_fraction(np.zeros((0, 3))) == 0.0


@pytest.mark.parametrize("option", UNPADDED_CONFLICTS)
def test_each_conflicting_option_is_named(option):
    with pytest.raises(ValueError, match=f"unpadded=True does not combine with {option}"):
        check_unpadded_options(**{option: True if option in ("use_cache", "output_attentions") else object()})


def test_unset_options_do_not_conflict():
    check_unpadded_options(past_key_values=None, use_cache=False, output_attentions=False, head_mask=None)


@pytest.mark.parametrize("mask", [[[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]], [[0, 1, 0]]])
def test_right_left_and_empty_rows_are_contiguous(mask):
    check_contiguous_rows(np.array(mask))


def test_padding_between_real_tokens_is_named_by_row():
    with pytest.raises(ValueError, match="row 1 has padding between real tokens"):
        check_contiguous_rows(np.array([[1, 1, 0, 0], [1, 0, 1, 1]]))


def test_zero_padded_positions_zeroes_only_the_sequence_fields_at_padding():
    mask = np.array([[1, 1, 0]])
    outputs = {
        "last_hidden_state": np.ones((1, 3, 2)),
        "pooler_output": np.ones((1, 2)),
        "logits": np.ones((1, 3, 5)),
    }
    token = zero_padded_positions("ForMaskedLM", outputs, mask)
    assert token["last_hidden_state"][0, :, 0].tolist() == [1, 1, 0]
    assert token["logits"][0, :, 0].tolist() == [1, 1, 0]
    assert token["pooler_output"].tolist() == [[1, 1]]
    sentence = zero_padded_positions("ForSequenceClassification", {"logits": np.ones((1, 3))}, mask)
    assert sentence["logits"].tolist() == [[1, 1, 1]]  # [batch, labels]: no sequence axis
