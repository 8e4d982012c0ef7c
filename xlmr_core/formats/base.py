"""What every format shares: lazy tensors, the errors, and keeping messages to one short line."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
# Dimensions per tensor that any format may declare; real weights have at most 2.
MAX_DIMENSIONS = 8
# Longest message of this layer; longer library text is cut (the rule of one short line).
MAX_MESSAGE = 300
# JSON headers, indexes and configs nest a few levels; deeper nesting is refused before `json`
# (whose parser recurses) sees it.
MAX_JSON_DEPTH = 64
# Bytes scanned at a time by `json_nesting_depth`: its memory is a small multiple of this.
_SCAN_BLOCK = 1 << 18


class OneLineError:
    """Mixed into the project's errors: the message is kept to one line of at most `MAX_MESSAGE`
    characters whatever went into it (a path, a tensor name, a library's text)."""

    def __init__(self, message="", *args):
        super().__init__(clip(message, MAX_MESSAGE), *args)


class CheckpointError(OneLineError, ValueError):
    """A weights file is corrupt, truncated, refused, or disagrees with what it should hold."""


class UnsupportedCheckpointError(CheckpointError):
    """A file of a kind (or a variant of a format) this project does not read."""


class CheckpointShapeError(CheckpointError):
    """A tensor's shape disagrees with the model or the config."""


class MissingDependencyError(ImportError):
    """Reading or writing a format needs a library that is not installed (the message names the extra)."""


def clip(text: str, limit: int = 80) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(value, limit: int = 80) -> str:
    """`repr(value)` on one line, cut to `limit` characters: input never makes a message unbounded."""
    return clip(repr(value), limit)


def reason(error: BaseException, limit: int = 120) -> str:
    """The first line of a library's error text, cut to `limit` characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_nesting_depth(raw: bytes | str) -> int:
    """Deepest bracket nesting of a JSON text, counted outside strings.

    One pass over fixed-size blocks, in time linear in the text and memory bounded by the block
    (a 100 MB header holding one long string costs a few MB): within a block only the positions
    of quotes, backslashes and brackets are kept. A quote ends or starts a string unless an odd
    run of backslashes precedes it, which is exact for any valid JSON (text that is not JSON is
    refused by the parser that comes next)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if b"[" not in raw and b"{" not in raw:
        return 0
    depth = deepest = 0
    in_string = False  # whether the text before the block ends inside a string
    slashes = 0  # backslashes that end the text before the block
    for start in range(0, len(raw), _SCAN_BLOCK):
        block = np.frombuffer(raw, dtype=np.uint8, count=min(_SCAN_BLOCK, len(raw) - start), offset=start)
        quotes = np.flatnonzero(block == 0x22)
        plain = np.flatnonzero(block != 0x5C)  # every position but a backslash
        if quotes.size:
            # The last position before each quote that is no backslash; the run between is escapes.
            before = np.searchsorted(plain, quotes) - 1
            previous = np.where(before >= 0, plain[np.maximum(before, 0)], -1 - slashes)
            quotes = quotes[(quotes - previous - 1) % 2 == 0]
        slashes = len(block) - 1 - int(plain[-1]) if plain.size else slashes + len(block)
        opening = np.flatnonzero((block == 0x5B) | (block == 0x7B))
        closing = np.flatnonzero((block == 0x5D) | (block == 0x7D))
        brackets = np.concatenate([opening, closing])
        if brackets.size:
            steps = np.concatenate([np.ones(opening.size, np.int64), -np.ones(closing.size, np.int64)])
            order = np.argsort(brackets, kind="stable")
            brackets, steps = brackets[order], steps[order]
            # A bracket is inside a string when an odd number of quotes (plus the carried state) precede it.
            inside = (np.searchsorted(quotes, brackets) + in_string) % 2 == 1
            levels = np.cumsum(steps[~inside]) + depth
            if levels.size:
                deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        in_string = bool((quotes.size + in_string) % 2)
    return deepest


def parse_json(raw: bytes, where: str, error: type[Exception], max_depth: int = MAX_JSON_DEPTH):
    """`json.loads` of untrusted bytes: UTF-8, nested at most `max_depth` deep, else `error(where: ...)`."""
    import json

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{where}: not UTF-8 text (byte {err.start} is invalid)") from None
    if json_nesting_depth(raw) > max_depth:
        raise error(f"{where}: JSON nested more than {max_depth} levels deep") from None
    try:
        return json.loads(text)
    except RecursionError:  # only reachable through a very deep stack on entry
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as err:
        raise error(f"{where}: not valid JSON ({clip(err, 80)})") from None


def require(module: str, what: str, extra: str):
    """Import `module`, or raise `MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{what} needs {module}: pip install 'xlmr[{extra}]'") from None


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
