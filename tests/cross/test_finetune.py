"""`examples/finetune.py`: every task fine-tunes in torch, TF and Flax to the same model.

With --dropout 0 and one seed, the three frameworks start from the same head (drawn with numpy),
see the same batches and apply the same AdamW at the same rates: their per-step losses agree to
1e-3 relative and their metrics agree. Each OUT loads in every framework's pipeline for the task
(the head's own argmax where the project has no pipeline for it) with the same answers on
held-out inputs. Tiny model, a few steps, in-process; longer runs under XLMR_HEAVY=1.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from tests.cross.harness import FRAMEWORKS, load_adapter
from tests.cross.pipeline_checks import assert_same
from xlmr_core import XLMRobertaTokenizerFast
from xlmr_core.pretrained import bundled_checkpoint, heldout_sentences

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
STEPS = 12 if HEAVY else 3
RELATIVE = 1e-3
SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "finetune.py"
TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "multiple-choice",
    "masked-lm",
    "causal-lm",
)
# The default suite's slice (the file's budget is ~90 s; each framework's first step compiles):
# text classification in all three, every other task in torch and one of TF / Flax, in turn.
# XLMR_HEAVY=1 runs every task in all three, for more steps.
DEFAULT_FRAMEWORKS = {
    "text-classification": FRAMEWORKS,
    "token-classification": ("torch", "flax"),
    "question-answering": ("torch", "tf"),
    "multiple-choice": ("torch", "flax"),
    "masked-lm": ("torch", "tf"),
    "causal-lm": ("torch", "flax"),
}
PIPELINE_TASK = {
    "text-classification": "text-classification",
    "token-classification": "token-classification",
    "question-answering": "question-answering",
    "masked-lm": "fill-mask",
}
PREFIX = {"torch": "XLMRoberta", "tf": "TFXLMRoberta", "flax": "FlaxXLMRoberta"}
HEAD = {"multiple-choice": "ForMultipleChoice", "causal-lm": "ForCausalLM"}


@pytest.fixture(scope="module")
def finetune_main():
    """`main(argv) -> exit status` of examples/finetune.py, run in this process."""
    return runpy.run_path(str(SCRIPT))["main"]


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A random tiny masked-LM checkpoint with the bundled tokenizer (every head but the LMs'
    is then new, drawn by `initial_head`)."""
    from tests.cross.pipeline_checkpoints import tiny_config

    directory = tmp_path_factory.mktemp("finetune-base")
    load_adapter("torch").random_checkpoint(tiny_config(), "ForMaskedLM", directory)
    XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint()).save_pretrained(directory)
    return directory


def _sentences():
    by_language: dict[str, list[str]] = {}
    for language, text in heldout_sentences():
        by_language.setdefault(language, []).append(text)
    return sorted(by_language.items())


