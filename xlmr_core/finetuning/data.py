"""The fine-tuning tasks and their JSON-lines files: reading, and refusing a bad record in one line.

Each line of a task's file is one JSON object (issue 22's formats); blank lines are skipped. A line
that is not what the task reads is a `DataError` naming the file, the 1-based line number and the
field, so a user can go straight to it.
"""

from __future__ import annotations

import json
import math
import os

from ..errors import OneLineError, clip, short

TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "multiple-choice",
    "masked-lm",
    "causal-lm",
)
# The suffix of each task's public model class (`XLMRobertaForSequenceClassification`, ...).
HEAD_CLASS = {
    "text-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
    "question-answering": "ForQuestionAnswering",
    "multiple-choice": "ForMultipleChoice",
    "masked-lm": "ForMaskedLM",
    "causal-lm": "ForCausalLM",
}

# The keys of a record per task: (required, optional). SQuAD files carry a "title" nobody reads.
FIELDS = {
    "text-classification": (("text", "label"), ("text_pair",)),
    "token-classification": (("tokens", "tags"), ()),
    "question-answering": (("id", "question", "context", "answers"), ("title",)),
    "multiple-choice": (("question", "choices", "label"), ()),
    "masked-lm": (("text",), ()),
    "causal-lm": (("text",), ()),
}


class FinetuningError(OneLineError, ValueError):
    """Fine-tuning was asked for something it cannot do (an unknown task, a bad argument)."""


class ArgumentError(FinetuningError):
    """An argument's value does not fit the data ("doc_stride 64 must be smaller than 40: ...");
    `argument` is its name, so that a command line can name its own option instead."""

    def __init__(self, argument: str, problem: str):
        self.argument, self.problem = argument, problem
        super().__init__(f"{argument} {problem}")


class DataError(FinetuningError):
    """A record of a fine-tuning file is not what its task reads ("FILE:LINE: field 'label': ...")."""


class Record(dict):
    """One record of a file: a plain dict that remembers where it came from, so that a problem found
    later (a validation label unknown to training) still names the file and line."""

    source: str | None = None
    line: int | None = None

    def where(self, index: int) -> str:
        """ "FILE:LINE" when known, else "record N" (1-based)."""
        if self.source is not None and self.line is not None:
            return f"{self.source}:{self.line}"
        return f"record {index + 1}"


def where(record, index: int) -> str:
    """The place of `record` (the `index`-th of its list) for a message."""
    return record.where(index) if isinstance(record, Record) else f"record {index + 1}"


def check_task(task) -> str:
    """`task` when it is one of `TASKS`."""
    if task not in TASKS:
        raise FinetuningError(f"unknown task {short(task, 60)}; expected one of {', '.join(TASKS)}")
    return task


