"""Fine-tuning metrics against hand-worked values: seqeval's default-mode entities over IOB2, SQuAD
exact match and F1, accuracy, mse and perplexity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xlmr_core import XLMRobertaTokenizerFast
from xlmr_core.finetuning import (
    FinetuningError,
    TaskData,
    entities,
    entity_scores,
    metrics,
    normalize_answer,
    prepare,
    squad_scores,
)
from xlmr_core.pretrained import BUNDLED_CHECKPOINT


@pytest.fixture(scope="module")
def tokenizer():
    return XLMRobertaTokenizerFast.from_pretrained(BUNDLED_CHECKPOINT)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
        (["I-PER", "I-PER", "O"], [("PER", 0, 1)]),  # an I- without a B- starts an entity
        (["O", "I-MISC", "B-MISC", "I-MISC"], [("MISC", 1, 1), ("MISC", 2, 3)]),
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # a change of type ends one
        (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),
        (["O", "O"], []),
        (["B-A-B", "I-A-B"], [("A-B", 0, 1)]),  # a type may hold a dash
    ],
)
def test_entities_as_seqeval_reads_them(tags, expected):
    assert entities(tags) == expected


def test_entity_scores_are_micro_averaged_over_sentences():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG"], ["I-ORG"]]
    predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG"], ["O"]]
    # true: PER 0-1, LOC 3, ORG, ORG (entities never cross sentences); predicted: PER 0-0, LOC 3, ORG.
    # correct: LOC, ORG in sentence 1 -> precision 2/3, recall 2/4, F1 = 2pr/(p+r) = 4/7.
    scores = entity_scores(gold, predicted)
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 1 / 2, "f1": 4 / 7})
    assert entity_scores([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize(
    ("prediction", "answers", "exact", "f1"),
    [
        ("The Cat!", ["cat"], 1.0, 1.0),
        ("the cat sat", ["cat sat on"], 0.0, 0.8),  # "cat sat" vs "cat sat on": p 1, r 2/3
        ("sat on", ["cat sat", "mat"], 0.0, 0.5),  # best of the answers: 1 common of 2 and 2
        ("dog", ["cat"], 0.0, 0.0),
        ("", [], 1.0, 1.0),  # unanswerable, answered as such
        ("cat", [], 0.0, 0.0),
    ],
)
def test_squad_scores(prediction, answers, exact, f1):
    assert squad_scores(prediction, answers) == pytest.approx((exact, f1))


def test_normalize_answer():
    assert normalize_answer("  An  apple, THE pear. a") == "apple pear"


def data_of(task, features, rows, **extra):
    return TaskData(task, features, [{}] * rows, np.arange(rows), **extra)


def test_text_classification_accuracy_and_loss():
    data = data_of("text-classification", {"labels": np.array([0, 1, 1, 0])}, 4, id2label={0: "a", 1: "b"})
    logits = np.array([[2, 1], [0, 3], [5, 1], [1, 0]], np.float32)  # predicts 0, 1, 0, 0
    assert metrics("text-classification", data, {"logits": logits}, [0.5, 1.5]) == {
        "loss": 1.0,
        "accuracy": 0.75,
    }


def test_regression_mse():
    data = data_of(
        "text-classification", {"labels": np.array([1.0, 0.0], np.float32)}, 2, problem_type="regression"
    )
    result = metrics("text-classification", data, {"logits": np.array([[0.5], [-1.0]])}, [1.0])
    assert result == pytest.approx({"loss": 1.0, "mse": (0.25 + 1.0) / 2})


def test_multiple_choice_accuracy():
    features = {"input_ids": np.zeros((3, 2, 4), np.int64), "labels": np.array([1, 0, 1])}
    logits = np.array([[0, 1], [0, 1], [3, 4]], np.float32)
    assert metrics("multiple-choice", data_of("multiple-choice", features, 3), {"logits": logits}, [2.0])[
        "accuracy"
    ] == pytest.approx(2 / 3)


@pytest.mark.parametrize("task", ["masked-lm", "causal-lm"])
def test_language_model_perplexity_is_exp_of_the_mean_loss(task):
    result = metrics(task, data_of(task, {}, 1), {}, [1.0, 2.0, 3.0])
    assert result == pytest.approx({"loss": 2.0, "perplexity": math.exp(2.0)})


def test_a_nan_or_missing_loss_and_misshapen_outputs_are_errors():
    data = data_of("text-classification", {"labels": np.array([0, 1])}, 2, id2label={0: "a", 1: "b"})
    with pytest.raises(FinetuningError, match="not finite"):
        metrics("text-classification", data, {"logits": np.zeros((2, 2))}, [1.0, float("nan")])
    with pytest.raises(FinetuningError, match="evaluation losses"):
        metrics("text-classification", data, {"logits": np.zeros((2, 2))}, [])
    with pytest.raises(FinetuningError, match=r"has shape \(3, 2\); the data has 2 rows"):
        metrics("text-classification", data, {"logits": np.zeros((3, 2))}, [1.0])
    with pytest.raises(FinetuningError, match=r"expected \(2, 2\)"):
        metrics("text-classification", data, {"logits": np.zeros((2, 3))}, [1.0])
    with pytest.raises(FinetuningError, match="model's logits"):
        metrics("text-classification", data, {"start_logits": np.zeros((2, 2))}, [1.0])


def test_token_classification_scores_words_by_their_first_piece(tokenizer):
    records = [
        {"tokens": ["Bonjour", "tout", "lemonde"], "tags": ["B-PER", "O", "B-LOC"]},
        {"tokens": ["tout", "Bonjour"], "tags": ["O", "I-PER"]},
    ]
    data = prepare("token-classification", records, tokenizer)
    assert data.id2label == {0: "B-LOC", 1: "B-PER", 2: "I-PER", 3: "O"}
    labels = data.features["labels"]
    # Predict every first piece right except row 0's lemonde (O instead of B-LOC); the other pieces
    # predict nonsense that must not count.
    predicted = np.where(labels >= 0, labels, 0)
    predicted[0, 7] = 3
    logits = np.eye(4, dtype=np.float32)[predicted]
    result = metrics("token-classification", data, {"logits": logits}, [0.3])
    # Gold entities: PER, LOC (row 0), PER (row 1, an I- start); predicted: PER, PER. 5 words, 4 right.
    assert result == pytest.approx(
        {"loss": 0.3, "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "accuracy": 0.8}
    )


QA = {
    "id": "a",
    "question": "Who?",
    "context": "The cat sat on the mat today",
    "answers": {"text": ["mat"], "answer_start": [19]},
}


def span_logits(data, spans):
    """Start/end logits that make each row's best span the token span `spans[row]` ((0, 0) = <s>)."""
    rows, length = data.features["input_ids"].shape
    start, end = np.zeros((rows, length), np.float32), np.zeros((rows, length), np.float32)
    for row, (s, e) in enumerate(spans):
        start[row, s] = end[row, e] = 10.0
    return {"start_logits": start, "end_logits": end}


