"""The TensorFlow exporters of `xlmr-convert export`: SavedModel and TFLite.

Each loads the checkpoint's head as a Keras model in float32 and writes it with the tools
a TF user has: `model.export` (a SavedModel whose `serving_default` takes int32
`input_ids`, `attention_mask` (and `token_type_ids` when the config has several token
types) of any batch and length, its `serve_int64` the same as int64, the tokenizers' dtype,
and both return a plain dict of tensors), and `tf.lite.TFLiteConverter.from_saved_model`
(of `serving_default`: int32 ids) with builtin ops only. The artifact is then
reloaded with the tool that serves it (`tf.saved_model.load`, `tf.lite.Interpreter`) and
compared with the eager model at `CHECK_SHAPES` before its summary line is returned; a
mismatch above the bound is an `ExportError` and OUT is not written.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .errors import ConversionError, ExportError
from .export import export_failure, shape_text, summary_line
from .progress import human_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up lines are not the CLI's output

import tensorflow as tf  # noqa: E402 - a missing TensorFlow is the exporter's missing library

try:
    import keras

    import xlmr_tf
except ImportError as error:  # e.g. KERAS_BACKEND=jax: xlmr_tf says what to do, in one line
    if isinstance(error, ModuleNotFoundError):
        raise
    raise ExportError(str(error)) from None

# Agreement bounds with eager, times max(1, max |output|): a SavedModel runs the same TF kernels
# (DESIGN.md's 1e-5); TFLite runs its own kernels (XNNPACK), within 1e-4.
SAVED_MODEL_TOLERANCE = 1e-5
TFLITE_TOLERANCE = 1e-4
# (batch, sequence) the artifacts are checked at (the sequence capped by the position table);
# multiple choice has 2 choices.
CHECK_SHAPES = ((1, 5), (2, 9), (3, 64))


def load_model(source: Path, head: str):
    """The checkpoint's `head` as a float32 Keras model."""
    keras.mixed_precision.set_global_policy("float32")
    return getattr(xlmr_tf, f"TFXLMRoberta{head}").from_pretrained(source)


def example_inputs(model, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic `<s> ... </s>` int32 rows (the last padded to half its length), per the signature."""
    config = model.config
    length = min(length, config.max_sequence_length)
    choices = model.serving_signature()["input_ids"].shape.rank == 3
    rows = batch * (2 if choices else 1)
    rng = np.random.default_rng(seed + 1000 * batch + length)
    first_plain = max(config.bos_token_id, config.eos_token_id, config.pad_token_id) + 1
    ids = rng.integers(first_plain, config.vocab_size, size=(rows, length)).astype(np.int32)
    mask = np.ones((rows, length), dtype=np.int32)
    ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
    if rows > 1 and length > 3:
        real = max(2, length // 2)
        ids[-1, real - 1] = config.eos_token_id
        ids[-1, real:] = config.pad_token_id
        mask[-1, real:] = 0
    shape = (batch, 2, length) if choices else (batch, length)
    inputs = {"input_ids": ids.reshape(shape), "attention_mask": mask.reshape(shape)}
    if "token_type_ids" in model.serving_signature():
        inputs["token_type_ids"] = np.zeros(shape, np.int32)
    return inputs


def check_inputs(model) -> list[dict[str, np.ndarray]]:
    return [example_inputs(model, batch, length) for batch, length in CHECK_SHAPES]


def eager_outputs(model, inputs: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in model.serve(inputs).items()}


def agreement(run, want: list[dict], inputs_list: list[dict], tolerance: float) -> tuple[float, float]:
    """`(max |diff|, its bound)` of the output closest to its bound, over every shape and field.

    `run(inputs) -> {field: array}` runs the artifact; a missing field or a wrong shape is an
    `ExportError`.
    """
    worst = (0.0, tolerance)
    for inputs, expected_outputs in zip(inputs_list, want):
        got = run(inputs)
        for name, expected in expected_outputs.items():
            if name not in got or np.shape(got[name]) != expected.shape:
                shape = np.shape(got[name]) if name in got else "missing"
                raise ExportError(f"the exported {name} is {shape}, eager gives {expected.shape}")
            diff = float(np.max(np.abs(np.asarray(got[name], np.float64) - expected), initial=0.0))
            bound = tolerance * max(1.0, float(np.max(np.abs(expected), initial=0.0)))
            if diff / bound >= worst[0] / worst[1]:
                worst = (diff, bound)
    return worst


def top1_agreement(run, want: list[dict], inputs_list: list[dict]) -> float | None:
    """Share of real tokens (or rows) whose argmax of the first output agrees; None for the bare encoder."""
    same = total = 0
    for inputs, expected_outputs in zip(inputs_list, want):
        name = next(iter(expected_outputs))
        if name == "last_hidden_state":
            return None
        agree = np.argmax(expected_outputs[name], axis=-1) == np.argmax(run(inputs)[name], axis=-1)
        mask = inputs["attention_mask"].astype(bool)
        if agree.shape == mask.shape:  # token-level: real tokens only
            agree = agree[mask]
        same, total = same + int(agree.sum()), total + agree.size
    return same / max(total, 1)


def tree_size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def exporter_noise():
    """Keep the tools' prints off stdout (the summary lines' place) and their warnings quiet."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        yield


