"""Score functions on numpy logits, in float64 so every framework's float32 logits read alike."""

from __future__ import annotations

import numpy as np

FUNCTIONS = ("softmax", "sigmoid", "none")


def softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def apply(function: str, logits) -> np.ndarray:
    """`function` ("softmax", "sigmoid" or "none") of `logits` over the last axis."""
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return np.asarray(logits, dtype=np.float64)


def default_function(config) -> str:
    """What a sequence classifier's scores are, as the reference decides it from the config:
    regression reads raw values, multi-label or one label a sigmoid, else a softmax."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def best_first(scores, k: int | None) -> np.ndarray:
    """Indices of `scores` from highest to lowest (ties keep index order), the first `k` (None: all)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if k is None else order[:k]
