"""The torch exporters of `xlmr-convert export`: ONNX (dynamo), `torch.export` (.pt2), TorchScript.

Each loads the checkpoint's head in float32, wraps it in `ServingModule` (inputs
`input_ids` and `attention_mask`, outputs a dict of the head's fields), exports it with a
dynamic batch and sequence (and choice) axis, reloads the artifact with the tool that serves
it, and compares it with the eager model at `CHECK_SHAPES` — the example's shape and two
others — before returning its summary line. A mismatch above the documented bound
(1e-5 x max(1, max |output|)) is an `ExportError`, and OUT is not written.

onnx, onnxruntime and onnxscript (`pip install 'xlmr[torch,onnx]'`) are imported only by
the ONNX exporter.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.export import Dim

import xlmr_torch
from xlmr_core import XLMRobertaConfig

from .errors import ConversionError, ExportError, MissingDependencyError
from .export import export_failure, shape_text, summary_line
from .progress import human_bytes

# Agreement bound of the exported artifact with eager (DESIGN.md): tolerance x max(1, max |output|).
TOLERANCE = 1e-5
# (batch, sequence) of the example the exporters trace; multiple choice adds 2 choices.
EXAMPLE_SHAPE = (2, 9)
# Shapes every artifact is checked at: the example's and two others (one long).
CHECK_SHAPES = ((1, 5), EXAMPLE_SHAPE, (3, 64))
# Opset 23 exports attention as the Attention op, which onnxruntime 1.32 runs only with a mask
# of the queries' full length, not the [batch, 1, 1, keys] padding mask every call has.
MAX_OPSET = 22
# protobuf cannot hold a model of 2 GiB or more: past this the ONNX weights go to model.onnx.data.
ONNX_EXTERNAL_DATA_BYTES = 2**31 - 2**26


class ServingModule(nn.Module):
    """A head as a serving graph: `(input_ids, attention_mask) -> {field: tensor}`.

    The fields are the head's default outputs (`logits`; `start_logits`, `end_logits`;
    `last_hidden_state`, `pooler_output`); the causal LM runs without a key/value cache.
    A plain dict, so a loaded artifact needs nothing from xlmr to be run.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.options = {"use_cache": False} if isinstance(model, xlmr_torch.XLMRobertaForCausalLM) else {}

    def forward(self, input_ids, attention_mask):
        outputs = self.model(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **self.options
        )
        return dict(outputs)


def load_model(source: Path, head: str) -> nn.Module:
    """The checkpoint's `head` model, float32, eval mode."""
    return getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(source, dtype=torch.float32).eval()


