"""Input checks of the torch models: every argument named in the message that rejects it.

Wrong inputs fail here instead of deep inside an embedding lookup (a bare IndexError on
CPU, a device assert on GPU). Value checks are skipped while `torch.compile` traces.
"""

from __future__ import annotations

import torch

from xlmr_core.modeling_utils import check_index_range, check_labels_shape


def check_shape(tensor, expected: tuple[int, ...], name: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {tuple(expected)}")


def check_range(ids: torch.Tensor, size: int, name: str, ignore_index: int | None = None) -> None:
    """Every value of the integer tensor `ids` must be in [0, size) (or equal `ignore_index`)."""
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {ids.dtype}")
    if torch.compiler.is_compiling():
        return
    values = ids if ignore_index is None else ids[ids != ignore_index]
    if values.numel() == 0:
        return
    low, high = torch.aminmax(values)
    if ignore_index is None:
        check_index_range(name, int(low), int(high), size)
    elif low < 0 or high >= size:
        raise ValueError(
            f"{name} must be in [0, {size}) or {ignore_index} (ignored); "
            f"got values from {int(low)} to {int(high)}"
        )


def check_label_shapes(labels, shapes: list[tuple[int, ...]], name: str = "labels") -> None:
    """`labels` must have one of `shapes` (the first is the one named in the error)."""
    if tuple(labels.shape) not in [tuple(s) for s in shapes]:
        check_labels_shape(name, labels.shape, shapes[0])
