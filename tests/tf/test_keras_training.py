"""Training the Keras way: compile + fit / evaluate / predict, with the model's own loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from .conftest import HEADS, build, inputs_for, labels_for

TRAINABLE_HEADS = [head for head in HEADS if head != "TFXLMRobertaModel"]


def _dataset(head, batches=2, batch=2):
    """Feature dicts that carry their targets, as `fit(dataset)` receives them."""
    features = inputs_for(head, batch=batches * batch)
    targets = labels_for(head, batch=batches * batch)
    return tf.data.Dataset.from_tensor_slices({**features, **targets}).batch(batch)


@pytest.mark.parametrize("head", TRAINABLE_HEADS)
def test_fit_trains_every_head_with_its_own_loss_when_batches_carry_targets(head):
    model = build(head)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    dataset = _dataset(head)
    before = model.evaluate(dataset, verbose=0)
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.evaluate(dataset, verbose=0) != before


def test_features_and_labels_given_apart_train_with_the_models_loss():
    head = "TFXLMRobertaForSequenceClassification"
    model = build(head)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    features, labels = inputs_for(head, batch=4), labels_for(head, batch=4)["labels"]
    expected = float(model(features, labels=labels).loss)
    np.testing.assert_allclose(model.evaluate(features, labels, batch_size=4, verbose=0), expected, rtol=1e-5)


def test_fit_compiled_with_xla_equals_fit_without():
    head = "TFXLMRobertaForMaskedLM"
    weights = []
    for jit_compile in (False, True):
        model = build(head, position_embedding_type="relative_key")
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
        model.fit(_dataset(head), epochs=1, shuffle=False, verbose=0)
        weights.append(model.canonical_state())
    for name in weights[0]:
        np.testing.assert_allclose(weights[0][name], weights[1][name], atol=1e-5, err_msg=name)


def test_predict_returns_the_output_fields_batched():
    head = "TFXLMRobertaForQuestionAnswering"
    model = build(head)
    predictions = model.predict(inputs_for(head, batch=5), batch_size=2, verbose=0)
    assert set(predictions) == {"start_logits", "end_logits"}
    assert predictions["start_logits"].shape == (5, 7)


def test_fit_without_targets_or_a_keras_loss_says_what_is_missing():
    head = "TFXLMRobertaForTokenClassification"
    model = build(head)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="computed no loss"):
        model.fit(inputs_for(head), epochs=1, shuffle=False, verbose=0)


def _bad_labels(head, batch=4):
    """Targets one past the head's range (a 27-label set on a 2-label classifier, ids past the vocabulary)."""
    labels = labels_for(head, batch=batch)["labels"].copy()
    labels[-1] = {
        "TFXLMRobertaForSequenceClassification": 26,
        "TFXLMRobertaForMultipleChoice": 3,
        "TFXLMRobertaForTokenClassification": 3,
    }.get(head, 99)
    return labels


LABELLED_HEADS = [head for head in TRAINABLE_HEADS if head != "TFXLMRobertaForQuestionAnswering"]


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("head", LABELLED_HEADS)
def test_fit_and_evaluate_refuse_out_of_range_labels_with_the_eager_error(head, jit_compile):
    # Under XLA the in-graph check is dropped and the loss was a silent NaN; without XLA it was
    # TF's many-line assertion report. Both now raise the eager call's one-line error.
    overrides = {"num_labels": 2} if head == "TFXLMRobertaForSequenceClassification" else {}
    model = build(head, **overrides)
    features, labels = inputs_for(head, batch=4), _bad_labels(head)
    with pytest.raises(ValueError) as eager:
        model(features, labels=labels)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
    weights = model.canonical_state()
    dataset = tf.data.Dataset.from_tensor_slices({**features, "labels": labels}).batch(4)
    for run in (
        lambda: model.fit(dataset, epochs=1, verbose=0),
        lambda: model.evaluate(dataset, verbose=0),
        lambda: model.train_on_batch({**features, "labels": labels}),
    ):
        with pytest.raises(ValueError) as error:
            run()
        assert str(error.value) == str(eager.value)
        assert "\n" not in str(error.value)
    after = model.canonical_state()
    for name in weights:  # refused before the step: nothing trained on the bad batch
        np.testing.assert_array_equal(after[name], weights[name], err_msg=name)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_clamps_answer_positions_past_the_sequence_as_the_eager_call_does(jit_compile):
    head = "TFXLMRobertaForQuestionAnswering"
    model = build(head)
    features = inputs_for(head, batch=2)
    targets = {"start_positions": np.array([3, 50], np.int32), "end_positions": np.array([9, 4], np.int32)}
    expected = float(model(features, **targets).loss)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
    np.testing.assert_allclose(
        model.evaluate({**features, **targets}, batch_size=2, verbose=0), expected, rtol=1e-5
    )
