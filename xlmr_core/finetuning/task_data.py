"""`TaskData`, what every task's preparation gives a trainer, and the row padding they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class TaskData:
    """A task's data ready for a trainer. `features` rows are padded to one length (multiple-choice:
    `[n, choices, length]`); `feature_to_example[i]` is the record of row i (QA windows and long
    language-modelling texts give a record several rows); `offsets` is what evaluation needs (QA: one
    window dict per row; token-classification: each token's word index, -1 outside words)."""

    task: str
    features: dict[str, np.ndarray]
    examples: list[dict]
    feature_to_example: np.ndarray
    offsets: Any = None
    id2label: dict[int, str] | None = None
    problem_type: str | None = None

    @property
    def label2id(self) -> dict[str, int] | None:
        """The inverse of `id2label` (pass it to `prepare` for the validation set)."""
        return None if self.id2label is None else {name: i for i, name in self.id2label.items()}

    def __len__(self) -> int:
        return len(self.feature_to_example)


def pad_rows(rows: list[list[int]], value: int, length: int | None = None) -> np.ndarray:
    """`rows` right-padded with `value` to one length (the longest, or `length`), as int64."""
    length = max(len(row) for row in rows) if length is None else length
    out = np.full((len(rows), length), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
