"""`examples/torch_finetune.py` on 2 processes (gloo, localhost) gives the weights of 1 process
on the same global batch: DDP and FSDP2, with and without gradient accumulation."""

from __future__ import annotations

import pytest

from .distributed_helpers import final_weights, heavy, load_example, max_abs_diff, torchrun

TOLERANCE = 1e-6
# Adding a constant to every start (end) logit leaves a softmax unchanged, so these two
# parameters have a gradient of exactly 0 in QA: what they get is float rounding, which Adam
# scales up to the learning rate. Any change of summation order (accumulation in one process
# too) moves them by ~1e-3; they carry no signal to compare.
SHIFT_INVARIANT = {
    "XLMRobertaForQuestionAnswering": ("qa_outputs.bias", "roberta.encoder.layer.1.output.LayerNorm.bias")
}
# Dropout off: two processes draw different masks than one, by design.
COMMON = ["--steps", "3", "--dropout", "0", "--global-batch-size", "8", "--seq-len", "12", "--log-every", "1"]


def _single_process(tmp_path, head, extra=()):
    output = tmp_path / "single"
    load_example().main([*COMMON, "--head", head, *extra, "--output", str(output)])
    return final_weights(output)


def _two_processes(tmp_path, head, strategy, extra=()):
    output = tmp_path / strategy
    flags = ["--fsdp"] if strategy == "fsdp" else []
    torchrun(2, [*COMMON, "--head", head, *flags, *extra, "--output", str(output)])
    return final_weights(output)


def _without_shift_invariant(weights, head):
    return {k: v for k, v in weights.items() if k not in SHIFT_INVARIANT.get(head, ())}


def test_ddp_two_processes_match_one(tmp_path):
    head = "XLMRobertaForSequenceClassification"
    reference = _single_process(tmp_path, head)
    assert max_abs_diff(_two_processes(tmp_path, head, "ddp"), reference) <= TOLERANCE


@heavy
@pytest.mark.parametrize(
    "head",
    [
        "XLMRobertaForSequenceClassification",
        "XLMRobertaForMaskedLM",
        "XLMRobertaForCausalLM",
        "XLMRobertaForTokenClassification",
        "XLMRobertaForQuestionAnswering",
    ],
)
def test_fsdp_two_processes_match_one(tmp_path, head):
    reference = _without_shift_invariant(_single_process(tmp_path, head), head)
    sharded = _without_shift_invariant(_two_processes(tmp_path, head, "fsdp"), head)
    assert max_abs_diff(sharded, reference) <= TOLERANCE


@heavy
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_accumulation_on_two_processes_matches_one_full_batch(tmp_path, strategy):
    # Masked LM: the labelled tokens fall unevenly over ranks and micro-batches.
    head = "XLMRobertaForMaskedLM"
    reference = _single_process(tmp_path, head)
    accumulated = _two_processes(tmp_path, head, strategy, ["--accumulation-steps", "2"])
    assert max_abs_diff(accumulated, reference) <= TOLERANCE


@heavy
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_bf16_autocast_trains_on_two_processes(tmp_path, strategy):
    head = "XLMRobertaForTokenClassification"
    reference = _single_process(tmp_path, head)
    mixed = _two_processes(tmp_path, head, strategy, ["--bf16"])
    # bf16 rounds at 2^-8: close to the float32 run, but not equal.
    assert 0 < max_abs_diff(mixed, reference) < 1e-2
