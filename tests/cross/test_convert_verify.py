"""`xlmr-convert verify`: the agreement table, PASS/FAIL and its exit status."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from conversion import verify
from conversion.cli import main
from conversion.errors import EXIT_MISSING_DEPENDENCY, EXIT_SHAPE_MISMATCH, EXIT_VERIFY_FAILED
from tests.cross.test_convert_cli import make_format, write_checkpoint
from xlmr_core.architecture import HEADS

pytest.importorskip("xlmr_torch")


def installed_frameworks() -> list[str]:
    found = []
    for framework, package in [("torch", "xlmr_torch"), ("tf", "xlmr_tf"), ("flax", "xlmr_flax")]:
        try:
            importlib.import_module(package)
            found.append(framework)
        except ImportError:
            pass
    return found


def table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.split()[-1:] in (["PASS"], ["FAIL"])]


def test_verify_compares_every_installed_framework_pair_and_float64(tmp_path, capsys):
    write_checkpoint(tmp_path / "ckpt")
    assert main(["verify", str(tmp_path / "ckpt"), "--quiet"]) == 0
    out = capsys.readouterr().out
    frameworks = installed_frameworks()
    comparisons = {" ".join(row[2:5]) for row in table_rows(out)}
    expected = {f"{fw} vs float64" for fw in frameworks}
    expected |= {f"{a} vs {b}" for i, a in enumerate(frameworks) for b in frameworks[i + 1 :]}
    assert comparisons == expected
    assert "deterministic random token ids" in out and out.rstrip().splitlines()[-1].startswith("PASS")


@pytest.mark.parametrize("head", HEADS)
def test_verify_runs_the_head_the_checkpoint_has(tmp_path, capsys, head):
    decoder = head == "ForCausalLM"
    write_checkpoint(tmp_path / "ckpt", head, is_decoder=decoder, add_cross_attention=decoder)
    assert main(["verify", str(tmp_path / "ckpt"), "--frameworks", "torch", "--quiet"]) == 0
    rows = table_rows(capsys.readouterr().out)
    fields = {
        "Model": {"last_hidden_state", "pooler_output"},
        "ForQuestionAnswering": {"start_logits", "end_logits"},
    }
    assert {row[0] for row in rows} == {head}
    assert {row[1] for row in rows} == fields.get(head, {"logits"})


def test_the_bound_scales_with_outputs_larger_than_one(tmp_path, capsys, monkeypatch):
    # float32 rounding is relative: outputs 1000x larger carry errors 1000x larger.
    write_checkpoint(tmp_path / "ckpt")
    honest = verify.run_torch

    def large(directory, head, inputs, fields, device, float64=False, **options):
        out = honest(directory, head, inputs, fields, device, float64, **options)
        return {k: 1000 * v + (0 if float64 else 1e-3) for k, v in out.items()}

    monkeypatch.setitem(verify.RUNNERS, "torch", large)
    monkeypatch.setattr(verify, "run_torch", large)  # the float64 run
    assert main(["verify", str(tmp_path / "ckpt"), "--frameworks", "torch", "--quiet"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if " vs float64 " in line]
    assert rows and all(float(row[-2]) > 1e-3 and row[-1] == "PASS" for row in rows)


def test_disagreement_fails_with_exit_status_1(tmp_path, capsys, monkeypatch):
    write_checkpoint(tmp_path / "ckpt")
    honest = verify.run_torch

    def off_by_a_little(directory, head, inputs, fields, device, float64=False, **options):
        out = honest(directory, head, inputs, fields, device, float64, **options)
        return out if float64 else {k: v + 1e-3 for k, v in out.items()}

    monkeypatch.setitem(verify.RUNNERS, "torch", off_by_a_little)
    assert main(["verify", str(tmp_path / "ckpt"), "--frameworks", "torch", "--quiet"]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "FAIL" in out.splitlines()[-1]
    row = table_rows(out)[0]
    assert row[-1] == "FAIL" and float(row[-2]) == pytest.approx(1e-3, rel=1e-3)


def test_verify_tokenizes_multilingual_text_with_the_directory_tokenizer(
    tmp_path, capsys, small_sentencepiece_model
):
    write_checkpoint(tmp_path / "ckpt", vocab_size=1001)
    (tmp_path / "ckpt" / "sentencepiece.bpe.model").write_bytes(small_sentencepiece_model.read_bytes())
    captured = {}
    honest = verify.run_torch

    def recording(directory, head, inputs, fields, device, float64=False, **options):
        captured["input_ids"] = inputs["input_ids"]
        return honest(directory, head, inputs, fields, device, float64, **options)

    import xlmr_core

    expected = xlmr_core.XLMRobertaTokenizer.from_pretrained(tmp_path / "ckpt")(
        list(verify.TEXTS), padding=True
    )
    verify.RUNNERS["torch"], saved = recording, verify.RUNNERS["torch"]
    try:
        assert main(["verify", str(tmp_path / "ckpt"), "--frameworks", "torch", "--quiet"]) == 0
    finally:
        verify.RUNNERS["torch"] = saved
    assert "multilingual sentences" in capsys.readouterr().out
    np.testing.assert_array_equal(captured["input_ids"], np.asarray(expected["input_ids"]))


@pytest.mark.parametrize("fmt", ["torch", "tf", "flax"])
def test_verify_runs_every_framework_on_any_weights_file_directly(tmp_path, capsys, fmt):
    write_checkpoint(tmp_path / "canonical")
    only = make_format(tmp_path, tmp_path / "canonical", fmt, f"{fmt}-only")
    assert main(["verify", str(only)]) == 0
    captured = capsys.readouterr()
    assert "converted" not in captured.err and "PASS" in captured.out and "skipped" not in captured.out


def test_verify_on_a_wrong_shaped_checkpoint_is_exit_5_in_one_line(tmp_path, capsys):
    write_checkpoint(tmp_path / "canonical")
    config = json.loads((tmp_path / "canonical" / "config.json").read_text())
    config["intermediate_size"] += 1
    (tmp_path / "canonical" / "config.json").write_text(json.dumps(config))
    assert main(["verify", str(tmp_path / "canonical")]) == EXIT_SHAPE_MISMATCH
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "intermediate.dense" in err and len(err) <= 320


def test_gpu_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    write_checkpoint(tmp_path / "ckpt")
    assert main(["verify", str(tmp_path / "ckpt"), "--device", "gpu", "--frameworks", "torch"]) == (
        EXIT_MISSING_DEPENDENCY
    )
    assert "no framework here can use a GPU" in capsys.readouterr().err


def test_on_gpu_tensorflow_without_a_gpu_runs_on_cpu_against_the_others(tmp_path, capsys, monkeypatch):
    pytest.importorskip("xlmr_tf")
    # Pretend torch has a GPU and TensorFlow has none; torch's "GPU" run really runs on CPU.
    monkeypatch.setattr(
        verify,
        "_unavailable",
        lambda fw, device: "TensorFlow sees no GPU" if (fw, device) == ("tf", "gpu") else None,
    )
    placements = {}

    def spy(framework, runner):
        def run(directory, head, inputs, fields, device, **kwargs):
            placements.setdefault(framework, device)
            return runner(directory, head, inputs, fields, "cpu", **kwargs)

        return run

    monkeypatch.setitem(verify.RUNNERS, "torch", spy("torch", verify.run_torch))
    monkeypatch.setitem(verify.RUNNERS, "tf", spy("tf", verify.run_tf))
    write_checkpoint(tmp_path / "ckpt")
    assert (
        main(["verify", str(tmp_path / "ckpt"), "--device", "gpu", "--frameworks", "torch", "tf", "-q"]) == 0
    )
    assert placements == {"torch": "gpu", "tf": "cpu"}
    out = capsys.readouterr().out
    assert "on cpu      tf: TensorFlow sees no GPU" in out and "torch vs tf" in out


@pytest.mark.gpu
def test_verify_on_gpu_passes_at_the_gpu_tolerance(tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    write_checkpoint(tmp_path / "ckpt")
    assert main(["verify", str(tmp_path / "ckpt"), "--device", "gpu", "--quiet"]) == 0
    assert "tolerance 0.0001" in capsys.readouterr().out


@pytest.mark.parametrize("padded", [False, True])
def test_verify_runs_unpadded_unless_told_padded(tmp_path, capsys, monkeypatch, padded):
    write_checkpoint(tmp_path / "ckpt")
    seen = []
    honest = verify.run_torch

    def recording(directory, head, inputs, fields, device, float64=False, **options):
        seen.append((float64, options.get("unpadded", False)))
        return honest(directory, head, inputs, fields, device, float64, **options)

    monkeypatch.setitem(verify.RUNNERS, "torch", recording)
    monkeypatch.setattr(verify, "run_torch", recording)
    flags = ["--padded"] if padded else []
    assert main(["verify", str(tmp_path / "ckpt"), "--frameworks", "torch", "--quiet", *flags]) == 0
    # The frameworks run unpadded by default; the float64 run is the padded path to compare with.
    assert seen == [(False, not padded), (True, False)]
    assert ("path        padded" if padded else "path        unpadded=True") in capsys.readouterr().out
