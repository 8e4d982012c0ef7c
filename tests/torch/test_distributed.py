"""`examples/torch_finetune.py` and `examples/finetune.py` on 2 processes (gloo, localhost) give
the weights of 1 process on the same global batch: DDP and FSDP2, with and without gradient
accumulation."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

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


FINETUNE = REPO_ROOT / "examples" / "finetune.py"


@pytest.fixture(scope="module")
def finetune_inputs(tmp_path_factory):
    """A random tiny masked-LM checkpoint with the bundled tokenizer, and language-labelled held-out
    sentences as text-classification JSON lines: 4 per language to train on, 2 to validate."""
    from tests.cross.harness import load_adapter
    from tests.cross.pipeline_checkpoints import tiny_config
    from xlmr_core import XLMRobertaTokenizerFast
    from xlmr_core.pretrained import bundled_checkpoint, heldout_sentences

    root = tmp_path_factory.mktemp("finetune-ddp")
    load_adapter("torch").random_checkpoint(tiny_config(), "ForMaskedLM", root / "base")
    XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint()).save_pretrained(root / "base")
    by_language: dict[str, list[str]] = {}
    for language, text in heldout_sentences():
        if language in ("dutch", "english", "german"):
            by_language.setdefault(language, []).append(text)
    train, dev = [], []
    for language, texts in sorted(by_language.items()):
        train += [{"text": text, "label": language} for text in texts[:4]]
        dev += [{"text": text, "label": language} for text in texts[4:6]]
    for name, records in (("train", train), ("dev", dev)):
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        (root / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    return root


def _finetune_argv(root: Path, output: Path) -> list[str]:
    return [
        "--task", "text-classification", "--framework", "torch", "--model", str(root / "base"),
        "--train", str(root / "train.jsonl"), "--validation", str(root / "dev.jsonl"),
        "--output-dir", str(output), "--max-steps", "4", "--batch-size", "4", "--learning-rate", "1e-3",
        "--dropout", "0", "--seed", "5", "--max-length", "24", "--quiet",
    ]  # fmt: skip


@heavy
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_finetune_script_on_two_processes_matches_one(finetune_inputs, tmp_path, strategy):
    """`examples/finetune.py` under torchrun: the global-mean loss makes each step's loss and
    the saved model those of one process on the same global batches."""
    from safetensors.numpy import load_file

    single, two = tmp_path / "single", tmp_path / strategy
    assert runpy.run_path(str(FINETUNE))["main"](_finetune_argv(finetune_inputs, single)) == 0
    flags = ["--fsdp"] if strategy == "fsdp" else []
    torchrun(2, [*_finetune_argv(finetune_inputs, two), *flags], script=FINETUNE)
    results = [json.loads((out / "metrics.json").read_text()) for out in (single, two)]
    assert len(results[0]["train_loss"]) == 4
    np.testing.assert_allclose(results[1]["train_loss"], results[0]["train_loss"], rtol=1e-5, atol=0)
    assert results[1]["eval"] == pytest.approx(results[0]["eval"], rel=1e-5), results
    weights = [load_file(out / "model.safetensors") for out in (single, two)]
    assert max_abs_diff(weights[1], weights[0]) <= TOLERANCE
    assert (
        json.loads((two / "config.json").read_text())["id2label"]
        == json.loads((single / "config.json").read_text())["id2label"]
    )
