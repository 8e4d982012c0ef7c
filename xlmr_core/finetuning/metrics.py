"""Evaluation metrics of each fine-tuning task, from the model's outputs on a `TaskData`.

Text classification: accuracy (regression: mse). Token classification: entity-level precision,
recall and F1 over IOB2 tags as seqeval counts them in its default mode, plus token accuracy.
Question answering: SQuAD exact match and F1 (0-100, as the SQuAD script), the answer picked by the
question-answering pipeline's own extraction. Multiple choice: accuracy. Language modelling:
perplexity. Every task also gives "loss", the mean of the trainer's per-batch evaluation losses.
"""

from __future__ import annotations

import collections
import math
import re
import string

import numpy as np

from ..modeling_utils import IGNORE_INDEX
from ..pipelines.question_answering import QuestionAnsweringPipeline, extract_answers
from .data import FinetuningError, check_task
from .task_data import TaskData


def metrics(task: str, data: TaskData, outputs: dict[str, np.ndarray], losses) -> dict[str, float]:
    """The task's metrics for `outputs` (the model's logits for every row of `data`, in order;
    `start_logits` / `end_logits` for question answering) and the evaluation `losses`."""
    check_task(task)
    if task != data.task:
        raise FinetuningError(f"metrics for {task} were asked of {data.task} data")
    losses = [float(loss) for loss in losses]
    if not losses:
        raise FinetuningError("metrics need the evaluation losses (none were given)")
    if not all(math.isfinite(loss) for loss in losses):
        raise FinetuningError(
            f"an evaluation loss is not finite ({[x for x in losses if not math.isfinite(x)][0]})"
        )
    result = {"loss": float(np.mean(losses))}
    if task in ("masked-lm", "causal-lm"):
        result["perplexity"] = math.exp(result["loss"])
        return result
    names = ("start_logits", "end_logits") if task == "question-answering" else ("logits",)
    arrays = {name: _rows(outputs, name, len(data)) for name in names}
    labels = data.features.get("labels")
    if task == "text-classification" and data.problem_type == "regression":
        result["mse"] = float(np.mean((arrays["logits"].reshape(len(data), -1)[:, 0] - labels) ** 2))
    elif task in ("text-classification", "multiple-choice"):
        _check_classes(arrays["logits"], labels, data)
        result["accuracy"] = float(np.mean(arrays["logits"].argmax(-1) == labels))
    elif task == "token-classification":
        result.update(_token_classification(data, arrays["logits"]))
    else:
        result.update(_question_answering(data, arrays["start_logits"], arrays["end_logits"]))
    return result


def _rows(outputs, name: str, count: int) -> np.ndarray:
    if not isinstance(outputs, dict) or name not in outputs:
        raise FinetuningError(f"metrics need the model's {name} in outputs")
    array = np.asarray(outputs[name], dtype=np.float32)
    if array.ndim == 0 or array.shape[0] != count:
        raise FinetuningError(f"outputs[{name!r}] has shape {array.shape}; the data has {count} rows")
    return array


def _check_classes(logits: np.ndarray, labels: np.ndarray, data: TaskData) -> None:
    classes = len(data.id2label) if data.id2label is not None else data.features["input_ids"].shape[1]
    if logits.shape != (len(labels), classes):
        raise FinetuningError(
            f"outputs['logits'] has shape {logits.shape}; expected {(len(labels), classes)} for {data.task}"
        )


# ---------------------------------------------------------------------------------- entities


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """The (type, first, last) entities of one IOB2 sentence as seqeval's default mode reads them:
    an entity starts at B-, or at an I- that does not continue an entity of its type, and ends
    before O, B- or a change of type."""
    found, current = [], None
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        if current is not None and (prefix in ("O", "B") or kind != current[0]):
            found.append((current[0], current[1], i - 1))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current = (kind, i)
    return found


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences (0 where undefined, as seqeval)."""
    true = {(s, *e) for s, tags in enumerate(gold) for e in entities(tags)}
    pred = {(s, *e) for s, tags in enumerate(predicted) for e in entities(tags)}
    correct = len(true & pred)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _token_classification(data: TaskData, logits: np.ndarray) -> dict[str, float]:
    # The words scored are those whose first piece carries a label (truncation may cut the rest).
    labels = data.features["labels"]
    if logits.ndim != 3 or logits.shape[1] < labels.shape[1] or logits.shape[2] != len(data.id2label):
        raise FinetuningError(
            f"outputs['logits'] has shape {logits.shape}; expected "
            f"[{len(data)}, {labels.shape[1]}, {len(data.id2label)}] (rows, tokens, labels)"
        )
    predicted_ids = logits[:, : labels.shape[1]].argmax(-1)
    gold, predicted = [], []
    for row_labels, row_predicted in zip(labels, predicted_ids):
        kept = row_labels != IGNORE_INDEX
        gold.append([data.id2label[int(i)] for i in row_labels[kept]])
        predicted.append([data.id2label[int(i)] for i in row_predicted[kept]])
    scores = entity_scores(gold, predicted)
    kept = labels != IGNORE_INDEX
    scores["accuracy"] = float(np.mean(predicted_ids[kept] == labels[kept]))
    return scores


# ---------------------------------------------------------------------------------- SQuAD


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_scores(prediction: str, answers: list[str]) -> tuple[float, float]:
    """(exact match, F1) of `prediction` against the best of `answers`, each 0 or 1 / 0..1. No
    answers (an unanswerable question) counts the empty prediction as right, as SQuAD v2 does."""
    answers = answers or [""]
    exact = max(float(normalize_answer(prediction) == normalize_answer(a)) for a in answers)
    return exact, max(_f1(prediction, a) for a in answers)


def _f1(prediction: str, answer: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _question_answering(data: TaskData, start_logits, end_logits) -> dict[str, float]:
    options = dict(QuestionAnsweringPipeline.defaults, top_k=1)
    # Unanswerable records in the data: the "no answer" slot competes, as the pipeline's option.
    options["handle_impossible_answer"] = any(not r["answers"]["text"] for r in data.examples)
    windows_of = collections.defaultdict(list)
    for row, example in enumerate(data.feature_to_example):
        windows_of[int(example)].append(row)
    exact = f1 = 0.0
    for index, record in enumerate(data.examples):
        rows = windows_of[index]
        lengths = [len(data.offsets[r]["offsets"]) for r in rows]
        answer = extract_answers(
            record["context"],
            [data.features["input_ids"][r, :n] for r, n in zip(rows, lengths)],
            [data.offsets[r] for r in rows],
            [
                {"start_logits": start_logits[r, :n], "end_logits": end_logits[r, :n]}
                for r, n in zip(rows, lengths)
            ],
            int(data.features["input_ids"][rows[0], 0]),  # every window starts with <s>
            options,
        )
        score = squad_scores(answer[0]["answer"] if answer else "", record["answers"]["text"])
        exact, f1 = exact + score[0], f1 + score[1]
    count = len(data.examples)
    return {"exact_match": 100.0 * exact / count, "f1": 100.0 * f1 / count}
