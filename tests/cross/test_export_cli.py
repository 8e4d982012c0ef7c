"""`xlmr-convert export` (torch formats): artifacts run by their own tools match torch eager.

The command checks its artifact itself; these tests check it again independently, at shapes
the command never tried, by loading the artifact with onnxruntime / `torch.export.load` /
`torch.jit.load` and comparing with the eager model loaded from the source directory.
ONNX export is tracing-bound (~5-10 s a head on 2 cores): the default run exports the
bundled checkpoint (ForMaskedLM, with --quantize int8) and question answering (two outputs,
external data forced); `XLMR_HEAVY=1` exports every head.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xlmr_torch  # noqa: E402
from conversion import export_torch  # noqa: E402
from conversion.cli import main  # noqa: E402
from conversion.errors import (  # noqa: E402
    EXIT_DESTINATION_EXISTS,
    EXIT_EXPORT_FAILED,
    EXIT_MISSING_DEPENDENCY,
    EXIT_MISSING_FILE,
    EXIT_USAGE,
)
from tests.cross.harness import HEADS, config_for  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402
from xlmr_core.pretrained import bundled_checkpoint  # noqa: E402

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# (batch, sequence) that the command's own check does not use.
NEW_SHAPES = ((2, 13), (4, 30), (1, 3))


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def eager(source: Path, head: str):
    return getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(source).eval()


def compare(run, model, head: str) -> None:
    """`run(inputs) -> {field: array}` matches the eager model to 1e-5 x max(1, max |output|)."""
    serving = export_torch.ServingModule(model)
    for batch, length in NEW_SHAPES:
        inputs = export_torch.example_inputs(model.config, head, batch, length, seed=7)
        with torch.no_grad():
            want = {name: value.numpy() for name, value in serving(**inputs).items()}
        got = run(inputs)
        assert list(got) == list(want)
        for name, expected in want.items():
            assert got[name].shape == expected.shape, name
            bound = 1e-5 * max(1.0, float(np.abs(expected).max()))
            assert float(np.abs(got[name] - expected).max()) <= bound, (name, batch, length)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny random checkpoint per head (with the bundled tokenizer files), and the bundled model."""
    root = tmp_path_factory.mktemp("export-sources")
    found = {"bundled": Path(bundled_checkpoint())}
    for head in HEADS:
        overrides = {"is_decoder": True} if head == "ForCausalLM" else {}
        config = config_for(head, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides)
        torch.manual_seed(0)
        model = getattr(xlmr_torch, f"XLMRoberta{head}")(config)
        model.save_pretrained(root / head)
        for name in TOKENIZER_FILES:
            shutil.copyfile(found["bundled"] / name, root / head / name)
        found[head] = root / head
    return found


def _onnx_runner(path: Path):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def run(inputs):
        return dict(zip(names, session.run(names, {k: v.numpy() for k, v in inputs.items()})))

    return session, run


def _check_onnx(out: Path, source: Path, head: str) -> None:
    session, run = _onnx_runner(out / "model.onnx")
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == ["input_ids", "attention_mask"]
    # Dynamic axes: symbolic names, not the example's sizes.
    assert all(isinstance(dim, str) for dim in inputs[0].shape), inputs[0].shape
    compare(run, eager(source, head), head)
    assert_same_files(out, source)


def assert_same_files(out: Path, source: Path) -> None:
    """The artifact carries the source's config and tokenizer files; only the tokenizer's
    `model_max_length` is lowered to what the model takes (the source's copy says the bundled 64)."""
    for name in ("config.json", *TOKENIZER_FILES):
        if name != "tokenizer_config.json":
            assert (out / name).read_bytes() == (source / name).read_bytes(), name
    written, copied = (json.loads((d / "tokenizer_config.json").read_text()) for d in (out, source))
    config = XLMRobertaConfig.from_pretrained(source)
    assert config.position_embedding_type == "absolute"  # two positions go to the padding offset
    limit = min(copied["model_max_length"], config.max_position_embeddings - 2)
    assert written == {**copied, "model_max_length": limit}


# ----------------------------------------------------------------------------- ONNX


