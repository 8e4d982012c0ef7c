"""The losses the heads use.

All in float32 whatever the compute dtype; a mean over zero labelled items is NaN, as in PyTorch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import IGNORE_INDEX, classification_problem_type


def cross_entropy(logits, labels, ignore_index: int | None = IGNORE_INDEX):
    """Mean token cross-entropy over labels that are not `ignore_index`."""
    logits = logits.astype(jnp.float32)
    valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe_labels = jnp.where(valid, labels, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe_labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.sum(valid)


def mse(predictions, targets):
    """Mean squared error."""
    return jnp.mean((predictions.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2)


def binary_cross_entropy_with_logits(logits, targets):
    """Mean binary cross-entropy of sigmoid(`logits`), in the numerically stable form."""
    x, y = logits.astype(jnp.float32), targets.astype(jnp.float32)
    return jnp.mean(jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))


def sequence_classification_loss(config: XLMRobertaConfig, logits, labels):
    """The loss `config.problem_type` names (decided from the labels' dtype when unset)."""
    problem_type = classification_problem_type(config, jnp.issubdtype(labels.dtype, jnp.integer))
    if problem_type == "regression":
        if logits.shape[-1] == 1:
            return mse(logits[:, 0], labels.reshape(-1))
        return mse(logits, labels)
    if problem_type == "single_label_classification":
        return cross_entropy(logits, labels.reshape(-1))
    return binary_cross_entropy_with_logits(logits, labels)


def question_answering_loss(start_logits, end_logits, start_positions, end_positions, real=None):
    """Mean of the start and end cross-entropies over `[batch, seq]` logits.

    Positions outside the sequence are clamped to its length and ignored. `real` (the
    attention mask of an unpadded call) makes padded positions no candidate span end, and
    a target there is ignored.
    """
    seq_length = start_logits.shape[1]
    start = jnp.clip(start_positions.reshape(-1), 0, seq_length)
    end = jnp.clip(end_positions.reshape(-1), 0, seq_length)
    if real is not None:
        real = real.astype(bool)
        start_logits = jnp.where(real, start_logits, -jnp.inf)
        end_logits = jnp.where(real, end_logits, -jnp.inf)
        padded_target = jnp.concatenate([~real, jnp.ones_like(real[:, :1])], axis=1)
        start = jnp.where(jnp.take_along_axis(padded_target, start[:, None], 1)[:, 0], seq_length, start)
        end = jnp.where(jnp.take_along_axis(padded_target, end[:, None], 1)[:, 0], seq_length, end)
    return (
        cross_entropy(start_logits, start, ignore_index=seq_length)
        + cross_entropy(end_logits, end, ignore_index=seq_length)
    ) / 2
