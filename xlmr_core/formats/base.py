"""What every format shares: lazy tensors, header shapes, JSON parsing and array writing."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from ..errors import (  # noqa: F401 - re-exported: the format modules raise these
    MAX_MESSAGE,
    CheckpointError,
    CheckpointShapeError,
    MissingDependencyError,
    OneLineError,
    UnsupportedCheckpointError,
    clip,
    reason,
    require,
    short,
)
from ..json_text import MAX_JSON_DEPTH, json_nesting_depth, parse_json  # noqa: F401 - re-exported

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
# Dimensions per tensor that any format may declare; real weights have at most 2.
MAX_DIMENSIONS = 8


def checked_shape(shape, where: str) -> tuple[int, ...]:
    """A shape read from a file header: a short list of non-negative ints, or `CheckpointError`."""
    if not isinstance(shape, (list, tuple)):
        raise CheckpointError(f"{where}: shape {short(shape)} is not a list of sizes")
    if len(shape) > MAX_DIMENSIONS:
        raise CheckpointError(f"{where}: shape has {len(shape)} dimensions (at most {MAX_DIMENSIONS})")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(f"{where}: shape {short(shape)} holds something not a size >= 0")
    return tuple(shape)


@dataclass
class LazyTensor:
    """A tensor whose shape and dtype are known and whose data is read by `load()`."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray]
    # `rows(start, stop)` reads rows [start, stop) alone, where the format allows it.
    rows: Callable[[int, int], np.ndarray] | None = None
    # `read_into(out)` fills a C-ordered array of this shape and dtype straight from the file
    # (no intermediate copy), where the format allows it.
    read_into: Callable[[np.ndarray], None] | None = None

    def load_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows `[start, stop)` of the tensor, reading only those where the file allows."""
        return self.rows(start, stop) if self.rows is not None else self.load()[start:stop]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def T(self) -> LazyTensor:  # noqa: N802 - the numpy spelling, so weight_mapping can transpose it
        load = self.load
        return LazyTensor(self.shape[::-1], self.dtype, lambda: load().T)

    def cast(self, dtype) -> LazyTensor:
        """The same tensor in floating `dtype`; integer and bool tensors are left as they are."""
        dtype = np.dtype(dtype)
        is_float = self.dtype.kind == "f" or self.dtype == BFLOAT16
        if dtype == self.dtype or not is_float:
            return self
        load, rows = self.load, self.rows
        cast_rows = None if rows is None else (lambda start, stop: rows(start, stop).astype(dtype))
        return LazyTensor(self.shape, dtype, lambda: load().astype(dtype), cast_rows)

    def checked_load(self, name: str) -> np.ndarray:
        """`load()`, making sure the data is what the header promised."""
        array = np.asarray(self.load())
        if tuple(array.shape) != tuple(self.shape) or array.dtype != self.dtype:
            raise CheckpointError(
                f"tensor {name!r} should be {self.dtype} {list(self.shape)}, "
                f"the file gives {array.dtype} {list(array.shape)}"
            )
        return array


def eager(array) -> LazyTensor:
    """A `LazyTensor` over an array already in memory (or memory-mapped)."""
    array = np.asarray(array)
    return LazyTensor(tuple(array.shape), np.dtype(array.dtype), lambda: array)


def as_lazy(tensors) -> dict[str, LazyTensor]:
    """`{name: LazyTensor}` from a mapping of arrays, `LazyTensor`s or both."""
    return {name: t if isinstance(t, LazyTensor) else eager(t) for name, t in tensors.items()}


def write_array(f, array: np.ndarray) -> None:
    """Append `array`'s bytes to `f`, little-endian and C-ordered."""
    little = array if array.dtype.byteorder in "<|=" else array.astype(array.dtype.newbyteorder("<"))
    f.write(np.ascontiguousarray(little).reshape(-1).view(np.uint8).data)
