"""The reference TF models' list convention: `model([input_ids, attention_mask, ...])`."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
import transformers.models.xlm_roberta.modeling_tf_xlm_roberta as reference

from .conftest import HEADS, build, inputs_for, labels_for


def _reference_order(head: str) -> list[str]:
    """The positional order of the reference implementation's TF `call` (without `training`)."""
    return [name for name in inspect.signature(getattr(reference, head).call).parameters][1:-1]


@pytest.mark.parametrize("head", HEADS)
def test_a_list_of_inputs_in_the_reference_order_equals_the_dict_call(head):
    model = build(head)
    inputs = {**inputs_for(head), **labels_for(head)}
    inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
    order = _reference_order(head)
    listed = [inputs.get(name) for name in order]
    while listed[-1] is None:
        listed.pop()
    expected, got = model(inputs), model(listed)
    for key in expected:
        if expected[key] is not None and not isinstance(expected[key], tuple):
            np.testing.assert_allclose(
                np.asarray(got[key]), np.asarray(expected[key]), atol=1e-6, err_msg=key
            )


def test_multiple_choice_lists_follow_the_reference_not_the_call_order():
    # `call` here takes (input_ids, token_type_ids, attention_mask) positionally, as PyTorch's does;
    # the reference's TF list is (input_ids, attention_mask, token_type_ids).
    head = "TFXLMRobertaForMultipleChoice"
    model = build(head)
    inputs = inputs_for(head)
    inputs["attention_mask"][:, :, -2:] = 0
    expected = model(inputs).logits
    got = model([inputs["input_ids"], inputs["attention_mask"]]).logits
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_list_longer_than_the_inputs_is_refused_in_one_line():
    model = build("TFXLMRobertaForTokenClassification")
    ids = inputs_for("TFXLMRobertaForTokenClassification")["input_ids"]
    with pytest.raises(
        ValueError, match=r"^TFXLMRobertaForTokenClassification takes at most 10 inputs in a list"
    ):
        model([ids] * 11)


def test_a_nested_list_of_numbers_is_still_input_ids():
    model = build("TFXLMRobertaModel")
    ids = inputs_for("TFXLMRobertaModel")["input_ids"]
    np.testing.assert_allclose(
        model(ids.tolist()).last_hidden_state, model({"input_ids": ids}).last_hidden_state, atol=1e-6
    )


def test_fit_takes_features_as_a_list():
    head = "TFXLMRobertaForSequenceClassification"
    features, labels = inputs_for(head, batch=4), labels_for(head, batch=4)["labels"]
    losses = []
    for x in ([features["input_ids"], features["attention_mask"]], features):
        model = build(head)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        losses.append(model.fit(x, labels, batch_size=2, epochs=1, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
