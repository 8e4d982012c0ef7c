"""The heads' losses, computed in float32 even for float16 / bfloat16 models."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xlmr_core.modeling_utils import IGNORE_INDEX, classification_problem_type

from .inputs import as_labels, check_label_shapes


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """Mean cross entropy of `[..., classes]` logits against `[...]` targets, skipping `ignore_index`."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=ignore_index
    )


def mean_squared_error(predictions: torch.Tensor, targets: torch.Tensor):
    return F.mse_loss(predictions.float(), targets.float())


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor):
    """Mean binary cross entropy of independent labels (multi-label classification)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def sequence_classification_loss(config, logits: torch.Tensor, labels: torch.Tensor):
    """The loss `config.problem_type` names; unset: regression for one label, single-label
    classification for integer labels, multi-label otherwise (decided per call, the config is
    left alone, unlike the reference)."""
    batch_size, num_labels = logits.shape
    # int64 / int32 labels mean single-label classification, as in the reference; so do
    # labels of any other integer dtype with one label per row (a multi-hot uint8 or bool
    # tensor `[batch, num_labels]` stays multi-label).
    integer = labels.dtype in (torch.long, torch.int) or (
        labels.dim() == 1 and not labels.is_floating_point() and labels.dtype != torch.bool
    )
    problem_type = classification_problem_type(config, integer)
    if problem_type == "regression":
        if num_labels == 1:
            check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
            return mean_squared_error(logits.squeeze(-1), labels.reshape(-1))
        check_label_shapes(labels, [(batch_size, num_labels)])
        return mean_squared_error(logits, labels)
    if problem_type == "single_label_classification":
        check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
        return cross_entropy(logits, as_labels(labels, num_labels, "labels", IGNORE_INDEX))
    check_label_shapes(labels, [(batch_size, num_labels)])
    return binary_cross_entropy(logits, labels)