def test_onnx_of_the_bundled_checkpoint_with_int8_quantization(checkpoints, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    source, out = checkpoints["bundled"], tmp_path / "onnx"
    code, stdout, stderr = run_cli(capsys, source, out, "--format", "onnx", "--quantize", "int8", "-q")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{out / 'model.onnx'}  ") and "max |diff|" in lines[0]
    assert lines[1].startswith(f"{out / 'model_quantized.onnx'}  ") and "top-1 agreement" in lines[1]
    _check_onnx(out, source, "ForMaskedLM")  # the checkpoint's own head, found without --head
    assert (out / "model_quantized.onnx").stat().st_size < 0.5 * (out / "model.onnx").stat().st_size
    # int8 is not float32-exact, but it predicts the same tokens nearly everywhere.
    _, run = _onnx_runner(out / "model_quantized.onnx")
    model = eager(source, "ForMaskedLM")
    inputs = export_torch.example_inputs(model.config, "ForMaskedLM", 4, 30, seed=7)
    with torch.no_grad():
        want = model(**inputs).logits.numpy().argmax(-1)
    mask = inputs["attention_mask"].numpy().astype(bool)
    assert (run(inputs)["logits"].argmax(-1) == want)[mask].mean() >= 0.8


def test_onnx_past_the_external_data_threshold_writes_model_onnx_data(
    checkpoints, tmp_path, capsys, monkeypatch
):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(export_torch, "ONNX_EXTERNAL_DATA_BYTES", 0)  # as a > 2 GB model would
    source, out = checkpoints["ForQuestionAnswering"], tmp_path / "qa"
    code, stdout, stderr = run_cli(capsys, source, out, "--format", "onnx", "--opset", "20")
    assert code == 0, stderr
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(out / "model.onnx", load_external_data=False).graph
    external = [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert "model.roberta.embeddings.word_embeddings.weight" in external, external
    assert (out / "model.onnx.data").stat().st_size >= 99 * 32 * 4  # the word embeddings at least
    _check_onnx(out, source, "ForQuestionAnswering")


@pytest.mark.skipif(not HEAVY, reason="ONNX of every head: set XLMR_HEAVY=1 (the default run exports two)")
@pytest.mark.parametrize("head", [h for h in HEADS if h != "ForQuestionAnswering"])
def test_onnx_of_every_head(checkpoints, tmp_path, capsys, head):
    pytest.importorskip("onnxruntime")
    code, _, stderr = run_cli(capsys, checkpoints[head], tmp_path / head, "--format", "onnx")
    assert code == 0, stderr
    _check_onnx(tmp_path / head, checkpoints[head], head)


# ----------------------------------------------------------------------------- torch.export, TorchScript


def test_torch_export_writes_a_pt2_that_torch_export_load_runs(checkpoints, tmp_path, capsys):
    source, out = checkpoints["ForSequenceClassification"], tmp_path / "pt2"
    code, stdout, stderr = run_cli(capsys, source, out, "--format", "torch_export")
    assert code == 0, stderr
    assert stdout.startswith(f"{out / 'model.pt2'}  ") and "torch.export.load" in stdout
    program = torch.export.load(out / "model.pt2").module()

    def run(inputs):
        with torch.no_grad():
            return {name: value.numpy() for name, value in program(**inputs).items()}

    compare(run, eager(source, "ForSequenceClassification"), "ForSequenceClassification")


def test_torchscript_writes_a_traced_module_that_torch_jit_load_runs(checkpoints, tmp_path, capsys):
    source, out = checkpoints["ForMultipleChoice"], tmp_path / "ts"
    code, stdout, stderr = run_cli(
        capsys, source, out, "--format", "torchscript", "--head", "ForMultipleChoice"
    )
    assert code == 0, stderr
    module = torch.jit.load(out / "model.pt")

    def run(inputs):
        with torch.no_grad():
            return {name: value.numpy() for name, value in module(**inputs).items()}

    compare(run, eager(source, "ForMultipleChoice"), "ForMultipleChoice")


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["--format", "torch_export", "--quantize", "int8"],
            EXIT_USAGE,
            "--quantize applies to --format onnx",
        ),
        (["--format", "torchscript", "--opset", "18"], EXIT_USAGE, "--opset applies to --format onnx"),
        (["--format", "onnx", "--opset", "17"], EXIT_USAGE, "opset 18 or newer"),
        (["--format", "onnx", "--head", "ForTranslation"], EXIT_USAGE, "is not a head"),
        (["--format", "pickle"], EXIT_USAGE, "invalid choice"),
        (["--format", "onnx", "--head", "ForQuestionAnswering"], EXIT_USAGE, "has no weights for it"),
    ],
)
def test_usage_errors_are_one_line_and_write_nothing(checkpoints, tmp_path, capsys, args, code, message):
    result, stdout, stderr = run_cli(capsys, checkpoints["ForMaskedLM"], tmp_path / "out", *args)
    assert result == code and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_an_existing_out_is_exit_7_and_left_alone(checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run_cli(capsys, checkpoints["ForMaskedLM"], out, "--format", "torchscript")
    assert code == EXIT_DESTINATION_EXISTS and "--overwrite" in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_missing_checkpoint_is_exit_3(tmp_path, capsys):
    code, _, stderr = run_cli(capsys, tmp_path / "nowhere", tmp_path / "out", "--format", "onnx")
    assert code == EXIT_MISSING_FILE and "nowhere" in stderr


def test_a_missing_onnx_library_names_the_extra(checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)  # as if not installed
    code, _, stderr = run_cli(capsys, checkpoints["ForMaskedLM"], tmp_path / "out", "--format", "onnx", "-q")
    assert code == EXIT_MISSING_DEPENDENCY
    assert "pip install 'xlmr[torch,onnx]'" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_exporter_module_that_is_not_there_is_one_line(checkpoints, tmp_path, capsys, monkeypatch):
    from conversion import export

    monkeypatch.setitem(export.FORMATS, "tflite", "conversion.no_such_exporter:export_tflite")
    code, _, stderr = run_cli(
        capsys, checkpoints["ForMaskedLM"], tmp_path / "out", "--format", "tflite", "-q"
    )
    assert code == EXIT_EXPORT_FAILED and "conversion.no_such_exporter is missing" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_artifact_that_does_not_match_eager_leaves_no_out(checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_torch, "TOLERANCE", 0.0)
    monkeypatch.setattr(export_torch, "agreement", lambda *args: (1.0, 1e-5))
    code, _, stderr = run_cli(
        capsys, checkpoints["ForTokenClassification"], tmp_path / "out", "--format", "torchscript"
    )
    assert code == EXIT_EXPORT_FAILED and "does not match the eager model" in stderr
    assert list(tmp_path.iterdir()) == []  # neither OUT nor its staging folder
