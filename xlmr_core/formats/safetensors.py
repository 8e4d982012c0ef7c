"""`model.safetensors`: 8-byte header length, a JSON header, then raw little-endian bytes.

The format is small enough to read and write here: reads validate every entry and offset
before touching data, writes stream one tensor at a time, bfloat16 is `ml_dtypes.bfloat16`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    BFLOAT16,
    MAX_JSON_DEPTH,
    CheckpointError,
    LazyTensor,
    checked_shape,
    json_nesting_depth,
    short,
    write_array,
)

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": BFLOAT16,
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

# The format's own reference caps the header at 100 MB; JSON nesting past this depth is no header.
MAX_HEADER_BYTES = 100_000_000
_MAX_JSON_DEPTH = MAX_JSON_DEPTH


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str], int]:
    """Parse and validate a safetensors header.

    Returns `(tensors, metadata, data_start)`; `tensors` maps each name to
    `{"dtype", "shape", "data_offsets"}`. Raises `CheckpointError` naming the file and the
    problem when the file is truncated or its header is inconsistent.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: safetensors header of {header_len} bytes (at most 100 MB)")
        if header_len > size - 8:
            raise CheckpointError(
                f"{path}: corrupt safetensors file (header claims {header_len} bytes, file has {size})"
            )
        raw = f.read(header_len)
    if json_nesting_depth(raw) > _MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: corrupt safetensors file (header nested too deeply)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: corrupt safetensors file (header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata  # the format's reference reads null as none
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: corrupt safetensors file (__metadata__ is not an object)")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise CheckpointError(
                f"{path}: corrupt safetensors file (__metadata__ value {short(key, 60)} is not a string)"
            )
    data_start = 8 + header_len
    data_size = size - data_start
    spans = []
    for name, info in header.items():
        where = f"{path}: tensor {short(name)}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: header entry is not {{dtype, shape, data_offsets}}")
        if not isinstance(info["dtype"], str) or info["dtype"] not in DTYPES:
            raise CheckpointError(f"{where}: unsupported dtype {short(info['dtype'], 20)}")
        dtype = DTYPES[info["dtype"]]
        shape = checked_shape(info["shape"], where)
        offsets = info["data_offsets"]
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(x) is int and x >= 0 for x in offsets)
        ):
            raise CheckpointError(f"{where}: data_offsets {short(offsets, 40)} are not two byte positions")
        begin, end = offsets
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            raise CheckpointError(
                f"{where} of shape {short(list(shape), 60)} and dtype {info['dtype']} should take "
                f"{short(expected, 30)} bytes, header gives offsets {short(begin, 30)}..{short(end, 30)}"
            )
        if end > data_size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: tensor {short(name)} ends at byte {short(end, 30)} "
                f"of the data section, which has only {data_size} bytes"
            )
        spans.append((begin, end, name))
    # As the format's reference demands, the tensors cover the data section exactly: no bytes
    # before the first, between two or after the last (unread bytes could hide anything).
    spans.sort()
    covered = 0
    for begin, end, name in spans:
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else "leaves a gap before it"
            raise CheckpointError(
                f"{path}: corrupt safetensors file: tensor {short(name)} starts at byte {begin} of the data "
                f"section and {problem} (which ends at byte {covered})"
            )
        covered = end
    if covered != data_size:
        raise CheckpointError(
            f"{path}: corrupt safetensors file: the tensors cover {covered} bytes of the data section, "
            f"which has {data_size} (trailing bytes)"
        )
    return header, metadata, data_start


