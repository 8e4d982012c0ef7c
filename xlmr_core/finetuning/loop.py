"""What the three fine-tuning trainers share around their framework's update step.

`xlmr_torch.finetuning`, `xlmr_tf.finetuning` and `xlmr_flax.finetuning` differ only in how
they run a step; the batches they train and evaluate on, the checks of each step's loss and the
way evaluation outputs are gathered into `metrics` live here, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ..modeling_utils import IGNORE_INDEX
from .data import FinetuningError

# The tokenizer contract (DESIGN.md): <s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last.
_UNK_TOKEN_ID = 3
# Padded positions of gathered logits: far below any real logit, so no argmax or span search
# picks them, and finite, so sums over them stay finite.
_PAD_LOGIT = -1e4
LANGUAGE_MODELLING = ("masked-lm", "causal-lm")


class TrainingError(FinetuningError):
    """Training cannot go on: a loss is NaN or infinite (the step is named)."""


def masking_options(task: str, config) -> dict:
    """`batches`'s masking arguments for masked LM (else none), from the model's config: `<mask>`
    is the last id and the special tokens are those the tokenizer contract fixes."""
    if task != "masked-lm":
        return {}
    mask = config.vocab_size - 1
    special = {config.bos_token_id, config.pad_token_id, config.eos_token_id, _UNK_TOKEN_ID, mask}
    return {
        "mask_token_id": mask,
        "vocab_size": config.vocab_size,
        "special_ids": tuple(sorted(i for i in special if i is not None)),
    }


def train_batches(data, config, batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """The endless, seeded, shuffled training batches every framework trains on."""
    from . import batches

    return batches(data, batch_size, seed, shuffle=True, **masking_options(data.task, config))


def eval_batches(data, config, batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """One pass over `data` in order (the last batch kept)."""
    from . import batches

    return batches(data, batch_size, seed, shuffle=False, **masking_options(data.task, config))


def bucketed(
    batch: dict[str, np.ndarray], pad_token_id: int, limit: int, smallest: int = 16
) -> dict[str, np.ndarray]:
    """`batch` right-padded to the next power-of-two length (at least `smallest`, at most
    `limit`), so that a compiler that specialises on shapes (`jax.jit`) compiles a handful of
    steps rather than one per batch length. Padding is masked out and ignored by the losses:
    the numbers are those of the trimmed batch."""
    mask = batch["attention_mask"]
    length = mask.shape[-1]
    target = min(max(smallest, 1 << (length - 1).bit_length()), max(limit, length))
    if target == length:
        return batch
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    padded = {}
    for name, value in batch.items():
        if value.shape != mask.shape:
            padded[name] = value
            continue
        width = [(0, 0)] * (value.ndim - 1) + [(0, target - length)]
        padded[name] = np.pad(value, width, constant_values=fill.get(name, 0))
    return padded


def checked_loss(loss, step: int, what: str = "training") -> float:
    """`loss` as a float; a NaN or infinite loss stops the run with the step named."""
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingError(
            f"the {what} loss at step {step} is {value}: lower --learning-rate or check the data"
        )
    return value


def output_names(task: str) -> tuple[str, ...]:
    """The model outputs `metrics` reads for `task` (none for the language models: loss only)."""
    if task == "question-answering":
        return ("start_logits", "end_logits")
    return () if task in LANGUAGE_MODELLING else ("logits",)


class EvaluationOutputs:
    """Gathers each evaluation batch's outputs and losses, then computes `metrics`.

    Batches are trimmed to their longest real row; the outputs are padded back to the
    features' length (with `_PAD_LOGIT`) so that row i lines up with feature row i.
    """

    def __init__(self, data):
        self.data = data
        self.losses: list[float] = []
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in output_names(data.task)}

    def add(self, outputs: dict, loss) -> None:
        """One batch: `outputs[name]` (arrays of any framework, converted here) and its loss."""
        self.losses.append(checked_loss(loss, len(self.losses), "evaluation"))
        for name, parts in self._parts.items():
            parts.append(np.asarray(outputs[name], dtype=np.float32))

    def metrics(self) -> dict[str, float]:
        from . import metrics

        length = self.data.features["input_ids"].shape[-1]
        gathered = {}
        for name, parts in self._parts.items():
            padded = []
            for part in parts:
                # Sequence axis: after batch (and choices) for per-token outputs; none for
                # classification logits ([batch, labels]) or multiple-choice ([batch, choices]).
                axis = 1 if self.data.task in ("token-classification", "question-answering") else None
                if axis is not None and part.shape[axis] < length:
                    width = [(0, 0)] * part.ndim
                    width[axis] = (0, length - part.shape[axis])
                    part = np.pad(part, width, constant_values=_PAD_LOGIT)
                padded.append(part)
            gathered[name] = np.concatenate(padded) if padded else np.zeros((0,), np.float32)
        return {k: float(v) for k, v in metrics(self.data.task, self.data, gathered, self.losses).items()}
