"""Long inputs in TF: above `LONG_INPUT_THRESHOLD` queries self-attention runs `QUERY_CHUNK`
queries at a time, never holding `[heads, L, L]` scores.

At a small scale (threshold lowered to 64, 200 tokens, tiny width) the chunked path is
checked against the plain path of the same model on the same input (threshold above the
length), eagerly and under XLA, for every position kind and a decoder's causal mask; the
graph of the chunked call is checked for the absence of any `[.., heads, L, L]` value.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.tf.conftest import tiny_config
from xlmr_core import unpadding
from xlmr_tf import TFXLMRobertaForCausalLM, TFXLMRobertaModel

LENGTH, THRESHOLD, CHUNK = 200, 64, 48  # 200 = 4 chunks of 48 and one of 8
TOLERANCE = 1e-5
POSITION_KINDS = ("absolute", "relative_key", "relative_key_query")


def make(kind, decoder):
    config = tiny_config(position_embedding_type=kind, max_position_embeddings=LENGTH + 2, is_decoder=decoder)
    keras.utils.set_random_seed(0)
    return (TFXLMRobertaForCausalLM if decoder else TFXLMRobertaModel)(config)


def inputs(config, padding=0):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, size=(2, LENGTH)).astype(np.int32)
    mask = np.ones_like(ids)
    if padding:
        mask[1, LENGTH - padding :] = 0
        ids[1, LENGTH - padding :] = config.pad_token_id
    ids[:, 0] = config.bos_token_id
    return ids, mask


def graph_shapes(function, *args):
    """The static shape of every op output in the graph of `function(*args)`."""
    graph = tf.function(function).get_concrete_function(*args).graph
    return [tuple(t.shape.as_list()) for op in graph.get_operations() for t in op.outputs if t.shape.rank]


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_chunked_queries_equal_the_plain_path(monkeypatch, kind, decoder):
    model = make(kind, decoder)
    ids, mask = inputs(model.config, padding=30)
    field = "logits" if decoder else "last_hidden_state"
    plain = np.asarray(model(input_ids=ids, attention_mask=mask)[field])  # the default threshold is above 200
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", THRESHOLD)
    monkeypatch.setattr(unpadding, "QUERY_CHUNK", CHUNK)

    def forward(i, m):
        return model(input_ids=i, attention_mask=m)[field]

    real = mask.astype(bool)
    scale = max(1.0, float(np.abs(plain[real]).max()))
    chunked = forward(ids, mask)
    xla = tf.function(forward, jit_compile=True)(ids, mask)
    for name, got in (("eager", chunked), ("xla", xla)):
        np.testing.assert_allclose(np.asarray(got)[real], plain[real], atol=TOLERANCE * scale, err_msg=name)

    heads = model.config.num_attention_heads
    shapes = graph_shapes(forward, tf.constant(ids), tf.constant(mask))
    squares = [s for s in shapes if len(s) >= 2 and s[-2:] == (LENGTH, LENGTH)]
    # The encoder holds nothing L x L; a decoder only its causal mask, without a heads axis.
    assert all(len(s) < 4 or s[1] == 1 for s in squares) if decoder else not squares, squares
    # and no scores of more than one chunk of queries
    assert not any(len(s) == 4 and s[1] == heads and min(s[2:]) > CHUNK for s in shapes)


def test_output_attentions_keeps_the_whole_probabilities(monkeypatch):
    """Asking for the attentions takes the plain path: they are returned, not dropped."""
    model = make("relative_key", False)
    ids, mask = inputs(model.config)
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", THRESHOLD)
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert len(out.attentions) == model.config.num_hidden_layers
    assert tuple(out.attentions[0].shape) == (2, model.config.num_attention_heads, LENGTH, LENGTH)
    np.testing.assert_allclose(np.asarray(out.attentions[0]).sum(-1), 1.0, atol=1e-5)
    plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
    np.testing.assert_allclose(out.last_hidden_state, plain, atol=TOLERANCE * 10)


def test_below_the_threshold_the_plain_path_is_unchanged(monkeypatch):
    """At the threshold itself nothing is chunked: bit-identical outputs, however small the chunk."""
    model = make("relative_key_query", True)
    ids, mask = inputs(model.config, padding=5)
    want = np.asarray(model(input_ids=ids, attention_mask=mask).logits)
    monkeypatch.setattr(unpadding, "LONG_INPUT_THRESHOLD", LENGTH)
    monkeypatch.setattr(unpadding, "QUERY_CHUNK", CHUNK)
    np.testing.assert_array_equal(np.asarray(model(input_ids=ids, attention_mask=mask).logits), want)
