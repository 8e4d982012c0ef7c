"""Bad inputs raise the project's one-line errors before Keras's call wrapper; ids of any integer dtype."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from .conftest import HEAVY, VOCAB, build, token_ids


@pytest.fixture(scope="module")
def classifier():
    return build("TFXLMRobertaForSequenceClassification")


@pytest.mark.parametrize(
    "call, kind, message",
    [
        (
            lambda m: m(np.array([[0, 5, VOCAB]])),
            ValueError,
            "input_ids contains 99, outside the vocabulary [0, 99)",
        ),
        (
            lambda m: m(token_ids(), attention_mask=np.ones((2, 6))),
            ValueError,
            "attention_mask has shape (2, 6); expected (2, 7)",
        ),
        (
            lambda m: m(token_ids(), labels=np.array([0, 5])),
            ValueError,
            "labels must be in [0, 3) or -100 (ignored); got values from 0 to 5",
        ),
        (
            lambda m: m(token_ids(), labels=np.zeros((2, 3), np.int32)),
            ValueError,
            "labels has shape (2, 3), expected (2,)",
        ),
        (
            lambda m: m(np.zeros((2, 7), np.float32)),
            TypeError,
            "input_ids must hold integers (any integer dtype), got dtype float32",
        ),
        (
            lambda m: m(token_ids(), token_type_ids=np.zeros((2, 7), bool)),
            TypeError,
            "token_type_ids must hold integers (any integer dtype), got dtype bool",
        ),
        (
            lambda m: m(np.array([[0, 2**63 + 5]], np.uint64)),
            ValueError,
            f"input_ids contains {2**63 + 5}, outside the vocabulary [0, 99)",  # checked before any cast
        ),
    ],
)
def test_a_bad_input_is_the_one_line_error_without_keras_wrapping(classifier, call, kind, message):
    with pytest.raises(kind) as caught:
        call(classifier)
    assert str(caught.value) == message  # the whole text: no "Exception encountered when calling ..."


def test_a_bad_input_inside_a_sublayer_call_is_not_reached():
    """The checks run in the model's `__call__`: the failing input never enters a Keras layer."""
    model = build("TFXLMRobertaForMultipleChoice")
    ids = np.random.default_rng(0).integers(3, VOCAB, (2, 3, 5)).astype(np.int32)
    with pytest.raises(ValueError) as caught:
        model(ids, attention_mask=np.ones((2, 3, 4)))
    assert str(caught.value) == "attention_mask has shape (2, 3, 4); expected (2, 3, 5)"
    with pytest.raises(ValueError) as caught:
        model(np.full((2, 3, 5), VOCAB + 1, np.int32))
    assert str(caught.value) == "input_ids contains 100, outside the vocabulary [0, 99)"


@pytest.mark.parametrize("dtype", ["int8", "int16", "int64", "uint8", "uint16", "uint32", "uint64"])
def test_ids_and_labels_of_every_integer_dtype_give_the_int32_results(classifier, dtype):
    ids, labels = token_ids(), np.array([0, 2])
    expected = classifier(ids, token_type_ids=np.zeros_like(ids), labels=labels)
    got = classifier(
        ids.astype(dtype), token_type_ids=np.zeros(ids.shape, dtype), labels=labels.astype(dtype)
    )
    np.testing.assert_array_equal(got.logits, expected.logits)
    np.testing.assert_array_equal(got.loss, expected.loss)


def test_inside_a_tf_function_wide_unsigned_ids_are_checked_and_cast():
    model = build("TFXLMRobertaModel")
    forward = tf.function(lambda ids: model(ids).last_hidden_state)
    ids = token_ids()
    graph = forward(tf.constant(ids, tf.uint32))  # a graph: rounding differs from eager's
    np.testing.assert_allclose(graph, model(ids).last_hidden_state, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"input_ids must be in \[0, 99\)"):
        forward(tf.constant([[0, 2**31 + 1]], tf.uint32))


@pytest.mark.parametrize(
    "backend",
    ["jax", pytest.param("torch", marks=pytest.mark.skipif(not HEAVY, reason="set XLMR_HEAVY=1 (jax runs)"))],
)
def test_importing_under_another_keras_backend_is_an_import_error_saying_what_to_use(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"Keras's {backend} backend needs {backend}, which is not installed")
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = "import xlmr_tf"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: xlmr_tf needs Keras's TensorFlow backend")
    assert f"{backend!r}" in last and "xlmr_torch" in last and "xlmr_flax" in last
