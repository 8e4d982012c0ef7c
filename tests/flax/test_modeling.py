"""What the Flax models compute: structure, masks, positions, cache, losses, dtypes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from tests.flax.conftest import HEADS, model_class, tiny_config, token_batch
from xlmr_core.weight_mapping import to_canonical_name, to_framework_name

POSITION_KINDS = ("absolute", "relative_key", "relative_key_query")


def flat_paths(params) -> set[str]:
    return set(traverse_util.flatten_dict(params, sep="/"))


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("head", HEADS)
def test_every_parameter_path_follows_the_mapping_table(head, make_model):
    paths = flat_paths(make_model(head).params)
    assert {to_framework_name(to_canonical_name(p, "flax"), "flax") for p in paths} == paths


@pytest.mark.parametrize(
    ("head", "present", "absent"),
    [
        ("Model", ["embeddings.word_embeddings.weight", "pooler.dense.weight"], ["lm_head.bias"]),
        ("ForMaskedLM", ["roberta.encoder.layer.1.output.LayerNorm.weight", "lm_head.bias"], ["pooler"]),
        ("ForMultipleChoice", ["roberta.pooler.dense.weight", "classifier.weight"], []),
        ("ForSequenceClassification", ["classifier.out_proj.weight"], ["pooler", "lm_head"]),
        ("ForQuestionAnswering", ["qa_outputs.weight"], ["pooler"]),
    ],
)
def test_heads_have_the_reference_parameters(head, present, absent, make_model):
    names = set(make_model(head).canonical_state())
    for name in present:
        assert name in names
    for fragment in absent:
        assert not any(fragment in name for name in names)


def test_tied_lm_head_has_no_decoder_matrix_and_untied_one_does(make_model):
    assert "lm_head.decoder.weight" not in make_model("ForMaskedLM").canonical_state()
    untied = make_model("ForMaskedLM", tie_word_embeddings=False).canonical_state()
    assert untied["lm_head.decoder.weight"].shape == (99, 32)


def test_relative_kinds_add_a_distance_table_per_layer(make_model):
    names = make_model("Model", position_embedding_type="relative_key").canonical_state()
    assert names["encoder.layer.0.attention.self.distance_embedding.weight"].shape == (2 * 40 - 1, 8)
    assert "embeddings.position_embeddings.weight" in names  # kept: checkpoints carry it


def test_padding_rows_start_at_zero(make_model):
    state = make_model("Model").canonical_state()
    assert not state["embeddings.word_embeddings.weight"][1].any()
    assert not state["embeddings.position_embeddings.weight"][1].any()


# ----------------------------------------------------------------------------- outputs
def test_outputs_are_pytrees_and_jit_gives_the_eager_result(make_model):
    model = make_model("ForMaskedLM")
    ids, mask = token_batch(model.config)
    eager = model(ids, mask, output_hidden_states=True)
    jitted = jax.jit(lambda p, i, m: model(i, m, params=p, output_hidden_states=True))(
        model.params, ids, mask
    )
    assert type(jitted) is type(eager) and list(jitted) == list(eager)
    np.testing.assert_allclose(jitted.logits, eager.logits, atol=1e-5)
    assert len(jax.tree_util.tree_leaves(eager)) == 1 + 3  # logits + 3 hidden states


def test_return_dict_false_gives_the_tuple(make_model):
    model = make_model("Model")
    ids, mask = token_batch(model.config)
    out = model(ids, mask)
    as_tuple = model(ids, mask, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    np.testing.assert_array_equal(as_tuple[0], out.last_hidden_state)
    np.testing.assert_array_equal(as_tuple[1], out.pooler_output)


def test_hidden_states_and_attentions_have_one_entry_per_layer(make_model):
    model = make_model("Model")
    ids, mask = token_batch(model.config)
    out = model(ids, mask, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)
    assert out.attentions[0].shape == (2, 4, 7, 7)
    np.testing.assert_allclose(np.sum(out.attentions[0], -1), 1.0, atol=1e-6)
    assert not np.asarray(out.attentions[0])[1, :, :, -3:].any()  # padding gets no attention


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_padding_does_not_change_the_real_tokens(kind, make_model):
    model = make_model("Model", position_embedding_type=kind)
    ids, mask = token_batch(model.config)
    padded = model(ids, mask).last_hidden_state[1, :4]
    alone = model(ids[1:, :4], mask[1:, :4]).last_hidden_state[0]
    np.testing.assert_allclose(padded, alone, atol=1e-5)


def test_inputs_embeds_gives_the_input_ids_result(make_model):
    model = make_model("ForSequenceClassification")
    ids = token_batch(model.config)[0][:1]
    table = model.params["roberta"]["embeddings"]["word_embeddings"]["embedding"]
    np.testing.assert_allclose(model(inputs_embeds=table[ids]).logits, model(ids).logits, atol=1e-6)


def test_head_mask_zeroes_the_masked_heads_attention(make_model):
    model = make_model("Model")
    ids, mask = token_batch(model.config)
    head_mask = np.ones((2, 4), np.float32)
    head_mask[1, 2] = 0
    out = model(ids, mask, head_mask=head_mask, output_attentions=True)
    assert not np.asarray(out.attentions[1])[:, 2].any()
    assert np.asarray(out.attentions[0])[:, 2].any()
    per_layer = model(ids, mask, head_mask=np.ones((2, 4)))
    shared = model(ids, mask, head_mask=np.ones(4))
    np.testing.assert_allclose(per_layer.last_hidden_state, model(ids, mask).last_hidden_state, atol=1e-6)
    np.testing.assert_allclose(shared.last_hidden_state, per_layer.last_hidden_state, atol=1e-6)


def test_dropout_needs_a_key_and_depends_on_it(make_model):
    model = make_model("ForTokenClassification")
    ids, mask = token_batch(model.config)
    key = jax.random.PRNGKey(3)
    first = model(ids, mask, dropout_rng=key, train=True).logits
    np.testing.assert_array_equal(first, model(ids, mask, dropout_rng=key, train=True).logits)
    assert np.abs(first - model(ids, mask).logits).max() > 1e-3
    with pytest.raises(ValueError, match="dropout_rng"):
        model(ids, mask, train=True)


def test_bfloat16_compute_with_float32_parameters(make_model):
    config = make_model("ForMaskedLM").config
    reference = make_model("ForMaskedLM")
    model = model_class("ForMaskedLM")(config, dtype=jnp.bfloat16)
    model.params = reference.params
    ids, mask = token_batch(config)
    logits = jax.jit(lambda p: model(ids, mask, params=p).logits)(model.params)
    assert logits.dtype == jnp.bfloat16
    assert {x.dtype for x in jax.tree_util.tree_leaves(model.params)} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(np.asarray(logits, np.float32), reference(ids, mask).logits, atol=0.1)


# ----------------------------------------------------------------------------- decoder and cache
@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_decoder_sees_no_future_tokens(kind, make_model):
    model = make_model("ForCausalLM", is_decoder=True, position_embedding_type=kind)
    ids, _ = token_batch(model.config)
    changed = ids.copy()
    changed[:, 5:] = 4
    np.testing.assert_allclose(model(ids).logits[:, :5], model(changed).logits[:, :5], atol=1e-6)


def test_jitted_step_by_step_decoding_matches_a_full_pass(make_model):
    # The hardest kind: relative distances must be right for queries after the cache.
    model = make_model(
        "ForCausalLM", is_decoder=True, add_cross_attention=True, position_embedding_type="relative_key_query"
    )
    ids, mask = token_batch(model.config)
    encoder = np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)
    full = model(ids, mask, encoder_hidden_states=encoder).logits

    @jax.jit
    def step(params, ids, mask, past):
        out = model(ids, mask, encoder_hidden_states=encoder, past_key_values=past, params=params)
        return out.logits, out.past_key_values

    logits, past = step(model.params, ids[:, :5], mask[:, :5], None)
    assert len(past) == 2 and len(past[0]) == 4 and past[0][0].shape == (2, 4, 5, 8)
    for t in range(5, 7):
        next_logits, past = step(model.params, ids[:, t : t + 1], mask[:, : t + 1], past)
        logits = jnp.concatenate([logits, next_logits], axis=1)
    np.testing.assert_allclose(logits, full, atol=1e-5)


def test_fixed_size_cache_decodes_every_step_with_one_compiled_function(make_model):
    model = make_model(
        "ForCausalLM", is_decoder=True, add_cross_attention=True, position_embedding_type="relative_key_query"
    )
    ids, mask = token_batch(model.config)
    encoder = np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)
    full = model(ids, mask, encoder_hidden_states=encoder).logits
    traces = []

    @jax.jit
    def step(params, ids, mask, cache, index):
        traces.append(ids.shape)  # runs only when tracing
        out = model(
            ids, mask, encoder_hidden_states=encoder, past_key_values=cache, cache_index=index, params=params
        )
        return out.logits, out.past_key_values

    slots = np.zeros((2, 9), np.int32)  # two spare slots past the sequence
    slots[:, :7] = mask
    logits, cache = step(model.params, ids[:, :4], slots, model.init_cache(2, 9), 0)
    assert cache[0][0].shape == (2, 4, 9, 8) and len(cache[0]) == 4
    for t in range(4, 7):
        next_logits, cache = step(model.params, ids[:, t : t + 1], slots, cache, t)
        logits = jnp.concatenate([logits, next_logits], axis=1)
    np.testing.assert_allclose(logits, full, atol=1e-5)
    assert len(traces) == 2  # the prefix, then one function for every single-token step
    with pytest.raises(ValueError, match="do not fit the cache"):
        model(ids[:, :1], slots, past_key_values=cache, cache_index=9)


def test_encoder_model_returns_no_cache(make_model):
    model = make_model("Model")
    ids, mask = token_batch(model.config)
    assert "past_key_values" not in model(ids, mask)


# ----------------------------------------------------------------------------- losses
def log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def mean_nll(logits, labels, ignore=-100):
    logp, labels = log_softmax(logits), np.asarray(labels)
    keep = labels != ignore
    return -np.mean(np.take_along_axis(logp, np.where(keep, labels, 0)[..., None], -1)[..., 0][keep])


def test_masked_lm_loss_ignores_minus_100(make_model):
    model = make_model("ForMaskedLM")
    ids, mask = token_batch(model.config)
    labels = np.where(np.arange(7) % 2 == 0, ids, -100)
    out = model(ids, mask, labels=labels)
    np.testing.assert_allclose(out.loss, mean_nll(out.logits, labels), rtol=1e-5)


def test_causal_lm_loss_predicts_the_next_token(make_model):
    model = make_model("ForCausalLM", is_decoder=True)
    ids, mask = token_batch(model.config)
    labels = np.where(mask == 1, ids, -100)
    out = model(ids, mask, labels=labels)
    np.testing.assert_allclose(out.loss, mean_nll(out.logits[:, :-1], labels[:, 1:]), rtol=1e-5)
    assert "past_key_values" not in out  # training calls build no cache


@pytest.mark.parametrize("problem", ["single_label", "regression", "multi_label"])
def test_sequence_classification_losses(problem, make_model):
    num_labels = 1 if problem == "regression" else 3
    model = make_model("ForSequenceClassification", num_labels=num_labels)
    ids, mask = token_batch(model.config)
    rng = np.random.default_rng(0)
    if problem == "single_label":
        labels = np.array([2, 0])
    elif problem == "regression":
        labels = rng.standard_normal(2).astype(np.float32)
    else:
        labels = rng.integers(0, 2, size=(2, 3)).astype(np.float32)
    out = model(ids, mask, labels=labels)
    x = np.asarray(out.logits, np.float64)
    if problem == "single_label":
        expected = mean_nll(x, labels)
    elif problem == "regression":
        expected = np.mean((x[:, 0] - labels) ** 2)
    else:
        expected = np.mean(np.log1p(np.exp(-x)) * labels + np.log1p(np.exp(x)) * (1 - labels))
    np.testing.assert_allclose(out.loss, expected, rtol=1e-5)


def test_multiple_choice_scores_each_choice(make_model):
    model = make_model("ForMultipleChoice")
    ids, mask = token_batch(model.config, choices=3)
    out = model(ids, mask, labels=np.array([1, 2]))
    assert out.logits.shape == (2, 3)
    np.testing.assert_allclose(out.loss, mean_nll(out.logits, [1, 2]), rtol=1e-5)
    single = model(ids[:1, 2:3], mask[:1, 2:3]).logits[0, 0]  # a choice does not see the others
    np.testing.assert_allclose(single, out.logits[0, 2], atol=1e-5)


def test_question_answering_clamps_and_ignores_outside_positions(make_model):
    model = make_model("ForQuestionAnswering")
    ids, mask = token_batch(model.config)
    out = model(ids, mask, start_positions=np.array([1, 100]), end_positions=np.array([3, 2]))
    start = mean_nll(out.start_logits[:1], [1])  # 100 -> clamped to 7 -> ignored
    end = mean_nll(out.end_logits, [3, 2])
    np.testing.assert_allclose(out.loss, (start + end) / 2, rtol=1e-5)


def test_token_classification_loss(make_model):
    model = make_model("ForTokenClassification")
    ids, mask = token_batch(model.config)
    labels = np.where(mask == 1, ids % 3, -100)
    out = model(ids, mask, labels=labels)
    np.testing.assert_allclose(out.loss, mean_nll(out.logits, labels), rtol=1e-5)


# ----------------------------------------------------------------------------- labelled positions
def mlm_batch(config):
    ids, mask = token_batch(config)
    labels = np.full(ids.shape, -100)
    labels[0, [1, 4]] = ids[0, [1, 4]]
    labels[1, 2] = 5
    return ids, mask, labels


def test_labelled_positions_only_gives_the_full_loss_on_fewer_rows(make_model):
    model = make_model("ForMaskedLM")
    ids, mask, labels = mlm_batch(model.config)
    full = model(ids, mask, labels=labels)
    sparse = model(ids, mask, labels=labels, labelled_positions_only=True)
    np.testing.assert_array_equal(sparse.masked_positions, [1, 4, 9])
    np.testing.assert_allclose(sparse.logits, np.asarray(full.logits).reshape(14, 99)[[1, 4, 9]], atol=1e-5)
    np.testing.assert_allclose(sparse.loss, full.loss, rtol=1e-6)


def test_labelled_positions_under_jit_pad_to_max_predictions(make_model):
    model = make_model("ForMaskedLM")
    ids, mask, labels = mlm_batch(model.config)

    @jax.jit
    def loss(params, labels):
        out = model(ids, mask, labels=labels, labelled_positions_only=True, max_predictions=5, params=params)
        return out.loss, out.masked_positions

    value, positions = loss(model.params, labels)
    np.testing.assert_array_equal(positions, [1, 4, 9, -1, -1])
    np.testing.assert_allclose(value, model(ids, mask, labels=labels).loss, rtol=1e-6)
    too_many = np.where(mask == 1, ids, -100)  # 11 labelled > 5
    assert np.isnan(loss(model.params, too_many)[0])
    with pytest.raises(ValueError, match="max_predictions"):
        jax.jit(lambda p, y: model(ids, mask, labels=y, labelled_positions_only=True, params=p))(
            model.params, labels
        )


# ----------------------------------------------------------------------------- gradients
def test_padding_embedding_rows_get_no_gradient(make_model):
    model = make_model("ForTokenClassification")
    ids, mask = token_batch(model.config)
    labels = np.where(mask == 1, 1, -100)

    grads = jax.jit(jax.grad(lambda p: model(ids, mask, labels=labels, params=p).loss))(model.params)
    embeddings = grads["roberta"]["embeddings"]
    assert not np.asarray(embeddings["word_embeddings"]["embedding"])[1].any()
    assert not np.asarray(embeddings["position_embeddings"]["embedding"])[1].any()
    assert np.asarray(embeddings["word_embeddings"]["embedding"])[ids[0, 1]].any()


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("head", "call", "message"),
    [
        ("ForMaskedLM", lambda m, ids, mask: m(ids + 200, mask), "input_ids contains"),
        (
            "ForMaskedLM",
            lambda m, ids, mask: m(np.zeros((1, 39), np.int32)),
            "longer than the position table",
        ),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, mask[:, :3]), "attention_mask has shape"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, token_type_ids=ids), "token_type_ids contains"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids[0]), r"input_ids must be \[batch, sequence\]"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, inputs_embeds=np.zeros((2, 7, 32))), "exactly one"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, head_mask=np.ones(3)), "head_mask has shape"),
        ("Model", lambda m, ids, mask: m(ids, past_key_values=((ids, ids),) * 2), "needs a decoder"),
        ("Model", lambda m, ids, mask: m(ids, encoder_hidden_states=np.zeros((2, 3, 32))), "cross-attention"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, labels=ids[:, :3]), "labels has shape"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, labels=ids + 300), "labels must be in"),
        ("ForMaskedLM", lambda m, ids, mask: m(ids, start_positions=ids), "does not take start_positions"),
    ],
)
def test_bad_input_fails_with_a_clear_error(head, call, message, make_model):
    model = make_model(head)
    ids, mask = token_batch(model.config)
    with pytest.raises((ValueError, TypeError), match=message):
        call(model, ids, mask)


def test_question_answering_needs_two_labels():
    model = model_class("ForQuestionAnswering")(tiny_config(num_labels=3))
    with pytest.raises(ValueError, match="num_labels=2"):
        model(np.zeros((1, 4), np.int32))


def test_cross_attention_needs_a_decoder():
    with pytest.raises(ValueError, match="is_decoder=True"):
        model_class("Model")(tiny_config(add_cross_attention=True))