def _no_options(fmt: str, quantize: str | None, opset: int | None) -> None:
    if opset is not None:
        raise ConversionError(f"--opset applies to --format onnx, not {fmt}")
    if quantize not in (None, "int8") or (quantize and fmt == "saved_model"):
        raise ConversionError(f"--quantize {quantize} does not apply to --format {fmt}")


def _write_saved_model(model, directory: Path) -> None:
    try:
        with exporter_noise():
            model.export(str(directory), verbose=False)
    except Exception as error:  # the tool's own failure, as one line
        raise export_failure("model.export", error) from None


# ----------------------------------------------------------------------------- SavedModel


def saved_model_runner(directory: Path, signature: str = "serving_default", dtype=np.int32):
    """`inputs -> {field: array}` through `signature` of the SavedModel at `directory`, the ids
    given as `dtype`."""
    serving = tf.saved_model.load(str(directory)).signatures[signature]
    return lambda inputs: {
        name: value.numpy()
        for name, value in serving(**{k: np.asarray(v, dtype) for k, v in inputs.items()}).items()
    }


def export_saved_model(
    source: Path, out: Path, *, head: str, quantize: str | None, opset: int | None
) -> list[str]:
    """`saved_model/`: `model.export`, its `serving_default` (int32) and `serve_int64` signatures
    checked against eager; the line reports the one closer to its bound."""
    _no_options("saved_model", quantize, opset)
    model = load_model(source, head)
    inputs_list = check_inputs(model)
    want = [eager_outputs(model, inputs) for inputs in inputs_list]
    path = out / "saved_model"
    _write_saved_model(model, path)
    runs = (saved_model_runner(path), saved_model_runner(path, "serve_int64", np.int64))
    diff, bound = max(
        (agreement(run, want, inputs_list, SAVED_MODEL_TOLERANCE) for run in runs),
        key=lambda worst: worst[0] / worst[1],
    )
    return [summary_line(path, tree_size(path), "tf.saved_model.load", "TF eager", diff, bound, inputs_list)]


# ----------------------------------------------------------------------------- TFLite


def convert_tflite(saved_model: Path, quantize: str | None) -> bytes:
    """`TFLiteConverter.from_saved_model`, builtin ops only; `"int8"`: dynamic-range int8 weights."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic-range weights
    try:
        with exporter_noise():
            return converter.convert()
    except Exception as error:
        raise export_failure("TFLiteConverter", error) from None


def tflite_runner(path: Path):
    """`inputs -> {field: array}` through the model's signature in the pip `tf.lite.Interpreter`."""
    with exporter_noise():
        interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    return lambda inputs: runner(**inputs)


def export_tflite(
    source: Path, out: Path, *, head: str, quantize: str | None, opset: int | None
) -> list[str]:
    """`model.tflite` (float32, builtin ops), --quantize int8: also `model_int8.tflite` (dynamic range)."""
    _no_options("tflite", quantize, opset)
    model = load_model(source, head)
    inputs_list = check_inputs(model)
    want = [eager_outputs(model, inputs) for inputs in inputs_list]
    with tempfile.TemporaryDirectory(prefix="xlmr-saved-model-") as scratch:
        saved_model = Path(scratch) / "saved_model"
        _write_saved_model(model, saved_model)
        path = out / "model.tflite"
        path.write_bytes(convert_tflite(saved_model, None))
        quantized = out / "model_int8.tflite" if quantize == "int8" else None
        if quantized is not None:
            quantized.write_bytes(convert_tflite(saved_model, "int8"))
    run = tflite_runner(path)
    diff, bound = agreement(run, want, inputs_list, TFLITE_TOLERANCE)
    lines = [summary_line(path, tree_size(path), "tf.lite.Interpreter", "TF eager", diff, bound, inputs_list)]
    if quantized is not None:
        # int8 weights change the numbers: reported against float32, not held to a bound.
        run_int8 = tflite_runner(quantized)
        float32 = [run(inputs) for inputs in inputs_list]
        diff, _ = agreement(run_int8, float32, inputs_list, 1.0)
        top1 = top1_agreement(run_int8, float32, inputs_list)
        size = quantized.stat().st_size
        lines.append(
            f"{quantized}  {human_bytes(size)} ({size / path.stat().st_size:.0%} of float32)  "
            f"vs float32 TFLite: max |diff| {diff:.2e}"
            + (f", top-1 agreement {top1:.1%}" if top1 is not None else "")
            + f" at {shape_text(inputs_list)}"
        )
    return lines
