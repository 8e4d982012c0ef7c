"""`xlmr-predict`: a pipeline over a JSON-lines file. Answers equal the in-process pipeline's in
every framework; the file is streamed batch by batch; OUT appears whole or not at all; a bad
record is a one-line error naming its line, with xlmr-convert's exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

import conversion.predict as predict_cli
from conversion.errors import (
    EXIT_CORRUPT_FILE,
    EXIT_DESTINATION_EXISTS,
    EXIT_INTERRUPTED,
    EXIT_MISSING_FILE,
    EXIT_OK,
    EXIT_USAGE,
)
from conversion.predict import main
from tests.conftest import REPO_ROOT
from tests.cross.harness import FRAMEWORKS, load_adapter
from tests.cross.pipeline_checkpoints import checkpoint_factory
from tests.cross.pipeline_checks import assert_same
from xlmr_core.pretrained import bundled_checkpoint

MASKED = ["Hello, how are <mask>?", "Good <mask>!", "I like <mask> robots", "<mask>", "Where is the <mask>?"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return checkpoint_factory(tmp_path_factory)


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_answers_equal_the_pipeline(framework, tmp_path, capsys):
    """Each record comes back with its fields and the pipeline's answer, in order, blank lines skipped."""
    load_adapter(framework)
    pipeline = __import__(f"xlmr_{framework}", fromlist=["pipeline"]).pipeline
    records = [{"id": i, "text": text} for i, text in enumerate(MASKED)]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(json.dumps(r) for r in records[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in records[2:])
    )
    out = tmp_path / "out.jsonl"
    code = main(
        ["fill-mask", str(bundled_checkpoint()), "--input", str(source), "--output", str(out)]
        + ["--framework", framework, "--batch-size", "2", "--option", "top_k=3", "-q"]
    )
    assert code == EXIT_OK, capsys.readouterr().err
    expected = pipeline("fill-mask", bundled_checkpoint(), top_k=3)(MASKED)
    # Scores within the pipelines' documented batching bound (1e-6): the command's batches differ.
    assert_same(read_lines(out), [{**r, "answer": a} for r, a in zip(records, expected)], 1e-6)
    assert leftovers(tmp_path) == []


