"""The seven TF models on their own: structure, call conventions, options, losses, checkpoints.

Agreement with PyTorch lives in tests/cross, with the reference in tests/parity; expected
numbers here come from an independent path (numpy, or the same model another way).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from xlmr_core.weight_mapping import to_canonical_name

from .conftest import (
    HEADS,
    HIDDEN,
    PAD,
    POSITION_KINDS,
    VOCAB,
    build,
    config_for,
    inputs_for,
    labels_for,
    token_ids,
)


def _np(value):
    return np.asarray(value, dtype=np.float64)


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _cross_entropy(logits, labels, ignore=-100):
    logits, labels = _np(logits).reshape(-1, logits.shape[-1]), np.asarray(labels).reshape(-1)
    keep = labels != ignore
    return float(-_log_softmax(logits[keep])[np.arange(keep.sum()), labels[keep]].mean())


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("head", HEADS)
def test_every_head_is_a_keras_model_with_variables_named_by_the_tf_rules(head):
    model = build(head)
    assert isinstance(model, keras.Model)
    paths = list(model._variables_by_path())
    assert paths, "variables exist right after construction"
    canonical = [to_canonical_name(path, "tf") for path in paths]  # raises on a stray name
    assert len(set(canonical)) == len(canonical)
    assert "roberta.embeddings.word_embeddings.weight" in canonical


@pytest.mark.parametrize("head", HEADS)
def test_a_dict_and_keyword_arguments_give_the_same_outputs(head):
    model = build(head)
    inputs = inputs_for(head)
    from_dict = model({k: tf.constant(v) for k, v in inputs.items()})
    from_keywords = model(**inputs)
    assert from_dict.keys() == from_keywords.keys()
    for x, y in zip(
        tf.nest.flatten(tuple(from_dict.values())), tf.nest.flatten(tuple(from_keywords.values()))
    ):
        np.testing.assert_array_equal(x, y)


def test_a_dict_subclass_holding_flags_is_accepted_like_a_tokenizer_output():
    class BatchEncoding(dict):
        pass

    model = build("TFXLMRobertaModel")
    ids = token_ids()
    out = model(BatchEncoding(input_ids=tf.constant(ids), output_attentions=True))
    np.testing.assert_array_equal(out.last_hidden_state, model(ids).last_hidden_state)
    assert len(out.attentions) == 2


def test_a_tokenizer_dict_with_an_unknown_key_is_refused():
    model = build("TFXLMRobertaModel")
    with pytest.raises(ValueError, match="offset_mapping"):
        model({"input_ids": token_ids(), "offset_mapping": np.zeros((2, 7, 2), np.int32)})


def test_return_dict_false_returns_the_tuple_of_set_fields():
    model = build("TFXLMRobertaForSequenceClassification")
    inputs = {**inputs_for("TFXLMRobertaForSequenceClassification"), "labels": np.array([0, 2])}
    as_dict = model(inputs, output_hidden_states=True)
    as_tuple = model(inputs, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict) == 3
    np.testing.assert_array_equal(as_tuple[1], as_dict.logits)


def test_attentions_and_hidden_states_have_one_entry_per_layer():
    model = build("TFXLMRobertaModel")
    out = model(token_ids(), output_attentions=True, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 4, 7, 7)
    np.testing.assert_allclose(np.sum(out.attentions[0], axis=-1), 1.0, rtol=1e-5)


def test_dropout_runs_only_in_training():
    model = build("TFXLMRobertaModel", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ids = token_ids()
    first, second = model(ids).last_hidden_state, model(ids, training=False).last_hidden_state
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(model(ids, training=True).last_hidden_state, first)


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_padding_does_not_change_the_real_tokens(kind):
    model = build("TFXLMRobertaModel", position_embedding_type=kind)
    ids = token_ids((1, 5))
    alone = model(ids).last_hidden_state
    padded_ids = np.concatenate([ids, np.full((1, 3), PAD, np.int32)], axis=1)
    mask = np.array([[1] * 5 + [0] * 3])
    padded = model(padded_ids, attention_mask=mask).last_hidden_state
    np.testing.assert_allclose(padded[:, :5], alone, atol=1e-5)


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_inputs_embeds_equal_the_looked_up_input_ids(kind):
    model = build("TFXLMRobertaModel", position_embedding_type=kind)
    ids = token_ids()
    embeds = tf.gather(model.roberta.embeddings.word_embeddings.table, ids)
    np.testing.assert_allclose(
        model(inputs_embeds=embeds).last_hidden_state, model(ids).last_hidden_state, atol=1e-6
    )


def test_a_zero_head_mask_silences_that_head():
    model = build("TFXLMRobertaModel")
    head_mask = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]], np.float32)
    out = model(token_ids(), head_mask=head_mask, output_attentions=True)
    assert np.all(np.asarray(out.attentions[0])[:, 1] == 0) and np.all(
        np.asarray(out.attentions[1])[:, 3] == 0
    )
    assert np.all(np.asarray(out.attentions[0])[:, 0] > 0)


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_decoding_with_the_cache_equals_a_full_recompute(kind):
    head = "TFXLMRobertaForCausalLM"
    model = build(head, position_embedding_type=kind)
    ids = token_ids((2, 6))
    encoder = np.random.default_rng(0).standard_normal((2, 3, 32)).astype(np.float32)
    full = model(ids, encoder_hidden_states=encoder, use_cache=False).logits
    step = model(ids[:, :4], encoder_hidden_states=encoder, use_cache=True)
    assert len(step.past_key_values) == 2 and len(step.past_key_values[0]) == 4
    rest = model(ids[:, 4:], encoder_hidden_states=encoder, past_key_values=step.past_key_values)
    np.testing.assert_allclose(rest.logits, np.asarray(full)[:, 4:], atol=1e-5)


def test_the_decoder_is_causal():
    model = build("TFXLMRobertaForCausalLM", add_cross_attention=False)
    ids = token_ids((1, 6))
    changed = ids.copy()
    changed[0, -1] = (ids[0, -1] + 1 - 3) % (VOCAB - 3) + 3
    np.testing.assert_allclose(model(ids).logits[:, :5], model(changed).logits[:, :5], atol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(np.array([[0, 5, VOCAB]])), "input_ids contains 99"),
        (lambda m: m(np.array([[0, -1]])), "input_ids contains -1"),
        (lambda m: m(token_ids((1, 39))), "longer than the position table"),
        (lambda m: m(token_ids(), attention_mask=np.ones((2, 6))), "attention_mask has shape"),
        (lambda m: m(token_ids(), token_type_ids=np.full((2, 7), 2)), "token_type_ids contains 2"),
        (lambda m: m(token_ids((2, 7, 1))), r"input_ids must be \[batch, sequence\]"),
        (lambda m: m(None), "exactly one of input_ids and inputs_embeds"),
        (lambda m: m(token_ids(), head_mask=np.ones(3)), "head_mask has shape"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(build("TFXLMRobertaModel"))


def test_inside_tf_function_out_of_range_ids_stop_with_the_same_message():
    model = build("TFXLMRobertaModel")
    forward = tf.function(lambda ids: model(ids).last_hidden_state)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input_ids must be in \[0, 99\)"):
        forward(tf.constant([[0, 5, VOCAB]]))


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", np.array([0, 2], np.int32)),
        ("multi_label_classification", np.array([[1, 0, 1], [0, 0, 1]], np.float32)),
        ("regression", np.array([[0.5, -1.0, 2.0], [0.0, 1.0, 0.1]], np.float32)),
    ],
)
def test_sequence_classification_loss_follows_the_problem_type(problem_type, labels):
    model = build("TFXLMRobertaForSequenceClassification", problem_type=problem_type)
    out = model(token_ids(), labels=labels)
    logits = _np(out.logits)
    if problem_type == "single_label_classification":
        expected = _cross_entropy(logits, labels)
    elif problem_type == "multi_label_classification":
        expected = np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
    else:
        expected = np.mean((logits - labels) ** 2)
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)


def test_one_label_means_regression_without_a_problem_type():
    model = build("TFXLMRobertaForSequenceClassification", num_labels=1)
    labels = np.array([0.5, -1.0], np.float32)
    out = model(token_ids(), labels=labels)
    np.testing.assert_allclose(float(out.loss), np.mean((_np(out.logits)[:, 0] - labels) ** 2), rtol=1e-5)


@pytest.mark.parametrize("head", ["TFXLMRobertaForTokenClassification", "TFXLMRobertaForMaskedLM"])
def test_token_losses_skip_labels_of_minus_100(head):
    model = build(head)
    labels = labels_for(head)["labels"]
    labels[0, :3] = -100
    out = model(token_ids(), labels=labels)
    np.testing.assert_allclose(float(out.loss), _cross_entropy(out.logits, labels), rtol=1e-5)


def test_causal_lm_loss_predicts_the_next_token():
    model = build("TFXLMRobertaForCausalLM", add_cross_attention=False)
    ids = token_ids()
    out = model(ids, labels=ids)
    np.testing.assert_allclose(
        float(out.loss), _cross_entropy(_np(out.logits)[:, :-1], ids[:, 1:]), rtol=1e-5
    )


def test_multiple_choice_scores_each_choice():
    model = build("TFXLMRobertaForMultipleChoice")
    labels = np.array([2, 0], np.int32)
    out = model(inputs_for("TFXLMRobertaForMultipleChoice"), labels=labels)
    assert out.logits.shape == (2, 3)
    np.testing.assert_allclose(float(out.loss), _cross_entropy(out.logits, labels), rtol=1e-5)


def test_question_answering_loss_averages_start_and_end_and_ignores_outside_positions():
    model = build("TFXLMRobertaForQuestionAnswering")
    start, end = np.array([1, 50], np.int32), np.array([3, 4], np.int32)  # 50 is past the end
    out = model(token_ids(), start_positions=start, end_positions=end)
    clamped = np.minimum(start, 7)  # clamped to the sequence length, which the loss ignores
    expected = (_cross_entropy(out.start_logits, clamped, ignore=7) + _cross_entropy(out.end_logits, end)) / 2
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-5)


def test_question_answering_needs_two_labels():
    with pytest.raises(ValueError, match="num_labels=2"):
        xlmr_tf.TFXLMRobertaForQuestionAnswering(config_for("TFXLMRobertaModel"))


def test_labelled_positions_only_gives_the_same_loss_and_the_labelled_rows():
    model = build("TFXLMRobertaForMaskedLM")
    ids = token_ids()
    labels = np.full_like(ids, -100)
    labels[0, 2], labels[1, 5] = 7, 11
    full = model(ids, labels=labels)
    sparse = model(ids, labels=labels, labelled_positions_only=True)
    np.testing.assert_array_equal(sparse.masked_positions, [2, 7 + 5])
    np.testing.assert_allclose(sparse.logits, np.asarray(full.logits).reshape(-1, VOCAB)[[2, 12]], atol=1e-5)
    np.testing.assert_allclose(float(sparse.loss), float(full.loss), rtol=1e-6)


def test_labels_out_of_range_are_a_value_error():
    model = build("TFXLMRobertaForSequenceClassification")
    with pytest.raises(ValueError, match="labels must be in"):
        model(token_ids(), labels=np.array([0, 3]))


# ----------------------------------------------------------------------------- compilation


def test_xla_forward_equals_eager():
    model = build("TFXLMRobertaForMaskedLM", position_embedding_type="relative_key_query")
    ids = tf.constant(token_ids())
    compiled = tf.function(lambda ids: model(ids).logits, jit_compile=True)
    np.testing.assert_allclose(compiled(ids), model(ids).logits, atol=1e-5)


def test_a_graph_with_unknown_lengths_runs_every_position_kind():
    for kind in POSITION_KINDS:
        model = build("TFXLMRobertaForCausalLM", position_embedding_type=kind, add_cross_attention=False)
        spec = tf.TensorSpec([None, None], tf.int32)
        forward = tf.function(lambda ids: model(ids).logits, input_signature=[spec])  # noqa: B023
        np.testing.assert_allclose(forward(token_ids()), model(token_ids()).logits, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_runs_close_to_float32(policy):
    reference = build("TFXLMRobertaForSequenceClassification").canonical_state()
    keras.mixed_precision.set_global_policy(policy)
    model = build("TFXLMRobertaForSequenceClassification")
    model.load_canonical_state(reference)
    out = model(token_ids(), labels=np.array([0, 1]))
    assert out.logits.dtype == policy.removeprefix("mixed_")
    keras.mixed_precision.set_global_policy("float32")
    exact = build("TFXLMRobertaForSequenceClassification")
    exact.load_canonical_state(reference)
    np.testing.assert_allclose(_np(out.logits), _np(exact(token_ids()).logits), atol=0.1)
    assert np.isfinite(float(out.loss))


def test_float_inputs_are_autocast_to_the_compute_dtype_not_to_the_int32_input_dtype():
    # `input_dtype` is int32 (the ids' dtype, for Keras's and TFLite's signature inference), so
    # Keras's own input conversion is off and the model autocasts floating inputs itself.
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build("TFXLMRobertaForCausalLM")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.input_dtype == "int32"
    inputs = inputs_for("TFXLMRobertaForCausalLM")
    # Small values: cast to integers they would all be 0.
    embeds = 0.1 * np.random.default_rng(0).standard_normal((2, 7, HIDDEN)).astype(np.float32)
    states = inputs["encoder_hidden_states"]

    def run(embeds, dtype):
        floats = {"inputs_embeds": embeds.astype(dtype), "encoder_hidden_states": states.astype(dtype)}
        return np.asarray(model(attention_mask=inputs["attention_mask"], **floats).logits, np.float32)

    assert model(inputs_embeds=embeds, encoder_hidden_states=states).logits.dtype == tf.float16
    np.testing.assert_array_equal(run(embeds, np.float32), run(embeds, np.float16))
    assert np.abs(run(embeds, np.float32) - run(0 * embeds, np.float32)).max() > 1e-3
