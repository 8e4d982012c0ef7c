"""TFLite: `TFLiteConverter.from_saved_model` with builtin ops only, run by the pip `tf.lite.Interpreter`.

The base model and the token-classification head (XLMR_HEAVY=1 adds sequence classification)
are converted from `model.export` output and run to 1e-4 of eager at several shapes;
the dynamic-range int8 variant converts, runs, and stays close to float32. The CLI's
`--format tflite` (with the bundled checkpoint) is tested in test_export_cli.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf

from .conftest import HEAVY, build
from .test_export import SHAPES, serving_inputs

TFLITE_HEADS = ("TFXLMRobertaModel", "TFXLMRobertaForTokenClassification") + (
    ("TFXLMRobertaForSequenceClassification",) if HEAVY else ()
)


def convert(saved_model: str, int8: bool = False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Select TF ops
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic-range int8
    return converter.convert()


def runner(blob: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=blob)
    return interpreter.get_signature_runner()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{head: (model, float32 flatbuffer, int8 flatbuffer or None)}."""
    out = {}
    for head in TFLITE_HEADS:
        model = build(head)
        directory = str(tmp_path_factory.mktemp(head))
        model.export(directory, verbose=False)  # see the note in README: not tf.saved_model.save
        int8 = convert(directory, int8=True) if head == "TFXLMRobertaForTokenClassification" else None
        out[head] = model, convert(directory), int8
    return out


@pytest.mark.parametrize("head", TFLITE_HEADS)
def test_the_builtin_ops_model_runs_in_the_interpreter_to_1e_4_of_eager(converted, head):
    model, blob, _ = converted[head]
    run = runner(blob)
    assert sorted(run.get_input_details()) == ["attention_mask", "input_ids", "token_type_ids"]
    for batch, length in SHAPES:  # one flatbuffer, dynamic batch and length
        inputs = serving_inputs(head, batch, length)
        expected, got = model.serve(inputs), run(**inputs)
        assert sorted(got) == sorted(expected)
        for name in expected:
            np.testing.assert_allclose(
                got[name], expected[name], atol=1e-4, err_msg=f"{name} {batch}x{length}"
            )


def test_the_dynamic_range_int8_model_is_smaller_and_close_to_float32(converted):
    head = "TFXLMRobertaForTokenClassification"
    _, blob, int8 = converted[head]
    assert len(int8) < 0.8 * len(blob)
    run, run_int8 = runner(blob), runner(int8)
    details = run_int8.get_input_details()
    assert {d["dtype"] for d in details.values()} == {np.int32}  # ids stay int32
    for batch, length in SHAPES:
        inputs = serving_inputs(head, batch, length)
        float32, quantized = run(**inputs)["logits"], run_int8(**inputs)["logits"]
        assert np.all(np.isfinite(quantized))
        # int8 weights: close, not equal (the tiny random model's logits are of order 1)
        assert 0 < np.abs(quantized - float32).max() < 0.25


def test_from_keras_model_converts_a_called_model_with_dynamic_int32_ids():
    # TF's Keras-model converter builds its signature from `_build_shapes_dict` and `input_dtype`
    # (see xlmr_tf/input_specs.py); before, it traced float32 ids of length 2, which the checks
    # refuse, and then failed on "input shapes have not been set" / a TypeError.
    head = "TFXLMRobertaForTokenClassification"
    model = build(head)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    run = runner(converter.convert())
    details = run.get_input_details()
    assert sorted(details) == ["attention_mask", "input_ids", "token_type_ids"]
    assert {d["dtype"] for d in details.values()} == {np.int32}
    assert all(list(d["shape_signature"]) == [-1, -1] for d in details.values())
    for batch, length in SHAPES:
        inputs = serving_inputs(head, batch, length)
        expected, got = model.serve(inputs), run(**inputs)
        assert sorted(got) == sorted(expected)
        for name in expected:
            np.testing.assert_allclose(
                got[name], expected[name], atol=1e-4, err_msg=f"{name} {batch}x{length}"
            )