def test_embeddings_options_and_ranking(tmp_path, checkpoints, capsys):
    """Embeddings as lists of the float32 numbers; --option reaches the pipeline; text-ranking reads
    {"query", "passages"}; --field and --output-field name the fields."""
    from xlmr_torch import pipeline

    texts = ["How are you?", "I like robots.", "Berlin"]
    source = write_lines(tmp_path / "in.jsonl", [{"body": t} for t in texts])
    out = tmp_path / "vectors.jsonl"
    args = ["--input", str(source), "--output", str(out), "--field", "body", "--output-field", "vec", "-q"]
    assert (
        main(["sentence-embedding", str(bundled_checkpoint()), *args, "--option", "pooling=cls"]) == EXIT_OK
    )
    vectors = np.array([r["vec"] for r in read_lines(out)], dtype=np.float32)
    np.testing.assert_array_equal(
        vectors, pipeline("sentence-embedding", bundled_checkpoint(), pooling="cls")(texts)
    )

    nli = checkpoints("nli")
    labels = '--option=candidate_labels=["travel", "robots"]'
    assert main(["zero-shot-classification", str(nli), *args, "--overwrite", labels]) == EXIT_OK
    zero_shot = pipeline("zero-shot-classification", nli, candidate_labels=["travel", "robots"])
    assert [r["vec"] for r in read_lines(out)] == zero_shot(texts)

    ranker = checkpoints("ranker")
    query = {"query": "Where is Berlin?", "passages": ["Berlin is in Germany.", "Robots"]}
    write_lines(source, [{"body": query}])
    assert main(["text-ranking", str(ranker), *args, "--overwrite"]) == EXIT_OK
    assert read_lines(out)[0]["vec"] == pipeline("text-ranking", ranker)(query["query"], query["passages"])
    capsys.readouterr()


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b'{"text": "a <mask>"}\n{"text": "b <mask>"\n', 2, "not valid JSON"),
        (b'{"text": "a <mask>"}\n\n["a <mask>"]\n', 3, "must be a JSON object, got list"),
        (b'{"text": "a <mask>"}\n{"body": "b"}\n', 2, "no field 'text' (fields: body)"),
        (
            b'{"text": "a <mask>"}\n{"text": "b <mask>"}\n{"text": 5}\n',
            3,
            "the input must be a string, got int",
        ),
        (b'{"text": "a <mask>"}\n{"text": "no mask here"}\n', 2, "the input holds no mask token"),
        (b'{"text": "a <mask>", "answer": 1}\n', 1, "already has a field 'answer'"),
        (b'{"text": "a <mask>"}\n{"text": "\xff"}\n', 2, "not UTF-8"),
    ],
)
def test_bad_record_names_its_line_and_writes_nothing(content, line, words, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    out = tmp_path / "out.jsonl"
    code = main(["fill-mask", str(bundled_checkpoint()), "--input", str(source), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == EXIT_CORRUPT_FILE
    assert err.startswith("xlmr-predict: error: ") and f"in.jsonl' line {line}" in err and words in err, err
    assert len(err) <= 300 + len("xlmr-predict: error: ")
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["no-such-task", "{ckpt}"], EXIT_USAGE, "unknown task 'no-such-task'"),
        (["fill-mask", "{ckpt}", "--option", "top_kk=2"], EXIT_USAGE, "unknown option 'top_kk'"),
        (["fill-mask", "{ckpt}", "--option", "top_k=0"], EXIT_USAGE, "top_k must be a positive integer"),
        (["fill-mask", "{ckpt}", "--batch-size", "0"], EXIT_USAGE, "must be a positive integer"),
        (["fill-mask", "{ckpt}", "--framework", "jax"], EXIT_USAGE, "invalid choice: 'jax'"),
        (["text-classification", "{ckpt}"], EXIT_USAGE, "has no classifier.* weights"),
        (["fill-mask", "{tmp}/nowhere"], EXIT_MISSING_FILE, "no such checkpoint directory"),
    ],
)
def test_usage_errors(argv, code, words, tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [{"text": "a <mask>"}])
    argv = [a.format(ckpt=bundled_checkpoint(), tmp=tmp_path) for a in argv]
    assert main([*argv, "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("xlmr-predict: error: ") and words in err, err
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_input_and_existing_output(tmp_path, capsys):
    ckpt, out = str(bundled_checkpoint()), tmp_path / "out.jsonl"
    assert main(["fill-mask", ckpt, "--input", str(tmp_path / "none.jsonl"), "--output", str(out)]) == 3
    source = write_lines(tmp_path / "in.jsonl", [{"text": "a <mask>"}])
    out.write_text("old\n")
    assert main(["fill-mask", ckpt, "--input", str(source), "--output", str(out)]) == EXIT_DESTINATION_EXISTS
    assert out.read_text() == "old\n"
    assert main(["fill-mask", ckpt, "--input", str(source), "--output", str(out), "--overwrite", "-q"]) == 0
    assert read_lines(out)[0]["text"] == "a <mask>"
    assert "--overwrite" in capsys.readouterr().err


def test_streams_batch_by_batch_and_interrupt_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Batches of --batch-size records are answered while the file is still being read; Ctrl-C in the
    middle leaves neither OUT nor a partial file (exit 130)."""
    source = write_lines(tmp_path / "in.jsonl", [{"text": f"{i} <mask>"} for i in range(7)])
    size = source.stat().st_size
    seen, real_predict, progress = [], predict_cli.predict, []
    real_progress = predict_cli.Progress

    def recording_progress(*args, **kwargs):
        progress.append(real_progress(*args, **kwargs))
        return progress[-1]

    def recording_predict(pipe, values):
        seen.append((len(values), progress[0].done))
        return real_predict(pipe, values)

    monkeypatch.setattr(predict_cli, "Progress", recording_progress)
    monkeypatch.setattr(predict_cli, "predict", recording_predict)
    out = tmp_path / "out.jsonl"
    argv = ["fill-mask", str(bundled_checkpoint()), "--input", str(source), "--output", str(out), "-q"]
    assert main([*argv, "--batch-size", "3"]) == EXIT_OK
    assert [n for n, _ in seen] == [3, 3, 1]
    assert [done < size for _, done in seen] == [True, True, False]  # read as it goes
    assert len(read_lines(out)) == 7

    def interrupted(pipe, values):
        if len(values) < 3:
            raise KeyboardInterrupt
        return real_predict(pipe, values)

    out.unlink()
    monkeypatch.setattr(predict_cli, "predict", interrupted)
    assert main([*argv, "--batch-size", "3"]) == EXIT_INTERRUPTED
    assert not out.exists() and leftovers(tmp_path) == []
    assert "nothing was written" in capsys.readouterr().err


def test_nan_answer_is_an_error(tmp_path, monkeypatch, capsys):
    source = write_lines(tmp_path / "in.jsonl", [{"text": "a <mask>"}, {"text": "b <mask>"}])
    monkeypatch.setattr(
        predict_cli, "predict", lambda pipe, values: [[{"score": 0.5}], [{"score": float("nan")}]]
    )
    out = tmp_path / "out.jsonl"
    assert main(["fill-mask", str(bundled_checkpoint()), "--input", str(source), "--output", str(out)]) == 4
    assert "in.jsonl' line 2: the model gave a NaN or infinite score" in capsys.readouterr().err
    assert not out.exists()


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    source = write_lines(tmp_path / "in.jsonl", [{"text": "a <mask>"}])
    argv = ["fill-mask", str(bundled_checkpoint()), "--input", str(source), "--output", str(tmp_path / "o")]
    assert main(argv) == EXIT_OK
    assert "\rxlmr-predict in.jsonl: [" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_the_command_prints_one_line_never_a_traceback(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "a <mask>"}\n{"text": [1, 2]}\n')
    result = subprocess.run(
        [sys.executable, "-m", "conversion.predict", "fill-mask", str(bundled_checkpoint())]
        + ["--input", str(source), "--output", str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == EXIT_CORRUPT_FILE
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "in.jsonl' line 2, field 'text': the input must be a string, got list" in last, result.stderr