def _records(task: str, start: int, count: int, sentences: int = 3) -> list[dict]:
    """`count` deterministic records of `task`, each of `sentences` bundled held-out sentences."""
    languages = _sentences()[:3]
    records = []
    for i in range(start, start + count):
        language, texts = languages[i % len(languages)]
        # Training texts of three sentences fill --max-length: every batch has one shape, and
        # each framework compiles its step once.
        text = " ".join(texts[(i // len(languages) + k) % len(texts)] for k in range(sentences))
        words = text.split()
        if task == "text-classification":
            records.append({"text": text, "label": language})
        elif task == "token-classification":
            tags = ["B-LOC" if j == 0 else ("I-LOC" if j == 1 and i % 2 else "O") for j in range(len(words))]
            records.append({"tokens": words, "tags": tags})
        elif task == "question-answering":
            answers = {"text": [words[-1]], "answer_start": [text.rindex(words[-1])]}
            if i % 4 == 3:
                answers = {"text": [], "answer_start": []}
            records.append({"id": f"q{i}", "question": language, "context": text, "answers": answers})
        elif task == "multiple-choice":
            others = [t for _, ts in languages for t in ts[:3] if t != text]
            choices = [others[i % len(others)], text, others[(i + 1) % len(others)]]
            records.append({"question": language, "choices": choices, "label": 1})
        else:
            records.append({"text": text})
    return records


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(finetune_main, base_checkpoint, tmp_path_factory):
    """`runs(task) -> {framework: OUT}`: each task fine-tuned once per framework."""
    done: dict[str, dict[str, Path]] = {}

    def run(task: str) -> dict[str, Path]:
        if task not in done:
            root = tmp_path_factory.mktemp(f"finetune-{task}")
            train = _write_jsonl(root / "train.jsonl", _records(task, 0, 12))
            dev = _write_jsonl(root / "dev.jsonl", _records(task, 12, 4))
            done[task] = {}
            for framework in FRAMEWORKS if HEAVY else DEFAULT_FRAMEWORKS[task]:
                pytest.importorskip({"torch": "torch", "tf": "tensorflow", "flax": "flax"}[framework])
                out = root / framework
                argv = [
                    "--task", task, "--framework", framework, "--model", str(base_checkpoint),
                    "--train", str(train), "--validation", str(dev), "--output-dir", str(out),
                    "--max-steps", str(STEPS), "--batch-size", "4", "--learning-rate", "1e-3",
                    "--warmup-steps", "1", "--weight-decay", "0.01", "--dropout", "0", "--seed", "3",
                    "--max-length", "16", "--doc-stride", "4", "--quiet",
                ]  # fmt: skip
                assert finetune_main(argv) == 0, (task, framework)
                done[task][framework] = out
        return done[task]

    return run


@pytest.mark.parametrize("task", TASKS)
def test_three_frameworks_follow_the_same_loss_curve(task, runs):
    outs = runs(task)
    results = {fw: json.loads((out / "metrics.json").read_text()) for fw, out in outs.items()}
    reference = results["torch"]
    assert len(reference["train_loss"]) == STEPS
    assert all(np.isfinite(reference["train_loss"]))
    assert reference["eval"] and "loss" in reference["eval"], reference
    for framework, result in results.items():
        np.testing.assert_allclose(
            result["train_loss"], reference["train_loss"], rtol=RELATIVE, err_msg=f"{task} {framework}"
        )
        assert result["eval"].keys() == reference["eval"].keys(), framework
        for name, value in reference["eval"].items():
            assert result["eval"][name] == pytest.approx(value, rel=RELATIVE, abs=1e-6), (framework, name)


def _held_out(task: str) -> list:
    records = _records(task, 30, 3, sentences=1)
    if task == "text-classification":
        return [r["text"] for r in records]
    if task == "token-classification":
        return [" ".join(r["tokens"]) for r in records]
    if task == "question-answering":
        return [{"question": r["question"], "context": r["context"]} for r in records]
    if task == "masked-lm":
        return [r["text"].split(" ", 1)[0] + " <mask>" for r in records]
    return records


def _answers(framework: str, task: str, out: Path, inputs: list):
    """The fine-tuned OUT's answers in `framework`: its pipeline, or the head's argmax. All inputs
    go in one call (one batch): a compiling framework then compiles once, not once per input."""
    if task in PIPELINE_TASK:
        pipeline = importlib.import_module(f"xlmr_{framework}").pipeline
        return pipeline(PIPELINE_TASK[task], str(out))(inputs)
    model = getattr(
        importlib.import_module(f"xlmr_{framework}"), PREFIX[framework] + HEAD[task]
    ).from_pretrained(out)
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(out)
    if task == "multiple-choice":
        questions = [record["question"] for record in inputs for _ in record["choices"]]
        choices = [choice for record in inputs for choice in record["choices"]]
        encoded = tokenizer(questions, choices, padding=True, return_tensors="np")
        shape = (len(inputs), -1, encoded["input_ids"].shape[-1])
        batch = {k: encoded[k].reshape(shape) for k in ("input_ids", "attention_mask")}
        return np.argmax(_logits(framework, model, batch), -1).tolist()
    # Causal LM: right padding leaves the real positions' logits as they are alone (causal mask).
    encoded = tokenizer([record["text"] for record in inputs], padding=True, return_tensors="np")
    batch = {k: encoded[k] for k in ("input_ids", "attention_mask")}
    predicted = np.argmax(_logits(framework, model, batch), -1)
    return [row[: mask.sum()].tolist() for row, mask in zip(predicted, batch["attention_mask"])]


def _logits(framework: str, model, batch: dict) -> np.ndarray:
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    if framework == "tf":
        return np.asarray(model(batch, training=False)["logits"])
    return np.asarray(model(**batch).logits)


@pytest.mark.parametrize("task", TASKS)
def test_the_finetuned_model_answers_the_same_in_every_framework(task, runs):
    outs = runs(task)
    inputs = _held_out(task)
    frameworks = list(outs)
    reference = _answers("torch", task, outs["torch"], inputs)
    # Each framework's pipeline on the OUT another framework wrote (in turn), so every OUT is
    # loaded by a framework other than its own and every framework's pipeline answers.
    for framework, writer in zip(frameworks, frameworks[1:] + frameworks[:1]):
        answers = _answers(framework, task, outs[writer], inputs)
        assert_same(answers, reference, 1e-3, f"{task}: {framework} on {writer}'s OUT")


@pytest.mark.parametrize(
    "line, field",
    [
        ('{"text": "bonjour", "label": ["fr"]}', "label"),
        ('{"txt": "bonjour", "label": "fr"}', "text"),
    ],
)
def test_a_malformed_line_is_one_line_naming_file_line_and_field(
    line, field, finetune_main, base_checkpoint, tmp_path, capsys
):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "hello", "label": "en"}\n\n' + line + "\n", encoding="utf-8")
    argv = ["--task", "text-classification", "--framework", "torch", "--model", str(base_checkpoint)]
    status = finetune_main([*argv, "--train", str(train), "--output-dir", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert status == 4, error  # a corrupt input file
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    assert "train.jsonl" in error and ":3" in error and field in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--learning-rte", "1e-4"],
        ["--learning", "1e-4"],
        ["--dropout", "1.5"],
        ["--task", "ner"],
        ["--fsdp", "--framework", "tf"],  # FSDP2 is torch's: refused, not ignored
    ],
)
def test_a_misspelled_option_or_bad_value_is_refused(
    option, finetune_main, base_checkpoint, tmp_path, capsys
):
    train = _write_jsonl(tmp_path / "train.jsonl", _records("text-classification", 0, 4))
    argv = ["--task", "text-classification", "--framework", "torch", "--model", str(base_checkpoint)]
    argv += ["--train", str(train), "--output-dir", str(tmp_path / "out")]
    status = finetune_main([*argv, *option])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2, error
    assert error.startswith("finetune.py: error:") and option[0].split("-")[-1] in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("max_steps, warmup", [(10, 0), (10, 3), (7, 7)])
def test_the_schedule_is_the_reference_linear_schedule_with_warmup(max_steps, warmup):
    """Every trainer reads `learning_rates`; it is the reference library's schedule, step by step."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from xlmr_core.finetuning.schedule import learning_rates

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, warmup, max_steps)
    expected = []
    for _ in range(max_steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(learning_rates(0.5, max_steps, warmup), expected, rtol=1e-12, atol=0)


def test_a_nan_loss_stops_the_run_naming_the_step(finetune_main, base_checkpoint, tmp_path, capsys):
    """A learning rate of 1e30 blows the weights up after the first step: the next loss is not a
    number, and the run stops there (one line, the step named) instead of training on it."""
    pytest.importorskip("torch")
    train = _write_jsonl(tmp_path / "train.jsonl", _records("text-classification", 0, 4))
    argv = ["--task", "text-classification", "--framework", "torch", "--model", str(base_checkpoint)]
    argv += ["--train", str(train), "--output-dir", str(tmp_path / "out"), "--quiet", "--max-length", "16"]
    status = finetune_main([*argv, "--learning-rate", "1e30", "--max-steps", "4", "--batch-size", "2"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 9, error
    assert error.startswith("finetune.py: error: the training loss at step ") and "nan" in error, error
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def finetune_script():
    """examples/finetune.py's namespace, run in this process."""
    return runpy.run_path(str(SCRIPT))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_new_head_is_logged_as_drawn_from_the_seed(framework, finetune_script, base_checkpoint, caplog):
    """from_pretrained's "newly initialised" would be wrong: the head it made is replaced by
    `initial_head`; the log says so instead, in one line."""
    pytest.importorskip({"torch": "torch", "tf": "tensorflow", "flax": "flax"}[framework])
    from xlmr_core.finetuning import initial_head

    overrides = {"id2label": {0: "a", 1: "b"}, "label2id": {"a": 0, "b": 1}}
    with caplog.at_level("WARNING"):
        model = finetune_script["load_model"](
            framework, "text-classification", base_checkpoint, 7, **overrides
        )
    messages = [record.getMessage() for record in caplog.records]
    assert not any("newly initialised" in m for m in messages), messages
    drawn = [m for m in messages if "new text-classification head drawn from --seed 7" in m]
    assert len(drawn) == 1 and "classifier.out_proj.weight" in drawn[0], messages
    head = initial_head("text-classification", model.config, 7)
    state = model.canonical_state()
    assert all(np.array_equal(state[name], value) for name, value in head.items())


def test_a_doc_stride_too_large_is_an_argument_error(finetune_main, base_checkpoint, tmp_path, capsys):
    train = _write_jsonl(tmp_path / "train.jsonl", _records("question-answering", 0, 4))
    argv = ["--task", "question-answering", "--framework", "torch", "--model", str(base_checkpoint)]
    argv += ["--train", str(train), "--output-dir", str(tmp_path / "out"), "--max-length", "16"]
    status = finetune_main([*argv, "--doc-stride", "15"])
    error = capsys.readouterr().err.strip()
    assert status == 2, error  # a usage error, not a corrupt file (4)
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert error.startswith("finetune.py: error: --doc-stride 15 must be smaller than "), error
    assert "train.jsonl" not in error, error
    assert not (tmp_path / "out").exists()


def test_a_batch_that_torchrun_processes_cannot_share_is_refused(
    finetune_main, base_checkpoint, tmp_path, capsys, monkeypatch
):
    """Under torchrun (WORLD_SIZE set) each process takes an equal slice of every batch."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    train = _write_jsonl(tmp_path / "train.jsonl", _records("text-classification", 0, 4))
    argv = ["--task", "text-classification", "--framework", "torch", "--model", str(base_checkpoint)]
    argv += ["--train", str(train), "--output-dir", str(tmp_path / "out"), "--batch-size", "3"]
    status = finetune_main(argv)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2, error
    assert error == "finetune.py: error: --batch-size 3 must be a multiple of the 2 torchrun processes"
    assert not (tmp_path / "out").exists()
