"""`encode`'s compiled paths: few shapes, programs reused across calls, the same embeddings.

TF runs `encode` through one `tf.function` traced once; Flax through one jitted step whose
programs are bounded by the length buckets (`xlmr_core.embeddings.encode_length`) and the
coarse token budgets (`encode_token_budget`). Both are checked here against hand-written
values, by counting traces / compiled programs over calls with varied lengths, and against the
padded path. Agreement across frameworks is `tests/cross/test_encode.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.cross.test_encode import TEXTS, base_class, within
from xlmr_core import XLMRobertaTokenizerFast
from xlmr_core.embeddings import encode_length, encode_token_budget
from xlmr_core.pretrained import bundled_checkpoint

# Lengths 3 to 64 tokens (the bundled model's longest): every length bucket up to 64 is met.
VARIED = [("mot " * n).strip() for n in (1, 5, 9, 13, 20, 27, 33, 40, 47, 55, 62, 70)]


@pytest.fixture(scope="module")
def tokenizer():
    return XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())


def test_length_buckets_and_budgets_match_a_hand_listing():
    buckets = sorted({encode_length(length, 512) for length in range(1, 2000)})
    assert buckets == [16, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    assert [encode_length(n, 512) for n in (1, 16, 17, 49, 65, 97, 129, 385)] == [
        16,
        16,
        32,
        64,
        96,
        128,
        192,
        512,
    ]
    assert encode_length(70, 64) == 64  # capped at the position table
    # A batch of 4 x 48 = 192 slots: quarters of 48 tokens; past half of the batch (96) the
    # padded path, whose program compiles several times faster.
    assert [encode_token_budget(real, 192) for real in (8, 48, 49, 96, 97, 144, 145, 192)] == [
        48,
        48,
        96,
        96,
        None,
        None,
        None,
        None,
    ]
    with pytest.raises(ValueError, match="193 real tokens do not fit a capacity of 192"):
        encode_token_budget(193, 192)


def test_tf_encode_traces_once_across_calls_and_shapes(tokenizer):
    model = base_class("tf").from_pretrained(bundled_checkpoint())
    first = model.encode(VARIED, tokenizer, batch_size=3)
    model.encode(TEXTS, tokenizer, batch_size=5)
    model.encode(VARIED[::-1], tokenizer, batch_size=4, max_length=20)
    assert model.__dict__["_encode_traces"] == {True: 1}
    padded = model.encode(VARIED, tokenizer, batch_size=3, unpadded=False)
    assert model.__dict__["_encode_traces"] == {True: 1, False: 1}
    within(first, padded)
    # The graph's numbers are the eager model call's.
    ids = tokenizer(VARIED[:3], padding=True, return_tensors="np")
    eager = model(dict(ids), training=False).last_hidden_state
    graph = model._encode_graph(True)(
        ids["input_ids"].astype(np.int32), ids["attention_mask"].astype(np.int32)
    )
    mask = ids["attention_mask"][..., None].astype(bool)
    within(np.where(mask, graph, 0), np.where(mask, eager, 0))


def test_flax_encode_compiles_a_bounded_set_reused_across_calls(tokenizer):
    model = base_class("flax").from_pretrained(bundled_checkpoint())
    first = model.encode(VARIED, tokenizer, batch_size=2)
    step = model.__dict__["_jitted_encode_step"]
    compiled = step._cache_size()
    # Lengths up to 64 meet the 4 buckets 16..64, each with at most 2 budgets and the padded path.
    assert 0 < compiled <= 4 * 3
    again = model.encode(VARIED[::-1], tokenizer, batch_size=2)  # other batches, the same shapes
    assert step._cache_size() == compiled
    np.testing.assert_array_equal(again[::-1], first)
    within(first, model.encode(VARIED, tokenizer, batch_size=2, unpadded=False))


@pytest.mark.parametrize("framework", ["torch", "tf", "flax"])
def test_a_tokenizer_with_ids_beyond_the_vocabulary_is_refused_the_same_way(tokenizer, framework):
    """A compiled forward would read outside the embedding table silently: refused before it runs."""
    model = base_class(framework).from_pretrained(bundled_checkpoint())
    big = max(tokenizer(TEXTS)["input_ids"], key=max)
    model.config.vocab_size = max(big) - 1  # the model's table now lacks the ids the tokenizer gives
    with pytest.raises(ValueError) as caught:
        model.encode(TEXTS, tokenizer)
    # The words of the eager models' own input check, now in every framework.
    assert str(caught.value) == f"input_ids contains {max(big)}, outside the vocabulary [0, {max(big) - 1})"


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_unpadded_must_be_a_bool(tokenizer, framework):
    model = base_class(framework).from_pretrained(bundled_checkpoint())
    with pytest.raises(TypeError, match="unpadded must be True or False, got str"):
        model.encode(TEXTS, tokenizer, unpadded="yes")
