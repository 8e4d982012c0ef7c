"""Records to model inputs and targets for each fine-tuning task (numpy, the project's tokenizer).

The result, a `TaskData`, is everything a framework's trainer needs: padded feature arrays, the
records they came from and what evaluation reads back (label names, QA windows).
"""

from __future__ import annotations

import numpy as np

from ..errors import short
from ..modeling_utils import IGNORE_INDEX
from .data import DataError, FinetuningError, check_examples, check_task, where
from .question_answering import prepare_question_answering
from .task_data import TaskData, pad_rows


def label_maps(task: str, examples) -> tuple[dict[int, str] | None, str | None]:
    """(id2label, problem_type) the records imply: sorted string labels (or tags) become the ids;
    numeric text-classification labels are regression (no names)."""
    check_task(task)
    if task == "text-classification":
        labels = [record["label"] for record in examples]
        if all(isinstance(label, str) for label in labels):
            return dict(enumerate(sorted(set(labels)))), "single_label_classification"
        return None, "regression"
    if task == "token-classification":
        return dict(enumerate(sorted({tag for record in examples for tag in record["tags"]}))), None
    return None, None


def prepare(task, examples, tokenizer, *, max_length=128, doc_stride=64, label2id=None) -> TaskData:
    """The `TaskData` of `examples` (as `read_examples` gives them). `label2id` is the training
    set's mapping, for a validation set; without it the mapping comes from `examples`."""
    check_task(task)
    check_examples(task, examples)
    examples = list(examples)
    _check_int("max_length", max_length, tokenizer.num_special_tokens_to_add(pair=True) + 1)
    _check_int("doc_stride", doc_stride, 0)
    if task == "question-answering":
        return prepare_question_answering(examples, tokenizer, max_length, doc_stride)
    if task == "text-classification":
        return _text_classification(examples, tokenizer, max_length, label2id)
    if task == "token-classification":
        return _token_classification(examples, tokenizer, max_length, label2id)
    if task == "multiple-choice":
        return _multiple_choice(examples, tokenizer, max_length)
    return _language_modelling(task, examples, tokenizer, max_length)


def _check_int(name: str, value, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise FinetuningError(f"{name} must be an integer of at least {minimum}, got {short(value, 40)}")
    return int(value)


def _checked_label2id(task: str, examples, label2id) -> tuple[dict[int, str] | None, str | None]:
    """(id2label, problem_type) from the training mapping `label2id`, or from `examples`."""
    id2label, problem_type = label_maps(task, examples)
    if label2id is None:
        return id2label, problem_type
    if not isinstance(label2id, dict) or sorted(label2id.values()) != list(range(len(label2id))):
        raise FinetuningError(f"label2id must map each label to one of 0..n-1, got {short(label2id, 80)}")
    if id2label is None:
        raise DataError(
            f"{where(examples[0], 0)}: field 'label': numbers (regression) but the training labels are "
            "strings (classes)"
        )
    return {i: name for name, i in label2id.items()}, problem_type


def _label_id(label2id: dict[str, int], label: str, record, index: int, field: str) -> int:
    if label not in label2id:
        known = ", ".join(sorted(label2id))
        raise DataError(
            f"{where(record, index)}: field {field!r}: {short(label, 40)} is not a label of the training "
            f"data ({short(known, 100)})"
        )
    return label2id[label]


def _inputs(rows: list[list[int]], tokenizer) -> dict[str, np.ndarray]:
    return {
        "input_ids": pad_rows(rows, tokenizer.pad_token_id),
        "attention_mask": pad_rows([[1] * len(row) for row in rows], 0),
    }


def _text_classification(examples, tokenizer, max_length, label2id) -> TaskData:
    id2label, problem_type = _checked_label2id("text-classification", examples, label2id)
    rows = [
        tokenizer(record["text"], record.get("text_pair"), truncation=True, max_length=max_length)[
            "input_ids"
        ]
        for record in examples
    ]
    features = _inputs(rows, tokenizer)
    if problem_type == "regression":
        features["labels"] = np.array([record["label"] for record in examples], dtype=np.float32)
    else:
        names = {name: i for i, name in id2label.items()}
        features["labels"] = np.array(
            [_label_id(names, r["label"], r, i, "label") for i, r in enumerate(examples)], dtype=np.int64
        )
    return TaskData(
        "text-classification", features, examples, np.arange(len(examples)), None, id2label, problem_type
    )


def _token_classification(examples, tokenizer, max_length, label2id) -> TaskData:
    id2label, _ = _checked_label2id("token-classification", examples, label2id)
    names = {name: i for i, name in id2label.items()}
    rows, labels, words = [], [], []
    for index, record in enumerate(examples):
        encoding = tokenizer(
            record["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
        )
        word_ids = encoding.word_ids()
        present = [w for w in word_ids if w is not None]
        # A word with no pieces would lose its tag without a trace; truncation only cuts the end.
        empty = sorted(set(range(max(present, default=-1) + 1)) - set(present))
        if empty or not present:
            word = empty[0] if empty else 0
            raise DataError(
                f"{where(record, index)}: field 'tokens': word {word} "
                f"({short(record['tokens'][word], 40)}) has no tokens"
            )
        # The tag goes on the first piece of each word; the others (and <s>, </s>) are ignored.
        row_labels, previous = [], None
        for word in word_ids:
            first = word is not None and word != previous
            tag = record["tags"][word] if first else None
            row_labels.append(_label_id(names, tag, record, index, "tags") if first else IGNORE_INDEX)
            previous = word
        rows.append(encoding["input_ids"])
        labels.append(row_labels)
        words.append([-1 if w is None else w for w in word_ids])
    features = _inputs(rows, tokenizer)
    features["labels"] = pad_rows(labels, IGNORE_INDEX)
    return TaskData(
        "token-classification",
        features,
        examples,
        np.arange(len(examples)),
        pad_rows(words, -1),
        id2label,
        None,
    )


def _multiple_choice(examples, tokenizer, max_length) -> TaskData:
    rows = [
        tokenizer(record["question"], choice, truncation=True, max_length=max_length)["input_ids"]
        for record in examples
        for choice in record["choices"]
    ]
    choices = len(examples[0]["choices"])
    features = {
        key: value.reshape(len(examples), choices, -1) for key, value in _inputs(rows, tokenizer).items()
    }
    features["labels"] = np.array([record["label"] for record in examples], dtype=np.int64)
    return TaskData("multiple-choice", features, examples, np.arange(len(examples)))


def _language_modelling(task, examples, tokenizer, max_length) -> TaskData:
    # A long text is cut into consecutive rows rather than truncated: no text is dropped.
    body = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    rows, owner = [], []
    for index, record in enumerate(examples):
        ids = tokenizer(record["text"], add_special_tokens=False)["input_ids"]
        if not ids:
            raise DataError(f"{where(record, index)}: field 'text': has no tokens")
        for start in range(0, len(ids), body):
            rows.append(tokenizer.build_inputs_with_special_tokens(ids[start : start + body]))
            owner.append(index)
    features = _inputs(rows, tokenizer)
    if task == "causal-lm":
        # The model shifts the labels itself; padding is left out of the loss.
        features["labels"] = np.where(features["attention_mask"] == 1, features["input_ids"], IGNORE_INDEX)
    return TaskData(task, features, examples, np.array(owner, dtype=np.int64))
