"""The exports take the ids the tokenizers return: int64 for `return_tensors="np"` and `"tf"`.

`model.export` writes `serving_default` (int32, as before) and `serve_int64` (signature and
endpoint), which runs the tokenizer's output as it is. TFLite converts one signature:
`serving_default` by default (int32), `serve_int64` when asked for (int64 inputs, cast inside
with builtin ops). Each is run by its own tool on the bundled checkpoint's tokenizer output
and compared with eager.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast
from xlmr_core.pretrained import bundled_checkpoint

TEXTS = ["Hello world, this is a test.", "Short", "Une phrase un peu plus longue en français."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, tokenizer output for "np", export directory) for the bundled checkpoint's encoder."""
    directory = bundled_checkpoint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the masked-LM head's weights are not the encoder's
        model = xlmr_tf.TFXLMRobertaModel.from_pretrained(directory)
    encoded = dict(
        XLMRobertaTokenizerFast.from_pretrained(directory)(TEXTS, padding=True, return_tensors="np")
    )
    path = tmp_path_factory.mktemp("exported") / "model"
    model.export(str(path), verbose=False)
    return model, encoded, path


@pytest.mark.parametrize("tokenizer_class", [XLMRobertaTokenizer, XLMRobertaTokenizerFast])
@pytest.mark.parametrize("tensors", ["np", "tf"])
def test_the_tokenizers_return_int64_ids(tokenizer_class, tensors):
    encoded = tokenizer_class.from_pretrained(bundled_checkpoint())(
        TEXTS, padding=True, return_tensors=tensors
    )
    assert {np.dtype(np.asarray(value).dtype) for value in encoded.values()} == {np.dtype(np.int64)}


def _close(got: dict, expected: dict, tolerance: float) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.asarray(got[name]), np.asarray(value), atol=tolerance, rtol=0, err_msg=name
        )


def test_the_saved_model_serves_the_tokenizers_int64_ids(exported):
    model, encoded, path = exported
    loaded = tf.saved_model.load(str(path))
    expected = model.serve(encoded)
    signatures = {key: fn.structured_input_signature[1] for key, fn in loaded.signatures.items()}
    assert {spec.dtype for spec in signatures["serving_default"].values()} == {tf.int32}  # unchanged
    assert {spec.dtype for spec in signatures["serve_int64"].values()} == {tf.int64}
    _close(loaded.signatures["serve_int64"](**encoded), expected, 1e-5)
    _close(loaded.serve_int64({name: tf.constant(value) for name, value in encoded.items()}), expected, 1e-5)
    int32 = {name: value.astype(np.int32) for name, value in encoded.items()}
    _close(loaded.serve(int32), expected, 1e-5)
    _close(loaded.signatures["serving_default"](**int32), expected, 1e-5)


def _runner(path, signature_keys):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(path), signature_keys=signature_keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the interpreter's deprecation notice
        return tf.lite.Interpreter(model_content=converter.convert()).get_signature_runner()


def test_tflite_of_serve_int64_runs_the_tokenizers_ids_and_the_default_takes_int32(exported):
    model, encoded, path = exported
    expected = model.serve(encoded)
    run = _runner(path, ["serve_int64"])
    assert {detail["dtype"] for detail in run.get_input_details().values()} == {np.int64}
    _close(run(**encoded), expected, 1e-4)
    default = _runner(path, None)  # serving_default: int32 ids; int64 is the interpreter's refusal
    with pytest.raises(ValueError, match="Got value of type INT64 but expected type INT32"):
        default(**encoded)
    _close(default(**{name: value.astype(np.int32) for name, value in encoded.items()}), expected, 1e-4)