def read_examples(task: str, path) -> list[dict]:
    """The records of the JSON-lines file `path` for `task`, each validated (see `FIELDS`)."""
    check_task(task)
    name = clip(os.fspath(path), 120)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except UnicodeDecodeError as error:
        line = _line_of_byte(path, error.start)
        raise DataError(f"{name}:{line}: not UTF-8 text") from None
    except OSError as error:
        raise DataError(f"{name}: cannot read: {error.strerror or type(error).__name__}") from None
    records = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as error:
            raise DataError(f"{name}:{number}: not a JSON object: {clip(str(error), 80)}") from None
        record = Record(value) if isinstance(value, dict) else None
        if record is None:
            raise DataError(f"{name}:{number}: not a JSON object (got {type(value).__name__})")
        record.source, record.line = name, number
        problem = check_record(task, record)
        if problem:
            raise DataError(f"{name}:{number}: {problem}")
        records.append(record)
    if not records:
        raise DataError(f"{name}: no records (a {task} file has one JSON object per line)")
    problem, index = check_consistent(task, records)
    if problem:
        raise DataError(f"{records[index].where(index)}: {problem}")
    return records


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _line_of_byte(path, offset: int) -> int:
    with open(path, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def check_record(task: str, record: dict) -> str | None:
    """What is wrong with one record ("field 'label': ..."), or None."""
    required, optional = FIELDS[task]
    for key in record:
        if key not in required and key not in optional:
            known = ", ".join(required + optional)
            return f"field {short(key, 40)}: unknown for {task} (it reads {known})"
    for key in required:
        if key not in record:
            return f"field {key!r}: missing"
    return _CHECKS[task](record)


def check_examples(task: str, examples) -> None:
    """Validate records that did not come from `read_examples` (a list built in code)."""
    check_task(task)
    if not isinstance(examples, (list, tuple)) or not examples:
        raise DataError(f"{task} examples must be a non-empty list of records, got {short(examples, 60)}")
    for index, record in enumerate(examples):
        if not isinstance(record, dict):
            raise DataError(f"{where(record, index)}: not a dict (got {type(record).__name__})")
        problem = check_record(task, record)
        if problem:
            raise DataError(f"{where(record, index)}: {problem}")
    problem, index = check_consistent(task, examples)
    if problem:
        raise DataError(f"{where(examples[index], index)}: {problem}")


def check_consistent(task: str, records) -> tuple[str | None, int]:
    """What makes the records disagree with each other (and the index of the first that does)."""
    if task == "text-classification":
        numeric = _is_number(records[0]["label"])
        for index, record in enumerate(records):
            if _is_number(record["label"]) != numeric:
                first = "numbers (regression)" if numeric else "strings (classes)"
                return f"field 'label': {short(record['label'], 40)} but earlier labels are {first}", index
    if task == "multiple-choice":
        count = len(records[0]["choices"])
        for index, record in enumerate(records):
            if len(record["choices"]) != count:
                return (
                    f"field 'choices': {len(record['choices'])} choices but the first record has {count} "
                    "(every record needs the same number)"
                ), index
    if task == "question-answering":
        seen = set()
        for index, record in enumerate(records):
            if record["id"] in seen:
                return f"field 'id': {short(record['id'], 40)} is used twice", index
            seen.add(record["id"])
    return None, 0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(record, key: str, empty_ok: bool = False) -> str | None:
    value = record[key]
    if not isinstance(value, str):
        return f"field {key!r}: must be a string, got {type(value).__name__} ({short(value, 40)})"
    if not empty_ok and not value.strip():
        return f"field {key!r}: must not be empty"
    return None


def _check_text_classification(record) -> str | None:
    problem = _text(record, "text") or ("text_pair" in record and _text(record, "text_pair"))
    if problem:
        return problem
    label = record["label"]
    if isinstance(label, str):
        return None if label.strip() else "field 'label': must not be empty"
    if _is_number(label):
        return None if math.isfinite(label) else f"field 'label': {label} is not a finite number"
    return f"field 'label': must be a string (a class) or a number (regression), got {short(label, 40)}"


def _check_token_classification(record) -> str | None:
    tokens, tags = record["tokens"], record["tags"]
    if not isinstance(tokens, list) or not tokens:
        return f"field 'tokens': must be a non-empty list of words, got {short(tokens, 40)}"
    for i, word in enumerate(tokens):
        if not isinstance(word, str) or not word.strip():
            return f"field 'tokens': word {i} must be a non-empty string, got {short(word, 40)}"
    if not isinstance(tags, list) or len(tags) != len(tokens):
        count = len(tags) if isinstance(tags, list) else type(tags).__name__
        return f"field 'tags': must be a list of one tag per word ({len(tokens)}), got {count}"
    for i, tag in enumerate(tags):
        if not (isinstance(tag, str) and (tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:].strip()))):
            return f"field 'tags': tag {i} is {short(tag, 40)}, not an IOB2 tag (O, B-TYPE or I-TYPE)"
    return None


def _check_question_answering(record) -> str | None:
    if not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool):
        return f"field 'id': must be a string or an integer, got {short(record['id'], 40)}"
    problem = _text(record, "question") or _text(record, "context")
    if problem:
        return problem
    answers = record["answers"]
    if not isinstance(answers, dict) or set(answers) != {"text", "answer_start"}:
        return 'field \'answers\': must be {"text": [...], "answer_start": [...]}'
    texts, starts = answers["text"], answers["answer_start"]
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        return "field 'answers': text and answer_start must be lists of the same length"
    context = record["context"]
    for i, (text, start) in enumerate(zip(texts, starts)):
        if not isinstance(text, str) or not text.strip():
            return f"field 'answers': text {i} must be a non-empty string, got {short(text, 40)}"
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            return f"field 'answers': answer_start {i} must be a non-negative integer, got {short(start, 40)}"
        if context[start : start + len(text)] != text:
            return (
                f"field 'answers': text {i} {short(text, 40)} is not in the context at answer_start {start} "
                f"(found {short(context[start : start + len(text)], 40)})"
            )
    return None


def _check_multiple_choice(record) -> str | None:
    problem = _text(record, "question", empty_ok=True)
    if problem:
        return problem
    choices = record["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        return f"field 'choices': must be a list of at least 2 strings, got {short(choices, 40)}"
    for i, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            return f"field 'choices': choice {i} must be a non-empty string, got {short(choice, 40)}"
    label = record["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
        last = len(choices) - 1
        return f"field 'label': must be the index of the right choice (0 to {last}), got {short(label, 40)}"
    return None


def _check_language_modelling(record) -> str | None:
    return _text(record, "text")


_CHECKS = {
    "text-classification": _check_text_classification,
    "token-classification": _check_token_classification,
    "question-answering": _check_question_answering,
    "multiple-choice": _check_multiple_choice,
    "masked-lm": _check_language_modelling,
    "causal-lm": _check_language_modelling,
}