def test_squad_metrics_read_answers_with_the_pipelines_extraction(tokenizer):
    second = {**QA, "id": "b", "answers": {"text": ["cat sat"], "answer_start": [4]}}
    data = prepare("question-answering", [QA, second], tokenizer, max_length=9, doc_stride=2)
    # Record a: window 7's tokens 6-7 are "▁ma t" -> " mat" (exact). Record b (rows 11-21): row 15's
    # tokens 6-7 are "at ▁on", widened to whole words "sat on": F1 against "cat sat" is 0.5.
    assert tokenizer.convert_ids_to_tokens(data.features["input_ids"][15, 5:8].tolist()) == ["s", "at", "▁on"]
    spans = [(0, 0)] * len(data)
    spans[7], spans[15] = (6, 7), (6, 7)
    result = metrics("question-answering", data, span_logits(data, spans), [1.0])
    assert result == pytest.approx({"loss": 1.0, "exact_match": 50.0, "f1": 75.0})


def test_squad_metrics_score_an_unanswerable_record_answered_with_nothing(tokenizer):
    unanswerable = {**QA, "id": "b", "answers": {"text": [], "answer_start": []}}
    data = prepare("question-answering", [QA, unanswerable], tokenizer, max_length=9, doc_stride=2)
    spans = [(0, 0)] * len(data)
    spans[7] = (6, 7)
    # Record a: " mat" outscores <s> in window 7. Record b: <s> everywhere -> "" -> right.
    assert metrics("question-answering", data, span_logits(data, spans), [1.0]) == pytest.approx(
        {"loss": 1.0, "exact_match": 100.0, "f1": 100.0}
    )
