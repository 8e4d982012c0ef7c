"""Reading and writing checkpoint directories in the shared format.

A checkpoint's weights are `model.safetensors` (or `model.safetensors.index.json` plus
shards), canonical names and PyTorch layout. The safetensors format is simple enough
(8-byte header length, JSON header, raw little-endian bytes) that we read and write it
ourselves: reads are memory maps that validate every offset before touching data,
writes stream one tensor at a time, and bfloat16 is carried by `ml_dtypes`.

Every save goes through a staging folder (`xlmr_core._atomic.staged_directory`), so a
failed or interrupted save leaves no half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ._atomic import staged_directory

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
TORCH_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"
FLAX_WEIGHTS_NAME = "flax_model.msgpack"

# The file names looked for, in order of preference.
WEIGHTS_FILES = (
    SAFE_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    TORCH_WEIGHTS_NAME,
    TORCH_WEIGHTS_INDEX_NAME,
    TF_WEIGHTS_NAME,
    FLAX_WEIGHTS_NAME,
)

_SHARD_PATTERN = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")

SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}

# A header larger than this is not a weights file (safetensors itself caps it at 100 MB).
_MAX_HEADER_BYTES = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or of an unsupported kind."""


# ---------------------------------------------------------------- safetensors
def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and validate a safetensors header.

    Returns `(tensors, metadata, data_start)` where `tensors` maps each name to
    `{"dtype", "shape", "data_offsets"}`. Raises `CheckpointError` naming the file
    and the problem when the file is truncated or its header is inconsistent.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"{path}: corrupt safetensors file (header claims {header_len} bytes, file has {size})"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: corrupt safetensors file (header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    data_size = size - data_start
    spans = []
    for name, info in header.items():
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{path}: corrupt safetensors header entry for {name!r}: {info!r}"
                + ("" if not isinstance(info, dict) else f" (dtype {info.get('dtype')!r} supported?)")
            ) from None
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if min(shape, default=0) < 0 or begin < 0 or end - begin != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} of shape {shape} and dtype {info['dtype']} "
                f"should take {expected} bytes, header gives offsets {begin}..{end}"
            )
        if end > data_size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: tensor {name!r} ends at byte {end} "
                f"of the data section, which has only {data_size} bytes"
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_, end_a, name_a), (begin_b, _, name_b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise CheckpointError(f"{path}: corrupt safetensors file: {name_a!r} and {name_b!r} overlap")
    return header, metadata, data_start


def read_safetensors(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file as numpy arrays.

    With `mmap=True` (the default) the arrays are copy-on-write memory maps: nothing is
    read from disk until a tensor is used, and writing to one never touches the file.
    """
    path = Path(path)
    header, _, data_start = read_safetensors_header(path)
    out: dict[str, np.ndarray] = {}
    if not header:
        return out
    if mmap:
        buffer = np.memmap(path, dtype=np.uint8, mode="c")
    else:
        buffer = np.fromfile(path, dtype=np.uint8)
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = SAFETENSORS_DTYPES[info["dtype"]].newbyteorder("<")
        chunk = buffer[data_start + begin : data_start + end]
        out[name] = chunk.view(dtype).reshape(info["shape"])
    return out


def _header_for(state: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, array in state.items():
        try:
            dtype_name = _DTYPE_NAMES[np.dtype(array.dtype)]
        except KeyError:
            raise TypeError(
                f"tensor {name!r} has dtype {array.dtype}, which safetensors cannot hold"
            ) from None
        nbytes = int(array.nbytes)
        header[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # data section starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(
    path: str | os.PathLike,
    state: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write `state` to `path` in safetensors format, one tensor at a time.

    Not atomic by itself: callers write into a staging folder (see `save_checkpoint`).
    """
    arrays = {name: np.asarray(array) for name, array in state.items()}
    with open(path, "wb") as f:
        f.write(_header_for(arrays, metadata))
        for array in arrays.values():
            little = array if array.dtype.byteorder in "<|=" else array.astype(array.dtype.newbyteorder("<"))
            f.write(np.ascontiguousarray(little).reshape(-1).view(np.uint8).data)


# -------------------------------------------------------------------- sharding
def parse_size(size: int | str) -> int:
    """`"2GB"` -> 2_000_000_000, `"500MiB"` -> 524_288_000, ints pass through."""
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"shard size must be positive, got {size}")
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(size), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot read a size from {size!r}; write it like '2GB', '500MB' or 1000000")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    power = " KMGT".index(unit.upper() or " ")
    return max(1, int(float(number) * base**power))


def shard_state(state: Mapping[str, np.ndarray], max_shard_size: int | str) -> list[dict[str, np.ndarray]]:
    """Split `state` into consecutive shards of at most `max_shard_size` bytes each.

    A single tensor larger than the limit gets a shard of its own.
    """
    limit = parse_size(max_shard_size)
    shards: list[dict[str, np.ndarray]] = [{}]
    current = 0
    for name, array in state.items():
        nbytes = int(np.asarray(array).nbytes)
        if shards[-1] and current + nbytes > limit:
            shards.append({})
            current = 0
        shards[-1][name] = array
        current += nbytes
    return shards


# ------------------------------------------------------------------ directories
def find_weights_file(directory: str | os.PathLike) -> Path:
    """The weights file of a checkpoint directory, in the order of `WEIGHTS_FILES`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    for name in WEIGHTS_FILES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no weights file in {directory}: expected one of {', '.join(WEIGHTS_FILES)}")


def _read_index(path: Path) -> dict[str, str]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{path}: corrupt shard index (no valid 'weight_map')") from None
    for shard in set(weight_map.values()):
        if Path(shard).name != shard:
            raise CheckpointError(f"{path}: shard name {shard!r} points outside the checkpoint directory")
        if not (path.parent / shard).is_file():
            raise CheckpointError(f"{path}: shard {shard} listed in the index is missing")
    return weight_map


def _read_sharded(index_path: Path, read_one, *, mmap: bool = True) -> dict[str, np.ndarray]:
    weight_map = _read_index(index_path)
    state: dict[str, np.ndarray] = {}
    for shard in dict.fromkeys(weight_map.values()):
        tensors = read_one(index_path.parent / shard, mmap=mmap)
        for name, array in tensors.items():
            if weight_map.get(name) == shard:
                state[name] = array
    absent = [name for name, shard in weight_map.items() if name not in state]
    if absent:
        raise CheckpointError(
            f"{index_path}: tensors listed in the index are not in their shards: {absent[:5]}"
        )
    return state


def read_pytorch_bin(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Read a reference `pytorch_model.bin` without running pickled code.

    Uses `torch.load(weights_only=True)`, which only rebuilds tensors and plain
    containers. Torch older than 2.10 is refused: its restricted unpickler has known
    code-execution holes. There is no fallback to an unrestricted load.
    """
    path = Path(path)
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path.name} is a PyTorch pickle; reading it needs PyTorch: pip install 'xlmr[torch]'"
        ) from None
    major, minor = (int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    if (major, minor) < (2, 10):
        raise CheckpointError(
            f"refusing to read {path.name} with torch {torch.__version__}: the weights_only loader "
            "of torch < 2.10 is not safe; upgrade torch or convert the file to safetensors"
        )
    import pickle
    import zipfile

    try:
        loaded = torch.load(
            path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path)
        )
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file needs more than tensors and plain containers ({error})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated PyTorch checkpoint ({error})") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    state = {}
    for name, tensor in loaded.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            state[name] = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            state[name] = tensor.numpy()
    return state


