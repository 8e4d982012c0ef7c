"""Fill-mask, framework-neutral: read a masked-LM's logits (numpy) back into words, and
score a masked-LM on held-out text against a unigram-frequency baseline.

Every framework's model gives logits of shape [batch, length, vocab]; these helpers take
them as numpy so one definition serves torch, TF and Flax.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .modeling_utils import IGNORE_INDEX


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def top_predictions(tokenizer, input_ids, logits, top_k: int = 3) -> list[list[list[tuple[str, float]]]]:
    """For each text, for each `<mask>` in it: the `top_k` (token, probability) pairs.

    `input_ids` is [batch, length], `logits` [batch, length, vocab], both array-likes.
    Tokens are decoded text; a piece that decodes to nothing (the bare word marker) is
    shown as the piece itself.
    """
    input_ids = np.asarray(input_ids)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[:2] != input_ids.shape or logits.ndim != 3:
        raise ValueError(
            f"logits of shape {logits.shape} do not match input_ids of shape {input_ids.shape}: "
            "expected [batch, length, vocab]"
        )
    results = []
    for row_ids, row_logits in zip(input_ids, logits):
        masks = np.flatnonzero(row_ids == tokenizer.mask_token_id)
        row = []
        for position in masks:
            probabilities = _softmax(row_logits[position])
            best = np.argsort(-probabilities, kind="stable")[:top_k]
            row.append([(_shown(tokenizer, int(i)), float(probabilities[i])) for i in best])
        results.append(row)
    return results


def _shown(tokenizer, token_id: int) -> str:
    text = tokenizer.decode([token_id]).strip()
    return text or tokenizer.convert_ids_to_tokens(token_id)


@dataclass
class MaskedEvaluationSet:
    """Held-out texts with some tokens replaced by `<mask>`.

    `input_ids` / `attention_mask` are [n, length] (right-padded); `labels` holds the
    original id at each masked position and -100 elsewhere.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray

    @property
    def n_masked(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def masked_evaluation_set(
    tokenizer, texts: list[str], rate: float = 0.15, seed: int = 0, max_length: int | None = None
) -> MaskedEvaluationSet:
    """Mask `rate` of each text's ordinary tokens (at least one), chosen by a seeded RNG.

    Texts longer than `max_length` tokens (special tokens included) are truncated.
    The same texts, rate and seed always give the same set, so every framework and the
    baseline are scored on identical positions.
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be between 0 and 1, got {rate}")
    if not texts:
        raise ValueError("no texts to evaluate on")
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    encoded = [
        tokenizer.encode(text, truncation=max_length is not None, max_length=max_length) for text in texts
    ]
    length = max(len(ids) for ids in encoded)
    input_ids = np.full((len(texts), length), tokenizer.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(texts), length), dtype=np.int64)
    labels = np.full((len(texts), length), IGNORE_INDEX, dtype=np.int64)
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        candidates = [i for i, token in enumerate(ids) if token not in special]
        if not candidates:
            continue
        count = max(1, round(rate * len(candidates)))
        chosen = rng.choice(candidates, size=count, replace=False)
        labels[row, chosen] = input_ids[row, chosen]
        input_ids[row, chosen] = tokenizer.mask_token_id
    return MaskedEvaluationSet(input_ids, attention_mask, labels)


def masked_token_accuracy(logits, labels) -> float:
    """Fraction of masked positions (labels != -100) whose arg-max prediction is the label."""
    labels = np.asarray(labels)
    masked = labels != IGNORE_INDEX
    if not masked.any():
        raise ValueError("no masked positions in labels")
    predictions = np.asarray(logits).argmax(axis=-1)
    return float((predictions[masked] == labels[masked]).mean())


def unigram_baseline_accuracy(labels, token_counts: Counter) -> float:
    """Accuracy of always predicting the most frequent token of `token_counts`."""
    labels = np.asarray(labels)
    masked = labels != IGNORE_INDEX
    if not masked.any():
        raise ValueError("no masked positions in labels")
    most_frequent, _ = token_counts.most_common(1)[0]
    return float((labels[masked] == most_frequent).mean())
