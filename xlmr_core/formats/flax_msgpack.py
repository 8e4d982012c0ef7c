"""`flax_model.msgpack`: the parameter tree as `flax.serialization` writes it.

Flax writes the nested parameter dict with msgpack; each array is extension type 1 holding
the msgpack triple (shape, dtype name, raw bytes), and arrays over 1 GiB are split into
chunks. The subset of msgpack this needs is parsed here straight from the file (no
`msgpack` or `flax` needed), recording where each array's bytes are so that they are read
only on `load()`; the writer emits the same bytes as `flax.serialization.to_bytes`. Paths go
through the flax rules of `xlmr_core.weight_mapping`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..weight_mapping import to_canonical_state, to_framework_state
from .base import BFLOAT16, CheckpointError, LazyTensor, checked_shape, reason, short, write_array

FILE_NAME = "flax_model.msgpack"


_FLAX_ARRAY_EXT = 1
_FLAX_CHUNK_MARK = "__msgpack_chunked_array__"
FLAX_MAX_CHUNK_BYTES = 2**30  # flax splits larger arrays into chunks


@dataclass
class _ArraySpan:
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int


class _MsgpackReader:
    def __init__(self, file, path: Path):
        self.file = file
        self.path = path
        self.size = path.stat().st_size

    def _read(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise CheckpointError(f"{self.path}: truncated msgpack file")
        return data

    def _unpack(self, fmt: str):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _skip(self, n: int) -> int:
        start = self.file.tell()
        if start + n > self.size:
            raise CheckpointError(f"{self.path}: truncated msgpack file (a value ends past the file)")
        self.file.seek(n, os.SEEK_CUR)
        return start

    def value(self, depth: int = 0):
        if depth > 64:
            raise CheckpointError(f"{self.path}: msgpack nesting too deep")
        byte = self._read(1)[0]
        if byte <= 0x7F:
            return byte
        if byte >= 0xE0:
            return byte - 0x100
        if 0x80 <= byte <= 0x8F:
            return self._map(byte & 0x0F, depth)
        if 0x90 <= byte <= 0x9F:
            return [self.value(depth + 1) for _ in range(byte & 0x0F)]
        if 0xA0 <= byte <= 0xBF:
            return self._str(byte & 0x1F)
        fixed = {
            0xC0: lambda: None,
            0xC2: lambda: False,
            0xC3: lambda: True,
            0xCA: lambda: self._unpack(">f"),
            0xCB: lambda: self._unpack(">d"),
            0xCC: lambda: self._unpack(">B"),
            0xCD: lambda: self._unpack(">H"),
            0xCE: lambda: self._unpack(">I"),
            0xCF: lambda: self._unpack(">Q"),
            0xD0: lambda: self._unpack(">b"),
            0xD1: lambda: self._unpack(">h"),
            0xD2: lambda: self._unpack(">i"),
            0xD3: lambda: self._unpack(">q"),
            0xD9: lambda: self._str(self._unpack(">B")),
            0xDA: lambda: self._str(self._unpack(">H")),
            0xDB: lambda: self._str(self._unpack(">I")),
            0xDC: lambda: [self.value(depth + 1) for _ in range(self._unpack(">H"))],
            0xDD: lambda: [self.value(depth + 1) for _ in range(self._unpack(">I"))],
            0xDE: lambda: self._map(self._unpack(">H"), depth),
            0xDF: lambda: self._map(self._unpack(">I"), depth),
            0xC4: lambda: self._bin(self._unpack(">B")),
            0xC5: lambda: self._bin(self._unpack(">H")),
            0xC6: lambda: self._bin(self._unpack(">I")),
            0xC7: lambda: self._ext(self._unpack(">B")),
            0xC8: lambda: self._ext(self._unpack(">H")),
            0xC9: lambda: self._ext(self._unpack(">I")),
            0xD4: lambda: self._ext(1),
            0xD5: lambda: self._ext(2),
            0xD6: lambda: self._ext(4),
            0xD7: lambda: self._ext(8),
            0xD8: lambda: self._ext(16),
        }
        if byte not in fixed:
            raise CheckpointError(f"{self.path}: invalid msgpack byte 0x{byte:02x}")
        return fixed[byte]()

    def _map(self, n: int, depth: int) -> dict:
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{self.path}: msgpack map key of type {type(key).__name__}")
            out[str(key)] = self.value(depth + 1)
        return out

    def _str(self, n: int) -> str:
        try:
            return self._read(n).decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.path}: msgpack string is not UTF-8") from None

    def _bin(self, n: int) -> tuple[int, int]:
        return self._skip(n), n

    def _ext(self, n: int):
        code = self._unpack(">b")
        end = self.file.tell() + n
        if code != _FLAX_ARRAY_EXT:
            raise CheckpointError(f"{self.path}: msgpack extension type {code} is not a Flax array")
        triple = self.value()
        try:
            shape, dtype_name, (offset, nbytes) = triple
            shape = checked_shape(shape, f"{self.path}: a Flax array")
            if not isinstance(dtype_name, str):
                raise TypeError
            dtype = BFLOAT16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
        except (TypeError, ValueError):
            raise CheckpointError(f"{self.path}: malformed Flax array entry") from None
        if (dtype.kind not in "fiub" and dtype != BFLOAT16) or min(shape, default=0) < 0:
            raise CheckpointError(f"{self.path}: Flax array of unsupported dtype {short(dtype_name, 30)}")
        if nbytes != math.prod(shape) * dtype.itemsize or self.file.tell() != end:
            raise CheckpointError(f"{self.path}: Flax array {list(shape)} {dtype_name} has {nbytes} bytes")
        return _ArraySpan(shape, dtype, offset)


def _flax_leaf(value, path: Path, name: str) -> LazyTensor:
    if isinstance(value, _ArraySpan):
        span = value
        row = math.prod(span.shape[1:])

        def rows(start, stop):
            count = (min(stop, span.shape[0]) - start) * row
            offset = span.offset + start * row * span.dtype.itemsize
            return np.fromfile(path, dtype=span.dtype, count=count, offset=offset).reshape(
                -1, *span.shape[1:]
            )

        return LazyTensor(
            span.shape,
            span.dtype,
            lambda: np.fromfile(
                path, dtype=span.dtype, count=math.prod(span.shape), offset=span.offset
            ).reshape(span.shape),
            rows if span.shape else None,
        )
    if isinstance(value, dict) and value.get(_FLAX_CHUNK_MARK) is True:
        try:
            shape = tuple(int(value["shape"][str(i)]) for i in range(len(value["shape"])))
            chunks = [value["chunks"][str(i)] for i in range(len(value["chunks"]))]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed chunked array {short(name)}") from None
        pieces = [_flax_leaf(chunk, path, name) for chunk in chunks]
        if not pieces or any(p.dtype != pieces[0].dtype for p in pieces):
            raise CheckpointError(
                f"{path}: chunked array {short(name)} has no chunks or chunks of mixed dtypes"
            )
        dtype = pieces[0].dtype
        if sum(p.nbytes for p in pieces) != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(f"{path}: chunks of {short(name)} do not add up to {list(shape)}")
        return LazyTensor(shape, dtype, lambda: np.concatenate([p.load() for p in pieces]).reshape(shape))
    raise CheckpointError(f"{path}: entry {short(name)} is not an array")


def read(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """Canonical lazy tensors of a `flax_model.msgpack`."""
    path = Path(path)
    with open(path, "rb") as f:
        reader = _MsgpackReader(f, path)
        tree = reader.value()
        if f.tell() != reader.size:
            raise CheckpointError(f"{path}: trailing bytes after the msgpack tree")
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path}: the msgpack file does not hold a parameter tree")
    flat: dict[str, LazyTensor] = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}/{key}" if prefix else key
            if isinstance(value, dict) and _FLAX_CHUNK_MARK not in value:
                walk(value, name)
            else:
                flat[name] = _flax_leaf(value, path, name)

    walk(tree, "")
    # Some trees are saved with the collection name on top.
    if set(tree) == {"params"}:
        flat = {name[len("params/") :]: tensor for name, tensor in flat.items()}
    try:
        return to_canonical_state(flat, "flax")  # renames, and transposes kernels lazily
    except KeyError as error:
        raise CheckpointError(f"{path}: {reason(error.args[0])}") from None


# ------------------------------------------------------------------ writing
def _mp_uint(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    for marker, fmt, limit in ((0xCC, ">B", 2**8), (0xCD, ">H", 2**16), (0xCE, ">I", 2**32)):
        if value < limit:
            return bytes([marker]) + struct.pack(fmt, value)
    return b"\xcf" + struct.pack(">Q", value)


def _mp_header(n: int, fix: int, fix_limit: int, markers: tuple[int, int, int]) -> bytes:
    if n < fix_limit:
        return bytes([fix | n])
    if markers[0] and n < 2**8:
        return bytes([markers[0]]) + struct.pack(">B", n)
    if n < 2**16:
        return bytes([markers[1]]) + struct.pack(">H", n)
    return bytes([markers[2]]) + struct.pack(">I", n)


def _mp_str(text: str) -> bytes:
    data = text.encode("utf-8")
    return _mp_header(len(data), 0xA0, 32, (0xD9, 0xDA, 0xDB)) + data


def _mp_map(n: int) -> bytes:
    return _mp_header(n, 0x80, 16, (0, 0xDE, 0xDF))


def _mp_array(n: int) -> bytes:
    return _mp_header(n, 0x90, 16, (0, 0xDC, 0xDD))


def _mp_ext_header(code: int, n: int) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if n in fixed:
        return bytes([fixed[n], code])
    for marker, fmt, limit in ((0xC7, ">B", 2**8), (0xC8, ">H", 2**16), (0xC9, ">I", 2**32)):
        if n < limit:
            return bytes([marker]) + struct.pack(fmt, n) + bytes([code])
    raise ValueError(f"msgpack extension of {n} bytes is too large")


def _write_flax_array(f, array: np.ndarray) -> None:
    # The bytes of flax.serialization's `ExtType(1, packb((shape, dtype.name, data)))`.
    shape = b"".join(_mp_uint(int(d)) for d in array.shape)
    nbytes = int(array.nbytes)
    bin_header = _mp_header(nbytes, 0, 0, (0xC4, 0xC5, 0xC6))
    prefix = _mp_array(3) + _mp_array(array.ndim) + shape + _mp_str(array.dtype.name) + bin_header
    f.write(_mp_ext_header(_FLAX_ARRAY_EXT, len(prefix) + nbytes) + prefix)
    write_array(f, array)


def _write_flax_leaf(f, array: np.ndarray) -> None:
    if array.nbytes <= FLAX_MAX_CHUNK_BYTES:
        _write_flax_array(f, array)
        return
    chunk = max(1, FLAX_MAX_CHUNK_BYTES // array.dtype.itemsize)
    flat = np.ascontiguousarray(array).reshape(-1)
    starts = range(0, flat.size, chunk)
    f.write(_mp_map(3) + _mp_str(_FLAX_CHUNK_MARK) + b"\xc3")
    f.write(_mp_str("shape") + _mp_map(array.ndim))
    for i, d in enumerate(array.shape):
        f.write(_mp_str(str(i)) + _mp_uint(int(d)))
    f.write(_mp_str("chunks") + _mp_map(len(starts)))
    for i, start in enumerate(starts):
        f.write(_mp_str(str(i)))
        _write_flax_array(f, flat[start : start + chunk])


def write(path: str | os.PathLike, tensors: Mapping[str, LazyTensor], progress=None) -> None:
    """Write canonical `tensors` as the reference's `flax_model.msgpack`, one at a time. Not atomic."""
    flax_state = to_framework_state(tensors, "flax")  # renames, and transposes linear weights lazily
    tree: dict = {}
    for flax_path in flax_state:
        *parents, leaf = flax_path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"Flax path {short(flax_path)} collides with another parameter")
        node[leaf] = flax_path

    with open(path, "wb") as f:

        def write(node):
            f.write(_mp_map(len(node)))
            for key, value in node.items():
                f.write(_mp_str(key))
                if isinstance(value, dict):
                    write(value)
                else:
                    tensor = flax_state[value]
                    _write_flax_leaf(f, tensor.checked_load(value))
                    if progress:
                        progress.advance(tensor.nbytes)

        write(tree)