def load_checkpoint(directory: str | os.PathLike, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Read the weights of a checkpoint directory as `{canonical name: array}`.

    Reads `model.safetensors`, a sharded safetensors index, or the reference's
    `pytorch_model.bin` (single or sharded). `tf_model.h5` and `flax_model.msgpack`
    are read by the TF and Flax packages, which know their layouts.
    """
    path = find_weights_file(directory)
    if path.name == SAFE_WEIGHTS_NAME:
        return read_safetensors(path, mmap=mmap)
    if path.name == SAFE_WEIGHTS_INDEX_NAME:
        return _read_sharded(path, read_safetensors, mmap=mmap)
    if path.name == TORCH_WEIGHTS_NAME:
        return read_pytorch_bin(path, mmap=mmap)
    if path.name == TORCH_WEIGHTS_INDEX_NAME:
        return _read_sharded(path, read_pytorch_bin, mmap=mmap)
    raise CheckpointError(
        f"{path.name} holds {'TensorFlow' if path.name == TF_WEIGHTS_NAME else 'Flax'} weights, "
        "which the framework-neutral loader does not read; "
        "convert it with `xlmr-convert convert` or load it in that framework"
    )


def save_checkpoint(
    directory: str | os.PathLike,
    state: Mapping[str, np.ndarray],
    config=None,
    *,
    max_shard_size: int | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write `state` (and `config.json` when `config` is given) as a checkpoint directory.

    With `max_shard_size`, tensors are split into `model-0000i-of-0000n.safetensors` plus
    `model.safetensors.index.json`. The write is atomic: everything is written in a
    staging folder first; weight files of an earlier save that the new one does not
    replace (old shards) are removed afterwards. Returns the files written.
    """
    directory = Path(directory)
    for name, array in state.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if not hasattr(array, "dtype") or not hasattr(array, "shape"):
            raise TypeError(f"tensor {name!r} is a {type(array).__name__}, not an array")
    metadata = {"format": "pt", **(metadata or {})}
    shards = shard_state(state, max_shard_size) if max_shard_size is not None else [dict(state)]
    written: list[str] = []
    with staged_directory(directory) as stage:
        if config is not None:
            config.save_pretrained(stage)
            written.append("config.json")
        if len(shards) == 1:
            write_safetensors(stage / SAFE_WEIGHTS_NAME, shards[0], metadata)
            written.append(SAFE_WEIGHTS_NAME)
        else:
            weight_map = {}
            for i, shard in enumerate(shards, start=1):
                shard_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                write_safetensors(stage / shard_name, shard, metadata)
                weight_map.update(dict.fromkeys(shard, shard_name))
                written.append(shard_name)
            total = sum(int(np.asarray(a).nbytes) for a in state.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (stage / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
            written.append(SAFE_WEIGHTS_INDEX_NAME)
    # Stale weights from an earlier save would shadow or mix with the new ones.
    for item in directory.iterdir():
        stale = item.name == SAFE_WEIGHTS_NAME or item.name == SAFE_WEIGHTS_INDEX_NAME
        stale = stale or bool(_SHARD_PATTERN.match(item.name))
        if stale and item.name not in written:
            item.unlink()
    return [directory / name for name in written]