def example_inputs(config: XLMRobertaConfig, head: str, batch: int, length: int, seed: int = 0) -> dict:
    """Deterministic `<s> ... </s>` id rows, the last row padded to half its length, with their mask."""
    length = min(length, config.max_sequence_length)
    rows = batch * (2 if head == "ForMultipleChoice" else 1)
    rng = np.random.default_rng(seed + 1000 * batch + length)
    first_plain = max(config.bos_token_id, config.eos_token_id, config.pad_token_id) + 1
    ids = rng.integers(first_plain, config.vocab_size, size=(rows, length))
    mask = np.ones((rows, length), dtype=np.int64)
    ids[:, 0] = config.bos_token_id
    ids[:, -1] = config.eos_token_id
    if rows > 1 and length > 3:
        real = max(2, length // 2)
        ids[-1, real - 1] = config.eos_token_id
        ids[-1, real:] = config.pad_token_id
        mask[-1, real:] = 0
    shape = (batch, 2, length) if head == "ForMultipleChoice" else (batch, length)
    return {
        "input_ids": torch.from_numpy(ids.reshape(shape)),
        "attention_mask": torch.from_numpy(mask.reshape(shape)),
    }


def dynamic_shapes(config: XLMRobertaConfig, head: str) -> dict:
    """Batch, (choices,) and sequence axes, the sequence bounded by the position table."""
    batch = Dim("batch", min=1, max=1 << 16)
    sequence = Dim("sequence", min=1, max=config.max_sequence_length)
    if head == "ForMultipleChoice":
        axes = {0: batch, 1: Dim("choices", min=1, max=1 << 10), 2: sequence}
    else:
        axes = {0: batch, 1: sequence}
    return {"input_ids": axes, "attention_mask": axes}


def eager_outputs(serving: ServingModule, inputs: dict) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {name: value.numpy() for name, value in serving(**inputs).items()}


def check_shapes(config: XLMRobertaConfig, head: str) -> list[dict]:
    return [example_inputs(config, head, batch, length) for batch, length in CHECK_SHAPES]


def agreement(run, serving: ServingModule, inputs_list: list[dict]) -> tuple[float, float]:
    """`(max |diff|, its bound)` of the output closest to its bound, over every shape and field.

    `run(inputs) -> {field: numpy array}` runs the artifact; a missing field or a wrong shape
    is an `ExportError`.
    """
    worst = (0.0, TOLERANCE)
    for inputs in inputs_list:
        want, got = eager_outputs(serving, inputs), run(inputs)
        for name, expected in want.items():
            if name not in got or np.shape(got[name]) != expected.shape:
                shape = np.shape(got[name]) if name in got else "missing"
                raise ExportError(f"the exported {name} is {shape}, eager gives {expected.shape}")
            diff = float(np.max(np.abs(np.asarray(got[name], dtype=np.float64) - expected), initial=0.0))
            bound = TOLERANCE * max(1.0, float(np.max(np.abs(expected), initial=0.0)))
            if diff / bound >= worst[0] / worst[1]:
                worst = (diff, bound)
    return worst


def top1_agreement(run, serving: ServingModule, inputs_list: list[dict]) -> float | None:
    """Share of real tokens (or rows) whose argmax of the first output agrees; None for the bare encoder."""
    if isinstance(serving.model, xlmr_torch.XLMRobertaModel):
        return None
    same = total = 0
    for inputs in inputs_list:
        want, got = eager_outputs(serving, inputs), run(inputs)
        name = next(iter(want))
        agree = np.argmax(want[name], axis=-1) == np.argmax(got[name], axis=-1)
        mask = inputs["attention_mask"].numpy().astype(bool)
        if agree.shape == mask.shape:  # token-level: real tokens only
            agree = agree[mask]
        same, total = same + int(agree.sum()), total + agree.size
    return same / max(total, 1)


def file_size(*paths: Path) -> int:
    return sum(path.stat().st_size for path in paths if path.exists())


@contextlib.contextmanager
def exporter_noise():
    """Keep the exporters' prints off stdout (the summary lines' place) and their warnings quiet."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        # torch.onnx logs a warning per optional torchvision op, onnxruntime's quantizer a hint
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _prepare(source: Path, head: str):
    model = load_model(source, head)
    serving = ServingModule(model).eval()
    config = model.config
    return serving, config, example_inputs(config, head, *EXAMPLE_SHAPE), check_shapes(config, head)


# ----------------------------------------------------------------------------- ONNX


def onnx_libraries():
    """`(onnxruntime, onnxruntime.quantization)`; a missing library names the extra to install."""
    try:
        for name in ("onnx", "onnxscript", "onnxruntime"):
            importlib.import_module(name)
        import onnxruntime
        from onnxruntime import quantization
    except ModuleNotFoundError as error:
        raise MissingDependencyError(
            f"--format onnx needs onnx, onnxscript and onnxruntime ({error.name} is missing): "
            "pip install 'xlmr[torch,onnx]'"
        ) from None
    return onnxruntime, quantization


def export_onnx(source: Path, out: Path, *, head: str, quantize: str | None, opset: int | None) -> list[str]:
    """`model.onnx` (dynamo exporter; external data past 2 GB), --quantize int8: `model_quantized.onnx`."""
    onnxruntime, quantization = onnx_libraries()
    from torch.onnx import _constants

    if opset is not None and opset > min(MAX_OPSET, _constants.ONNX_MAX_OPSET):
        raise ConversionError(
            f"--opset {opset}: at most {min(MAX_OPSET, _constants.ONNX_MAX_OPSET)} (opset 23 turns attention "
            "into an Attention op whose onnxruntime kernel rejects a padding mask)"
        )
    serving, config, example, inputs_list = _prepare(source, head)
    names = list(eager_outputs(serving, example))
    path = out / "model.onnx"
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in serving.parameters()}.values())
    try:
        with exporter_noise():
            program = torch.onnx.export(
                serving,
                (),
                kwargs=example,
                dynamo=True,
                dynamic_shapes=dynamic_shapes(config, head),
                input_names=list(example),
                output_names=names,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
            program.save(path, external_data=weights > ONNX_EXTERNAL_DATA_BYTES)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as error:
        raise export_failure("the dynamo ONNX exporter", error) from None

    def session_runner(model_path: Path):
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # failures become one ExportError line, not a log dump
        try:
            session = onnxruntime.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own, not builtin, exceptions
            raise export_failure(f"onnxruntime loading {model_path.name}", error) from None

        def run(inputs):
            feeds = {name: value.numpy() for name, value in inputs.items()}
            try:
                return dict(zip(names, session.run(names, feeds)))
            except Exception as error:
                raise export_failure(f"onnxruntime running {model_path.name}", error) from None

        return run

    run = session_runner(path)
    diff, bound = agreement(run, serving, inputs_list)
    data = path.with_name(path.name + ".data")
    lines = [
        summary_line(path, file_size(path, data), "onnxruntime", "torch eager", diff, bound, inputs_list)
    ]
    if quantize == "int8":
        quantized = out / "model_quantized.onnx"
        try:
            with exporter_noise():
                quantization.quantize_dynamic(
                    path,
                    quantized,
                    weight_type=quantization.QuantType.QInt8,
                    use_external_data_format=weights // 4 > ONNX_EXTERNAL_DATA_BYTES,
                )
        except Exception as error:  # onnxruntime raises plain Exceptions
            raise export_failure("onnxruntime dynamic quantization", error) from None
        run_int8 = session_runner(quantized)
        diff8, _ = agreement(run_int8, serving, inputs_list)
        top1 = top1_agreement(run_int8, serving, inputs_list)
        size = file_size(quantized, quantized.with_name(quantized.name + ".data"))
        agree = "" if top1 is None else f", top-1 agreement {top1:.1%}"
        lines.append(
            f"{quantized}  {human_bytes(size)} ({size / file_size(path, data):.0%} of float32)  "
            f"int8 vs torch eager float32: max |diff| {diff8:.2e}{agree} at {shape_text(inputs_list)}"
        )
    return lines


# ----------------------------------------------------------------------------- torch.export


def export_torch_export(
    source: Path, out: Path, *, head: str, quantize: str | None, opset: int | None
) -> list[str]:
    """`model.pt2`: a `torch.export` program (dynamic batch and sequence) that `torch.export.load` runs."""
    serving, config, example, inputs_list = _prepare(source, head)
    path = out / "model.pt2"
    try:
        with exporter_noise():
            program = torch.export.export(
                serving, (), example, dynamic_shapes=dynamic_shapes(config, head), strict=False
            )
            torch.export.save(program, path)
            loaded = torch.export.load(path).module()
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as error:
        raise export_failure("torch.export", error) from None

    def run(inputs):
        with torch.no_grad():
            return {name: value.numpy() for name, value in loaded(**inputs).items()}

    diff, bound = agreement(run, serving, inputs_list)
    return [summary_line(path, file_size(path), "torch.export.load", "torch eager", diff, bound, inputs_list)]


# ----------------------------------------------------------------------------- TorchScript


def export_torchscript(
    source: Path, out: Path, *, head: str, quantize: str | None, opset: int | None
) -> list[str]:
    """`model.pt`: `torch.jit.trace` of the serving module (outputs a dict), for `torch.jit.load`."""
    serving, config, example, inputs_list = _prepare(source, head)
    path = out / "model.pt"
    try:
        with exporter_noise(), torch.no_grad():
            traced = torch.jit.trace(serving, example_kwarg_inputs=example, strict=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            path.write_bytes(buffer.getvalue())
            loaded = torch.jit.load(path)
    except (RuntimeError, ValueError, TypeError) as error:
        raise export_failure("torch.jit.trace", error) from None

    def run(inputs):
        with torch.no_grad():
            return {name: value.numpy() for name, value in loaded(**inputs).items()}

    diff, bound = agreement(run, serving, inputs_list)
    return [summary_line(path, file_size(path), "torch.jit.load", "torch eager", diff, bound, inputs_list)]
