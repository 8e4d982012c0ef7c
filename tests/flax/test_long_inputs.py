"""Long inputs in Flax: above `LONG_INPUT_THRESHOLD` queries self-attention runs `QUERY_CHUNK`
queries at a time, never holding `[heads, L, L]` scores.

At a small scale (threshold lowered to 64, 200 tokens, tiny width) the chunked path is
checked against the plain path of the same model on the same input (threshold above the
length), for every position kind and a decoder's causal mask; the jaxpr of the chunked call
is checked for the absence of any `[.., heads, L, L]` value.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.flax.conftest import tiny_config
from xlmr_core import unpadding
from xlmr_flax import FlaxXLMRobertaForCausalLM, FlaxXLMRobertaModel

LENGTH, THRESHOLD, CHUNK = 200, 64, 48  # 200 = 4 chunks of 48 and one of 8
TOLERANCE = 1e-5
POSITION_KINDS = ("absolute", "relative_key", "relative_key_query")


def make(kind, decoder):
    config = tiny_config(position_embedding_type=kind, max_position_embeddings=LENGTH + 2, is_decoder=decoder)
    return (FlaxXLMRobertaForCausalLM if decoder else FlaxXLMRobertaModel)(config, seed=0)


def inputs(config, padding=0):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, size=(2, LENGTH)).astype(np.int32)
    mask = np.ones_like(ids)
    if padding:
        mask[1, LENGTH - padding :] = 0
        ids[1, LENGTH - padding :] = config.pad_token_id
    ids[:, 0] = config.bos_token_id
    return ids, mask


def shapes_in(jaxpr):
    """Every value's shape in `jaxpr` and its sub-jaxprs (jit, custom rules)."""
    for equation in jaxpr.eqns:
        for var in equation.outvars:
            yield tuple(getattr(var.aval, "shape", ()))
        for param in equation.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from shapes_in(inner)


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_chunked_queries_equal_the_plain_path(monkeypatch, kind, decoder):
    model = make(kind, decoder)
    ids, mask = inputs(model.config, padding=30)
    field = "logits" if decoder else "last_hidden_state"
    plain = np.asarray(model(ids, mask)[field])  # the default threshold (1,024) is above 200
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", THRESHOLD)
    monkeypatch.setattr(unpadding, "QUERY_CHUNK", CHUNK)
    chunked = np.asarray(model(ids, mask)[field])
    real = mask.astype(bool)
    scale = max(1.0, float(np.abs(plain[real]).max()))
    np.testing.assert_allclose(chunked[real], plain[real], atol=TOLERANCE * scale)

    heads = model.config.num_attention_heads
    trace = jax.make_jaxpr(lambda i, m: model(i, m)[field])(ids, mask)
    squares = [s for s in shapes_in(trace.jaxpr) if len(s) >= 2 and s[-2:] == (LENGTH, LENGTH)]
    # The encoder holds nothing L x L; a decoder only its causal mask, without a heads axis.
    assert all(len(s) < 4 or s[1] == 1 for s in squares) if decoder else not squares, squares
    # and no scores of more than one chunk of queries
    assert not any(len(s) == 4 and s[1] == heads and min(s[2:]) > CHUNK for s in shapes_in(trace.jaxpr))


def test_output_attentions_keeps_the_whole_probabilities(monkeypatch):
    """Asking for the attentions takes the plain path: they are returned, not dropped."""
    model = make("relative_key", False)
    ids, mask = inputs(model.config)
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", THRESHOLD)
    out = model(ids, mask, output_attentions=True)
    assert len(out.attentions) == model.config.num_hidden_layers
    assert out.attentions[0].shape == (2, model.config.num_attention_heads, LENGTH, LENGTH)
    np.testing.assert_allclose(np.asarray(out.attentions[0]).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out.last_hidden_state, model(ids, mask).last_hidden_state, atol=TOLERANCE * 10)


def test_below_the_threshold_the_plain_path_is_unchanged(monkeypatch):
    """At the threshold itself nothing is chunked: bit-identical outputs, however small the chunk."""
    model = make("relative_key_query", True)
    ids, mask = inputs(model.config, padding=5)
    want = np.asarray(model(ids, mask).logits)
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", LENGTH)
    monkeypatch.setattr(unpadding, "QUERY_CHUNK", CHUNK)
    np.testing.assert_array_equal(np.asarray(model(ids, mask).logits), want)


def temporary_bytes(model, ids, mask):
    """The compiled forward's scratch memory (XLA's own accounting), in bytes."""
    forward = jax.jit(lambda params, i, m: model(i, m, params=params).last_hidden_state)
    return forward.lower(model.params, ids, mask).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_chunks_run_one_at_a_time(monkeypatch, kind):
    """The chunks are a loop in the program, so its scratch memory is about one chunk's share of
    the plain path's (whose `[heads, L, L]` scores dominate it), not several chunks' at once."""
    model = make(kind, False)
    ids, mask = inputs(model.config)
    plain = temporary_bytes(model, ids, mask)
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", THRESHOLD)
    monkeypatch.setattr(unpadding, "QUERY_CHUNK", CHUNK)
    assert temporary_bytes(model, ids, mask) <= plain * CHUNK / LENGTH


def test_attention_dropout_in_training_still_applies_to_the_chunks(monkeypatch):
    """With dropout active the chunks call it one by one (a loop body cannot call a Flax module):
    with only attention dropout on, a training call differs from inference and between keys."""
    config = tiny_config(
        position_embedding_type="relative_key",
        max_position_embeddings=LENGTH + 2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.5,
    )
    model = FlaxXLMRobertaModel(config, seed=0)
    ids, mask = inputs(config)
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", THRESHOLD)
    monkeypatch.setattr(unpadding, "QUERY_CHUNK", CHUNK)
    inference = np.asarray(model(ids, mask).last_hidden_state)
    one, two = (
        np.asarray(model(ids, mask, train=True, dropout_rng=jax.random.PRNGKey(seed)).last_hidden_state)
        for seed in (1, 2)
    )
    assert np.isfinite(one).all() and not np.allclose(one, inference) and not np.allclose(one, two)