def read(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, LazyTensor]:
    """The tensors of a safetensors file, each read on `load()`.

    With `mmap=True` a load is a copy-on-write memory map (pages come from disk on first
    use; writing to the array never touches the file). With `mmap=False` it is a plain read,
    which streaming conversion prefers: a map keeps every page it touched resident.
    """
    path = Path(path)
    header, _, data_start = read_header(path)
    buffer: list[np.memmap] = []

    def mapped() -> np.memmap:
        if not buffer:
            buffer.append(np.memmap(path, dtype=np.uint8, mode="c"))
        return buffer[0]

    tensors = {}
    for name, info in header.items():
        dtype = DTYPES[info["dtype"]].newbyteorder("<")
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]

        def load(dtype=dtype, shape=shape, begin=data_start + begin, end=data_start + end):
            if mmap and end > begin:
                return mapped()[begin:end].view(dtype).reshape(shape)
            return np.fromfile(path, dtype=dtype, count=math.prod(shape), offset=begin).reshape(shape)

        def rows(start, stop, dtype=dtype, shape=shape, begin=data_start + begin):
            row = math.prod(shape[1:])
            count = (min(stop, shape[0]) - start) * row
            offset = begin + start * row * dtype.itemsize
            return np.fromfile(path, dtype=dtype, count=count, offset=offset).reshape(-1, *shape[1:])

        def read_into(out, begin=data_start + begin, nbytes=end - begin):
            view = memoryview(out).cast("B")
            if view.nbytes != nbytes:
                raise ValueError(f"read_into needs a buffer of {nbytes} bytes, got {view.nbytes}")
            _read_range(path, begin, view)

        tensors[name] = LazyTensor(shape, np.dtype(dtype), load, rows if shape else None, read_into)
    return tensors


# A tensor at least this big is read by several threads, each its own part of the file: most of
# a plain load's time is the kernel filling fresh pages of the destination, which runs in
# parallel on several cores (xlm-roberta-base's word embeddings are 768 MB of its 1.1 GB).
PARALLEL_READ_BYTES = 64 << 20
PARALLEL_READ_THREADS = 4


def _read_range(path: Path, begin: int, view: memoryview) -> None:
    """Fill `view` with the file's bytes from `begin` on, in parallel parts when it is big."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parts = min(PARALLEL_READ_THREADS, cores) if view.nbytes >= PARALLEL_READ_BYTES else 1
    bounds = [view.nbytes * k // parts for k in range(parts + 1)]

    def read_part(k: int) -> None:
        with open(path, "rb", buffering=0) as f:
            f.seek(begin + bounds[k])
            filled, part = 0, view[bounds[k] : bounds[k + 1]]
            while filled < part.nbytes:
                got = f.readinto(part[filled:])
                if not got:
                    raise CheckpointError(f"{path}: truncated safetensors file (it shrank while read)")
                filled += got

    if parts == 1:
        read_part(0)
        return
    with ThreadPoolExecutor(parts) as pool:
        for done in [pool.submit(read_part, k) for k in range(parts)]:
            done.result()  # re-raises a part's error (all parts have finished by then)


def _header(tensors: Mapping[str, LazyTensor], metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, tensor in tensors.items():
        dtype_name = _DTYPE_NAMES.get(np.dtype(tensor.dtype).newbyteorder("="))
        if dtype_name is None:
            raise TypeError(f"tensor {short(name)} has dtype {tensor.dtype}, which safetensors cannot hold")
        header[name] = {
            "dtype": dtype_name,
            "shape": [int(d) for d in tensor.shape],
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # The data section starts 64-byte aligned (the format asks for 8): TensorFlow then takes
    # the tensors of a memory-mapped file as its variables' storage without a copy.
    raw += b" " * (-(8 + len(raw)) % 64)
    return struct.pack("<Q", len(raw)) + raw


def write(
    path: str | os.PathLike,
    tensors: Mapping[str, LazyTensor],
    metadata: Mapping[str, str] | None = None,
    progress=None,
) -> None:
    """Write `tensors` to `path`, loading one at a time. Not atomic: callers write into a stage."""
    header = _header(tensors, metadata)
    with open(path, "wb") as f:
        f.write(header)
        for name, tensor in tensors.items():
            write_array(f, tensor.checked_load(name))
            if progress:
                progress.advance(tensor.nbytes)
