"""Reading fine-tuning files: every task's format, and a bad line refused in one line naming the
file, the line and the field."""

from __future__ import annotations

import json

import pytest

from xlmr_core.errors import MAX_MESSAGE
from xlmr_core.finetuning import HEAD_CLASS, TASKS, DataError, FinetuningError, read_examples

GOOD = {
    "text-classification": {"text": "a b", "text_pair": "c", "label": "pos"},
    "token-classification": {"tokens": ["Paris", "is"], "tags": ["B-LOC", "O"]},
    "question-answering": {
        "id": "q1",
        "title": "t",
        "question": "Where?",
        "context": "In Paris.",
        "answers": {"text": ["Paris"], "answer_start": [3]},
    },
    "multiple-choice": {"question": "2+2?", "choices": ["3", "4"], "label": 1},
    "masked-lm": {"text": "some text"},
    "causal-lm": {"text": "some text"},
}


def write(path, *lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines))
    return path


def test_every_task_has_a_head_class():
    assert set(HEAD_CLASS) == set(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_a_good_file_is_read_with_blank_lines_skipped(tmp_path, task):
    path = write(
        tmp_path / "d.jsonl",
        GOOD[task],
        "",
        "   ",
        GOOD[task] | {"id": "q2"} if "id" in GOOD[task] else GOOD[task],
    )
    records = read_examples(task, path)
    assert len(records) == 2
    assert records[0] == GOOD[task]


# (task, the bad line's record or text, the field named in the error, a word of the reason)
MOVED_ANSWER = {**GOOD["question-answering"], "answers": {"text": ["Paris"], "answer_start": [2]}}
BAD = [
    ("text-classification", {"text": "a"}, "field 'label'", "missing"),
    ("text-classification", {"text": "a", "label": "x", "lable": 1}, "field 'lable'", "unknown"),
    ("text-classification", {"text": "", "label": "x"}, "field 'text'", "empty"),
    ("text-classification", {"text": 3, "label": "x"}, "field 'text'", "string"),
    ("text-classification", '{"text": "a", "label": NaN}', "not a JSON object", "NaN"),
    ("text-classification", {"text": "a", "label": True}, "field 'label'", "regression"),
    ("text-classification", {"text": "a", "label": [1]}, "field 'label'", "regression"),
    ("text-classification", '{"text": "a", "label": ', "not a JSON object", "line 1"),
    ("text-classification", "[1, 2]", "not a JSON object", "list"),
    ("token-classification", {"tokens": ["a", "b"], "tags": ["O"]}, "field 'tags'", "one tag per word"),
    ("token-classification", {"tokens": ["a"], "tags": ["PER"]}, "field 'tags'", "IOB2"),
    ("token-classification", {"tokens": ["a", " "], "tags": ["O", "O"]}, "field 'tokens'", "word 1"),
    ("token-classification", {"tokens": [], "tags": []}, "field 'tokens'", "non-empty"),
    ("question-answering", MOVED_ANSWER, "field 'answers'", "not in the context"),
    ("question-answering", {**GOOD["question-answering"], "answers": {"text": ["Paris"]}}, "field 'answers'",
     "answer_start"),
    ("question-answering", {**GOOD["question-answering"], "question": None}, "field 'question'", "string"),
    ("multiple-choice", {"question": "q", "choices": ["a", "b"], "label": 2}, "field 'label'", "0 to 1"),
    ("multiple-choice", {"question": "q", "choices": ["a"], "label": 0}, "field 'choices'", "at least 2"),
    ("masked-lm", {"text": "a", "label": 1}, "field 'label'", "unknown"),
    ("causal-lm", {"txt": "a"}, "field 'txt'", "unknown"),
]  # fmt: skip


@pytest.mark.parametrize(("task", "bad", "field", "reason"), BAD)
def test_a_bad_line_is_one_line_naming_file_line_and_field(tmp_path, task, bad, field, reason):
    path = write(tmp_path / "train.jsonl", GOOD[task], "", bad)
    with pytest.raises(DataError) as caught:
        read_examples(task, path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: {field}"), message
    assert reason in message
    assert "\n" not in message and len(message) <= MAX_MESSAGE


@pytest.mark.parametrize(
    ("task", "second", "field"),
    [
        ("text-classification", {"text": "b", "label": 0.5}, "field 'label'"),
        ("multiple-choice", {"question": "q", "choices": ["a", "b", "c"], "label": 0}, "field 'choices'"),
        ("question-answering", GOOD["question-answering"], "field 'id'"),
    ],
)
def test_records_that_disagree_with_the_first_are_refused(tmp_path, task, second, field):
    path = write(tmp_path / "d.jsonl", GOOD[task], second)
    with pytest.raises(DataError, match=rf"^{path}:2: {field}"):
        read_examples(task, path)


def test_numeric_labels_are_read_for_regression(tmp_path):
    path = write(tmp_path / "d.jsonl", {"text": "a", "label": 1}, {"text": "b", "label": 0.25})
    assert [r["label"] for r in read_examples("text-classification", path)] == [1, 0.25]


def test_a_missing_empty_or_non_utf8_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_examples("masked-lm", tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match="no records"):
        read_examples("masked-lm", write(tmp_path / "empty.jsonl", "", " "))
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not UTF-8"):
        read_examples("masked-lm", path)


def test_an_unknown_task_is_refused():
    with pytest.raises(FinetuningError, match="unknown task 'text-clasification'"):
        read_examples("text-clasification", "x.jsonl")
