"""`xlmr-convert export --format saved_model|tflite`: artifacts run by their own tools match TF eager.

The command checks its artifact itself; these tests check again, independently, at shapes
the command never tried: the SavedModel through `tf.saved_model.load`, the TFLite files
through the pip `tf.lite.Interpreter`, against the Keras model loaded from the source.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from conversion import export_tf
from conversion.cli import main
from conversion.errors import EXIT_USAGE
from xlmr_core.pretrained import bundled_checkpoint

from .conftest import HEAVY, build

TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
NEW_SHAPES = ((2, 13), (1, 3), (4, 30))


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def compare(run, model, tolerance: float) -> None:
    """`run(inputs) -> {field: array}` matches eager to `tolerance` x max(1, max |output|)."""
    for batch, length in NEW_SHAPES:
        inputs = export_tf.example_inputs(model, batch, length, seed=7)
        expected = export_tf.eager_outputs(model, inputs)
        got = run(inputs)
        assert sorted(got) == sorted(expected)
        for name, value in expected.items():
            bound = tolerance * max(1.0, float(np.abs(value).max()))
            np.testing.assert_allclose(
                got[name], value, atol=bound, rtol=0, err_msg=f"{name} {batch}x{length}"
            )


@pytest.mark.skipif(
    not HEAVY, reason="slow: set XLMR_HEAVY=1 (test_export.py covers SavedModel in the default run)"
)
def test_saved_model_export_serves_the_checkpoint_with_its_tokenizer_files(tmp_path, capsys):
    source = tmp_path / "classifier"
    build("TFXLMRobertaForSequenceClassification").save_pretrained(source)
    code, out, err = run_cli(capsys, source, tmp_path / "served", "--format", "saved_model")
    assert code == 0, err
    assert "saved_model" in out and "max |diff|" in out
    model = xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(source)
    serving = tf.saved_model.load(str(tmp_path / "served" / "saved_model")).signatures["serving_default"]
    compare(lambda inputs: {k: v.numpy() for k, v in serving(**inputs).items()}, model, 1e-5)
    assert (tmp_path / "served" / "config.json").is_file()


def test_tflite_export_of_the_bundled_checkpoint_with_int8_runs_in_the_interpreter(tmp_path, capsys):
    source = bundled_checkpoint()
    code, out, err = run_cli(capsys, source, tmp_path / "lite", "--format", "tflite", "--quantize", "int8")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-2].split()[0].endswith("model.tflite") and lines[-1].split()[0].endswith(
        "model_int8.tflite"
    )
    assert "top-1 agreement" in lines[-1]
    for name in ("config.json", *TOKENIZER_FILES):
        assert (tmp_path / "lite" / name).is_file(), name
    model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = tf.lite.Interpreter(
            model_path=str(tmp_path / "lite" / "model.tflite")
        ).get_signature_runner()
        int8 = tf.lite.Interpreter(
            model_path=str(tmp_path / "lite" / "model_int8.tflite")
        ).get_signature_runner()
    compare(lambda inputs: runner(**inputs), model, 1e-4)
    sizes = [(tmp_path / "lite" / name).stat().st_size for name in ("model.tflite", "model_int8.tflite")]
    assert sizes[1] < 0.5 * sizes[0]
    inputs = export_tf.example_inputs(model, 2, 13, seed=7)
    float32, quantized = runner(**inputs)["logits"], int8(**inputs)["logits"]
    real = inputs["attention_mask"].astype(bool)
    agreement = np.mean(np.argmax(float32, -1)[real] == np.argmax(quantized, -1)[real])
    assert agreement >= 0.8  # the trained checkpoint's top-1 mostly survives int8 weights


@pytest.mark.parametrize(
    "args, message",
    [
        (("--format", "saved_model", "--quantize", "int8"), "--quantize applies to --format"),
        (("--format", "tflite", "--opset", "18"), "--opset applies to --format onnx"),
    ],
)
def test_options_that_do_not_apply_are_usage_errors(tmp_path, capsys, args, message):
    code, _, err = run_cli(capsys, bundled_checkpoint(), tmp_path / "out", *args)
    assert code == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
