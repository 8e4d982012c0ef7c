"""The rules written once in xlmr_core: unpadded arguments, the cache layout, the relative-position index."""

import numpy as np
import pytest

from xlmr_core.caching import check_past_key_values
from xlmr_core.configuration import XLMRobertaConfig
from xlmr_core.modeling_utils import relative_position_index
from xlmr_core.unpadding import check_budget_fits, check_unpadded_arguments


@pytest.mark.parametrize("budget", [0, -3, 2.5, "64", True, np.float32(8)])
def test_a_token_budget_that_is_not_a_positive_integer_is_refused(budget):
    with pytest.raises(ValueError, match=r"^token_budget must be a positive integer or None, got "):
        check_unpadded_arguments(True, budget)


def test_a_token_budget_without_unpadded_is_refused():
    with pytest.raises(ValueError, match="token_budget is the packed length of unpadded=True"):
        check_unpadded_arguments(False, 64)


def test_unpadded_must_be_a_bool():
    with pytest.raises(TypeError, match="unpadded must be True or False, got str"):
        check_unpadded_arguments("yes", None)


def test_numpy_integers_are_accepted_as_budgets():
    check_unpadded_arguments(True, np.int64(64))
    check_unpadded_arguments(np.bool_(True), None)


def test_a_budget_smaller_than_the_real_tokens_is_refused():
    check_budget_fits(10, 10)
    with pytest.raises(ValueError, match=r"token_budget=9 is smaller than the batch's 10 real tokens"):
        check_budget_fits(9, 10)


def _config(**kw):
    return XLMRobertaConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, **kw
    )


def test_a_cache_needs_a_decoder():
    with pytest.raises(ValueError, match=r"needs a decoder"):
        check_past_key_values(_config(), ((np.zeros((1, 2, 3, 4)),) * 2,) * 2, 1)


def test_a_cache_gives_its_length():
    entry = (np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4)))
    assert check_past_key_values(_config(is_decoder=True), (entry, entry), 1) == 3
    assert check_past_key_values(_config(is_decoder=True), None, 1) == 0


@pytest.mark.parametrize(
    "past, message",
    [
        ("x", r"one entry per layer \(2\)"),
        (((np.zeros((1, 2, 3, 4)),),) * 2, r"past_key_values\[0\] must be \(key, value\)"),
        (((np.zeros((1, 2, 3, 5)),) * 2,) * 2, r"past_key_values\[0\] holds shape \(1, 2, 3, 5\)"),
        (((np.zeros((2, 2, 3, 4)),) * 2,) * 2, r"past_key_values\[0\] holds shape \(2, 2, 3, 4\)"),
        (
            ((np.zeros((1, 2, 3, 4)),) * 2, (np.zeros((1, 2, 4, 4)),) * 2),
            r"entries disagree on the cached length",
        ),
    ],
)
def test_a_cache_of_the_wrong_layout_is_refused(past, message):
    with pytest.raises(ValueError, match=message):
        check_past_key_values(_config(is_decoder=True), past, 1)


def test_the_relative_position_index_counts_distances_by_hand():
    # Queries at positions 2 and 3 of 4; the table's row for distance d is d + max - 1.
    expected = np.array([[2 - k + 9 for k in range(4)], [3 - k + 9 for k in range(4)]])
    np.testing.assert_array_equal(relative_position_index(2, 4, 10), expected)


def test_the_relative_position_index_takes_a_framework_arange():
    torch = pytest.importorskip("torch")
    index = relative_position_index(2, 4, 10, arange=torch.arange)
    np.testing.assert_array_equal(index.numpy(), relative_position_index(2, 4, 10))
