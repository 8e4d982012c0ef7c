"""Stopping after step k and resuming gives the weights of an uninterrupted run; checkpoints
are written atomically."""

from __future__ import annotations

import pytest
import torch

from xlmr_torch import training

from .distributed_helpers import final_weights, heavy, load_example, max_abs_diff, torchrun

TOLERANCE = 1e-6
# Dropout on and warm-up: the RNG and the scheduler must both be restored to match.
COMMON = ["--steps", "6", "--dropout", "0.1", "--warmup-steps", "2", "--global-batch-size", "8"]
COMMON += ["--seq-len", "12", "--save-every", "2", "--log-every", "100"]


def _run(output, head, *extra):
    return load_example().main([*COMMON, "--head", head, "--output", str(output), *extra])


def _interrupted_then_resumed(output, head, stop_after=3):
    _run(output, head, "--stop-after", str(stop_after), "--save-every", str(stop_after))
    assert not (output / "final").exists()
    return _run(output, head, "--resume")


@pytest.mark.parametrize(
    "head",
    [
        "XLMRobertaForSequenceClassification",
        pytest.param("XLMRobertaForMaskedLM", marks=heavy),
        pytest.param("XLMRobertaForCausalLM", marks=heavy),
    ],
)
def test_resumed_run_matches_uninterrupted(tmp_path, head):
    _run(tmp_path / "straight", head)
    resumed = _interrupted_then_resumed(tmp_path / "resumed", head)
    assert resumed["step"] == 6 and len(resumed["losses"]) == 3
    difference = max_abs_diff(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight"))
    assert difference <= TOLERANCE


@heavy
def test_resume_without_the_rng_state_differs(tmp_path, monkeypatch):
    # The control for the test above: with dropout on, the RNG state is what makes it pass.
    head = "XLMRobertaForSequenceClassification"
    _run(tmp_path / "straight", head)
    monkeypatch.setattr(training, "set_rng_state", lambda state: None)
    _interrupted_then_resumed(tmp_path / "resumed", head)
    assert max_abs_diff(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight")) > 1e-4


def test_interrupted_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    head = "XLMRobertaForSequenceClassification"
    _run(tmp_path, head, "--stop-after", "2")
    real_save = torch.save

    def crash_on_optimizer(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_optimizer)
    with pytest.raises(OSError, match="disk full"):
        _run(tmp_path, head, "--resume", "--stop-after", "4")
    assert not (tmp_path / training.checkpoint_name(4)).exists()
    assert training.latest_checkpoint(tmp_path) == tmp_path / training.checkpoint_name(2)


def test_checkpoint_holds_every_part(tmp_path):
    _run(tmp_path, "XLMRobertaForSequenceClassification", "--stop-after", "2")
    names = {p.name for p in (tmp_path / training.checkpoint_name(2)).iterdir()}
    assert names == {"model.pt", "optimizer.pt", "scheduler.pt", "rng_rank0.pt", "trainer_state.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@heavy
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_resume_matches_uninterrupted(tmp_path, strategy):
    flags = ["--fsdp"] if strategy == "fsdp" else []
    head = ["--head", "XLMRobertaForMaskedLM"]
    torchrun(2, [*COMMON, *head, *flags, "--output", str(tmp_path / "straight")])
    resumed = [*COMMON, *head, *flags, "--output", str(tmp_path / "resumed")]
    torchrun(2, [*resumed, "--stop-after", "3", "--save-every", "3"])
    if strategy == "fsdp":  # one shard file per rank and DCP's index, no gathered copy
        names = {p.name for p in (tmp_path / "resumed" / training.checkpoint_name(3)).iterdir()}
        assert {training.DCP_METADATA, "__0_0.distcp", "__1_0.distcp"} <= names
        assert "model.pt" not in names and "optimizer.pt" not in names
    torchrun(2, [*resumed, "--resume"])
    difference = max_abs_diff(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight"))
    assert difference <= TOLERANCE


def test_resume_refuses_another_world_size(tmp_path):
    _run(tmp_path, "XLMRobertaForSequenceClassification", "--stop-after", "2")
    state = tmp_path / training.checkpoint_name(2) / "trainer_state.json"
    state.write_text(state.read_text().replace('"world_size": 1', '"world_size": 2'))
    with pytest.raises(ValueError, match="written by 2 processes"):
        _run(tmp_path, "XLMRobertaForSequenceClassification", "--resume")
