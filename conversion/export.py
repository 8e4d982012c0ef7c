"""`xlmr-convert export`: a checkpoint directory -> a deployable artifact that matches eager.

The engine is framework-neutral: it checks the arguments, picks the head, stages OUT and
copies `config.json` and the tokenizer files beside the artifact; each format's exporter
(`FORMATS`: format -> "module:function", imported only when used) writes the artifact into
the empty staging folder, checks it against the eager model and returns one summary line
per artifact. Every exporter has the signature

    export_xxx(source: Path, out: Path, *, head: str, quantize: str | None, opset: int | None) -> list[str]

(`head` is one of `xlmr_core.architecture.HEADS`) and raises `conversion.errors` types.
OUT appears complete or not at all: an exporter that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import sys
from pathlib import Path

from xlmr_core import checkpoint as core
from xlmr_core.architecture import HEADS, detect_heads
from xlmr_core.tokenizer_limits import fit_tokenizer_config

from .convert import TOKENIZER_FILES, read_config, staged_destination
from .errors import ConversionError, DestinationExistsError, ExportError, MissingDependencyError
from .progress import human_bytes, say

# format -> the exporter, "module:function"
FORMATS = {
    "onnx": "conversion.export_torch:export_onnx",
    "torch_export": "conversion.export_torch:export_torch_export",
    "torchscript": "conversion.export_torch:export_torchscript",
    "saved_model": "conversion.export_tf:export_saved_model",
    "tflite": "conversion.export_tf:export_tflite",
}
# The extra that brings each format's libraries (named in the missing-library message).
EXTRAS = {
    "onnx": "torch,onnx",
    "torch_export": "torch",
    "torchscript": "torch",
    "saved_model": "tf",
    "tflite": "tf",
}
# Which formats take --quantize int8 and --opset.
QUANTIZABLE = ("onnx", "tflite")
QUANTIZATIONS = ("int8",)
WITH_OPSET = ("onnx",)
# The dynamo ONNX exporter writes opset 18 and newer.
MIN_OPSET = 18


def shape_text(inputs_list: list[dict]) -> str:
    """The shapes an artifact was checked at, e.g. `1x5, 2x9, 3x64`."""
    return ", ".join("x".join(map(str, inputs["input_ids"].shape)) for inputs in inputs_list)


def export_failure(tool: str, error: Exception) -> ExportError:
    """A tool's exception as one line: the tool, the exception's type and its first line."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return ExportError(f"{tool} failed: {type(error).__name__}: {first_line}")


def summary_line(
    path: Path, size: int, tool: str, eager: str, diff: float, bound: float, inputs_list: list[dict]
) -> str:
    """The artifact's summary line; raises `ExportError` when it does not match the eager model."""
    if not diff <= bound:
        raise ExportError(
            f"{path.name} does not match the eager model: max |diff| {diff:.2e} > {bound:.2e} "
            f"({tool}, shapes {shape_text(inputs_list)})"
        )
    return (
        f"{path}  {human_bytes(size)}  {tool} vs {eager}: max |diff| {diff:.2e} "
        f"(bound {bound:.2e}) at {shape_text(inputs_list)}"
    )


def head_name(text: str) -> str:
    """`"ForMaskedLM"` or `"XLMRobertaForMaskedLM"` -> `"ForMaskedLM"`; anything else is a usage error."""
    name = text.removeprefix("XLMRoberta")
    if name not in HEADS:
        raise ConversionError(f"--head {text!r} is not a head; choose from {', '.join(HEADS)}")
    return name


def choose_head(source: Path, config, requested: str | None) -> str:
    """The head to export: `requested`, or the one the checkpoint's weights are for.

    A requested head whose weights the checkpoint lacks would be exported with random
    weights, so it is refused (the bare encoder, `Model`, is in every checkpoint).
    """
    with core.open_checkpoint(source) as checkpoint:
        heads = detect_heads(checkpoint.tensors, config)
    if requested is not None:
        head = head_name(requested)
        if head != "Model" and head not in heads:
            raise ConversionError(
                f"--head {requested}: {source} has no weights for it (it holds {', '.join(heads)})"
            )
        return head
    for architecture in config.architectures or []:  # several heads: the one config.json names
        if architecture.removeprefix("XLMRoberta") in heads:
            return architecture.removeprefix("XLMRoberta")
    return heads[0]


def load_exporter(fmt: str):
    """The exporter function of `fmt`; a missing library is a one-line `MissingDependencyError`."""
    module_name, _, function = FORMATS[fmt].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise ExportError(
                f"--format {fmt} is not available in this installation ({module_name} is missing)"
            ) from None
        raise MissingDependencyError(
            f"--format {fmt} needs {error.name}, which is not installed: pip install 'xlmr[{EXTRAS[fmt]}]'"
        ) from None
    return getattr(module, function)


def check_arguments(fmt: str, quantize: str | None, opset: int | None) -> None:
    """Usage errors found before anything is read."""
    if fmt not in FORMATS:
        raise ConversionError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ConversionError(f"--quantize {quantize!r}: choose from {', '.join(QUANTIZATIONS)}")
        if fmt not in QUANTIZABLE:
            raise ConversionError(f"--quantize applies to --format {' or '.join(QUANTIZABLE)}, not {fmt}")
    if opset is not None:
        if fmt not in WITH_OPSET:
            raise ConversionError(f"--opset applies to --format {' or '.join(WITH_OPSET)}, not {fmt}")
        if opset < MIN_OPSET:
            raise ConversionError(f"--opset {opset}: the ONNX exporter writes opset {MIN_OPSET} or newer")


def export(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    fmt: str,
    head: str | None = None,
    quantize: str | None = None,
    opset: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> list[str]:
    """Export the checkpoint directory `source` into the new directory `destination`.

    Returns the summary lines (also printed on stdout): each artifact's path, size and its
    agreement with the eager model at the shapes checked.
    """
    source, destination = Path(source), Path(destination)
    check_arguments(fmt, quantize, opset)
    if destination.exists() and not overwrite:  # before any reading: fail fast
        raise DestinationExistsError(f"{destination} exists; pass --overwrite to replace it")
    core.detect_format(source)  # a missing or foreign directory is named before its config
    config = read_config(source)
    if head is not None:
        head_name(head)  # a misspelt head is a usage error before the checkpoint is opened
    head = choose_head(source, config, head)
    exporter = load_exporter(fmt)
    say(f"{source} ({head}) -> {destination} ({fmt})", quiet=quiet)
    with staged_destination(destination, overwrite=overwrite) as stage:
        # stdout carries the summary lines only: the exporters' own prints go to stderr (or nowhere, -q).
        with contextlib.redirect_stdout(io.StringIO() if quiet else sys.stderr):
            lines = exporter(source, stage, head=head, quantize=quantize, opset=opset)
        for name in ("config.json", *TOKENIZER_FILES):
            if (source / name).is_file() and not (stage / name).exists():
                shutil.copyfile(source / name, stage / name)
        fit_tokenizer_config(stage, config)
    # The exporters name files in the staging folder; report where they are now.
    lines = [line.replace(str(stage), str(destination)) for line in lines]
    for line in lines:
        print(line)
    return lines
