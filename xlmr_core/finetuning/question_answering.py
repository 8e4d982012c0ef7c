"""Question answering: SQuAD records to overlapping windows with answer positions.

Windows are cut as the question-answering pipeline cuts them (the tokenizer's overflow with
`doc_stride` shared tokens, the question repeated in each), so that evaluation reads answers back
with the pipeline's own span search. A window that does not hold the whole answer, and every window
of an unanswerable record, points at `<s>` (index 0).
"""

from __future__ import annotations

import numpy as np

from .data import ArgumentError, DataError, FinetuningError, where
from .task_data import TaskData, pad_rows


def prepare_question_answering(examples, tokenizer, max_length: int, doc_stride: int) -> TaskData:
    """The `TaskData` of SQuAD records: one row per window, `start_positions` / `end_positions`."""
    _check_windows(examples, tokenizer, max_length, doc_stride)
    rows, starts, ends, windows, owner = [], [], [], [], []
    for index, record in enumerate(examples):
        question, context = record["question"], record["context"]
        try:
            encoding = tokenizer(
                question,
                context,
                truncation="only_second",
                max_length=max_length,
                stride=doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
        except NotImplementedError:
            raise FinetuningError(
                "question-answering needs character offsets: use XLMRobertaTokenizerFast"
            ) from None
        answer = _first_answer(record)
        for i, ids in enumerate(encoding["input_ids"]):
            in_context = np.array([s == 1 for s in encoding.sequence_ids(i)])
            offsets = encoding["offset_mapping"][i]
            start, end = _answer_tokens(offsets, in_context, answer)
            rows.append(list(ids))
            starts.append(start)
            ends.append(end)
            windows.append({"offsets": offsets, "words": encoding.word_ids(i), "in_context": in_context})
            owner.append(index)
    features = {
        "input_ids": pad_rows(rows, tokenizer.pad_token_id),
        "attention_mask": pad_rows([[1] * len(row) for row in rows], 0),
        "start_positions": np.array(starts, dtype=np.int64),
        "end_positions": np.array(ends, dtype=np.int64),
    }
    return TaskData("question-answering", features, examples, np.array(owner, dtype=np.int64), windows)


def _check_windows(examples, tokenizer, max_length: int, doc_stride: int) -> None:
    """Every question leaves room for context in a window, and `doc_stride` is smaller than the
    context tokens of every window that must be split (the tokenizer cannot step back further).

    A question too long is that record's fault (a `DataError` naming it); a stride too large for
    the smallest split window is the argument's (an `ArgumentError` naming `doc_stride`)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    smallest = None  # (context tokens per window, question tokens) of the tightest split window
    for index, record in enumerate(examples):
        question_tokens = len(tokenizer(record["question"], add_special_tokens=False)["input_ids"])
        per_window = max_length - question_tokens - specials
        if per_window < 1:
            raise DataError(
                f"{where(record, index)}: field 'question': {question_tokens} tokens leave no room for the "
                f"context in max_length={max_length}"
            )
        context_tokens = len(tokenizer(record["context"], add_special_tokens=False)["input_ids"])
        if context_tokens > per_window and (smallest is None or per_window < smallest[0]):
            smallest = (per_window, question_tokens)
    if smallest is not None and doc_stride >= smallest[0]:
        raise ArgumentError(
            "doc_stride",
            f"{doc_stride} must be smaller than {smallest[0]}, the context tokens that fit beside a "
            f"{smallest[1]}-token question in a window of max_length={max_length}",
        )


def _first_answer(record) -> tuple[int, int] | None:
    """The character span of the record's first answer (the one trained on), None if unanswerable."""
    answers = record["answers"]
    if not answers["text"]:
        return None
    start = answers["answer_start"][0]
    return start, start + len(answers["text"][0])


def _answer_tokens(offsets, in_context: np.ndarray, answer) -> tuple[int, int]:
    """(first, last) token of `answer` in one window, or (0, 0) (`<s>`) when the window does not hold
    all of it."""
    if answer is None:
        return 0, 0
    first_char, end_char = answer
    context = np.flatnonzero(in_context)
    if offsets[context[0]][0] > first_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    # The first token that ends after the answer starts, the last that starts before it ends.
    first = next(t for t in context if offsets[t][1] > first_char)
    last = next(t for t in context[::-1] if offsets[t][0] < end_char)
    return int(first), int(last)
