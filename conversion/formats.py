"""Reading and writing every checkpoint format, one tensor at a time.

A checkpoint is opened as a table of `LazyTensor`s: name, shape and dtype are known from
the file's header, the data is read only when `load()` is called. Writers walk that table
and load, convert and write one tensor before touching the next, so converting a large
checkpoint needs about one tensor's worth of memory beyond what the formats themselves
force (`pytorch_model.bin` is written by `torch.save`, which wants every tensor at once).

Formats:

| name          | file                                   | needs                        |
|---------------|----------------------------------------|------------------------------|
| `safetensors` | `model.safetensors` (+ index, shards)  | nothing beyond xlmr_core     |
| `torch`       | `pytorch_model.bin`                    | torch (`xlmr[torch]`)        |
| `tf`          | `tf_model.h5` (the reference's layout) | h5py (`xlmr[tf]`)            |
| `flax`        | `flax_model.msgpack`                   | nothing: msgpack is parsed here |

TF and Flax names come only from `xlmr_core.weight_mapping` (the tf / flax rules).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

from xlmr_core import checkpoint as core
from xlmr_core.weight_mapping import (
    BASE_MODEL_PREFIX,
    IGNORED_CHECKPOINT_KEYS,
    to_canonical_state,
    to_framework_name,
    to_framework_state,
)

from .errors import (
    ConversionError,
    CorruptFileError,
    MissingFileError,
    UnknownFormatError,
    require,
)

FORMATS = ("safetensors", "torch", "tf", "flax")
FORMAT_FILES = {
    "safetensors": core.SAFE_WEIGHTS_NAME,
    "torch": core.TORCH_WEIGHTS_NAME,
    "tf": core.TF_WEIGHTS_NAME,
    "flax": core.FLAX_WEIGHTS_NAME,
}
DTYPES = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}


# --------------------------------------------------------------------------- lazy tensors
@dataclass
class LazyTensor:
    """A tensor whose shape and dtype are known and whose data is read on `load()`."""

    shape: tuple[int, ...]
    dtype: np.dtype
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def T(self) -> LazyTensor:  # noqa: N802 - the numpy spelling, so weight_mapping can transpose it
        load = self.load
        return LazyTensor(self.shape[::-1], self.dtype, lambda: load().T)

    def cast(self, dtype: np.dtype) -> LazyTensor:
        """The same tensor in floating `dtype`; integer tensors are left as they are."""
        is_float = self.dtype.kind == "f" or self.dtype == DTYPES["bfloat16"]
        if dtype == self.dtype or not is_float:
            return self
        load = self.load
        return LazyTensor(self.shape, np.dtype(dtype), lambda: load().astype(dtype))


def eager(array: np.ndarray) -> LazyTensor:
    """A `LazyTensor` over an array already in memory (or memory-mapped)."""
    return LazyTensor(tuple(array.shape), np.dtype(array.dtype), lambda: array)


def load_checked(name: str, tensor: LazyTensor) -> np.ndarray:
    """Load a tensor and make sure it is what its header promised."""
    array = np.asarray(tensor.load())
    if tuple(array.shape) != tuple(tensor.shape) or array.dtype != tensor.dtype:
        raise CorruptFileError(
            f"tensor {name!r} should be {tensor.dtype} {list(tensor.shape)}, "
            f"the file gives {array.dtype} {list(array.shape)}"
        )
    return array


@dataclass
class Checkpoint:
    """An opened checkpoint directory: its format, weight files and canonical lazy tensors."""

    directory: Path
    format: str
    files: list[Path]
    tensors: dict[str, LazyTensor]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- safetensors
def _safetensors_tensors(path: Path) -> dict[str, LazyTensor]:
    try:
        header, _, data_start = core.read_safetensors_header(path)
    except core.CheckpointError as error:
        raise CorruptFileError(str(error)) from None
    tensors = {}
    for name, info in header.items():
        dtype = core.SAFETENSORS_DTYPES[info["dtype"]].newbyteorder("<")
        shape = tuple(int(d) for d in info["shape"])
        offset = data_start + int(info["data_offsets"][0])

        # Read with a plain file read, not a memory map: a map would keep every page it
        # touched resident for the whole conversion.
        def load(path=path, dtype=dtype, shape=shape, offset=offset):
            count = math.prod(shape)
            return np.fromfile(path, dtype=dtype, count=count, offset=offset).reshape(shape)

        tensors[name] = LazyTensor(shape, np.dtype(dtype), load)
    return tensors


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise CorruptFileError(f"{path}: corrupt shard index (no valid 'weight_map')") from None
    for shard in set(weight_map.values()):
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise CorruptFileError(f"{path}: shard name {shard!r} points outside the checkpoint directory")
        if not (path.parent / shard).is_file():
            raise MissingFileError(f"{path}: shard {shard} listed in the index is missing")
    return weight_map


def _sharded_tensors(index: Path, read_shard) -> tuple[dict[str, LazyTensor], list[Path]]:
    weight_map = _read_index(index)
    shards = list(dict.fromkeys(weight_map.values()))
    tensors: dict[str, LazyTensor] = {}
    for shard in shards:
        for name, tensor in read_shard(index.parent / shard).items():
            if weight_map.get(name) == shard:
                tensors[name] = tensor
    absent = [name for name in weight_map if name not in tensors]
    if absent:
        raise CorruptFileError(f"{index}: tensors listed in the index are not in their shards: {absent[:5]}")
    return {name: tensors[name] for name in weight_map}, [index.parent / s for s in shards]


# --------------------------------------------------------------------------- pytorch_model.bin
def _torch_tensors(path: Path) -> dict[str, LazyTensor]:
    require("torch", f"reading {path.name}", "torch")
    try:
        state = core.read_pytorch_bin(path, mmap=True)
    except core.CheckpointError as error:
        raise CorruptFileError(str(error)) from None
    return {name: eager(array) for name, array in state.items()}


# --------------------------------------------------------------------------- tf_model.h5
def _h5_attribute_list(group, name: str) -> list[str]:
    """A list attribute that Keras may have split into `name0`, `name1`, ... (HDF5 header limit)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _tf_tensors(path: Path) -> tuple[dict[str, LazyTensor], Callable[[], None]]:
    h5py = require("h5py", f"reading {path.name}", "tf")
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({error})") from None
    try:
        layer_names = _h5_attribute_list(h5, "layer_names")
        if not layer_names:
            raise CorruptFileError(f"{path}: no 'layer_names' attribute; not a Keras weights file")
        tf_state: dict[str, LazyTensor] = {}
        for layer_name in layer_names:
            if layer_name not in h5:
                raise CorruptFileError(f"{path}: layer {layer_name!r} is listed but has no group")
            group = h5[layer_name]
            for weight_name in _h5_attribute_list(group, "weight_names"):
                # `tfxlm_roberta_for_masked_lm/roberta/embeddings/...:0`: drop the model scope and `:0`.
                name = re.sub(r":\d+$", "", weight_name.split("/", 1)[-1])
                if name in tf_state:
                    continue  # the tied word embeddings are listed again under the LM head
                if weight_name not in group:
                    raise CorruptFileError(f"{path}: weight {weight_name!r} is listed but missing")
                dataset = group[weight_name]
                tf_state[name] = LazyTensor(
                    tuple(dataset.shape), np.dtype(dataset.dtype), lambda d=dataset: np.asarray(d[()])
                )
    except BaseException:
        h5.close()
        raise
    tensors = _canonical_from_framework(tf_state, "tf", path)
    if tensors and all(name.startswith(BASE_MODEL_PREFIX + ".") for name in tensors):
        # The reference's TF base model scopes everything under `roberta/`; canonical base-model
        # checkpoints (like a PyTorch `XLMRobertaModel`) have no prefix.
        tensors = {name[len(BASE_MODEL_PREFIX) + 1 :]: tensor for name, tensor in tensors.items()}
    return tensors, h5.close


def _canonical_from_framework(state: Mapping[str, LazyTensor], framework: str, path: Path):
    try:
        return to_canonical_state(state, framework)  # renames, and transposes linear kernels lazily
    except KeyError as error:
        raise CorruptFileError(f"{path}: {error.args[0]}") from None


# --------------------------------------------------------------------------- flax_model.msgpack
# Flax writes its parameter tree with msgpack; arrays are extension type 1 holding the msgpack
# triple (shape, dtype name, raw bytes). The subset of msgpack this needs is parsed here from
# the file (no `msgpack` or `flax` dependency), recording where each array's bytes are so they
# are read only when converted.
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
            raise CorruptFileError(f"{self.path}: truncated msgpack file")
        return data

    def _unpack(self, fmt: str):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _skip(self, n: int) -> int:
        start = self.file.tell()
        if start + n > self.size:
            raise CorruptFileError(f"{self.path}: truncated msgpack file (a value ends past the file)")
        self.file.seek(n, os.SEEK_CUR)
        return start

    def value(self, depth: int = 0):
        if depth > 64:
            raise CorruptFileError(f"{self.path}: msgpack nesting too deep")
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
            raise CorruptFileError(f"{self.path}: invalid msgpack byte 0x{byte:02x}")
        return fixed[byte]()

    def _map(self, n: int, depth: int) -> dict:
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if not isinstance(key, (str, int)):
                raise CorruptFileError(f"{self.path}: msgpack map key of type {type(key).__name__}")
            out[str(key)] = self.value(depth + 1)
        return out

    def _str(self, n: int) -> str:
        try:
            return self._read(n).decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFileError(f"{self.path}: msgpack string is not UTF-8") from None

    def _bin(self, n: int) -> tuple[int, int]:
        return self._skip(n), n

    def _ext(self, n: int):
        code = self._unpack(">b")
        end = self.file.tell() + n
        if code != _FLAX_ARRAY_EXT:
            raise CorruptFileError(f"{self.path}: msgpack extension type {code} is not a Flax array")
        triple = self.value()
        try:
            shape, dtype_name, (offset, nbytes) = triple
            shape = tuple(int(d) for d in shape)
            dtype = DTYPES["bfloat16"] if dtype_name == "bfloat16" else np.dtype(dtype_name)
        except (TypeError, ValueError):
            raise CorruptFileError(f"{self.path}: malformed Flax array entry") from None
        if (dtype.kind not in "fiub" and dtype != DTYPES["bfloat16"]) or min(shape, default=0) < 0:
            raise CorruptFileError(f"{self.path}: Flax array of unsupported dtype {dtype_name!r}")
        if nbytes != math.prod(shape) * dtype.itemsize or self.file.tell() != end:
            raise CorruptFileError(f"{self.path}: Flax array {list(shape)} {dtype_name} has {nbytes} bytes")
        return _ArraySpan(shape, dtype, offset)


def _flax_leaf(value, path: Path, name: str) -> LazyTensor:
    if isinstance(value, _ArraySpan):
        span = value
        return LazyTensor(
            span.shape,
            span.dtype,
            lambda: np.fromfile(
                path, dtype=span.dtype, count=math.prod(span.shape), offset=span.offset
            ).reshape(span.shape),
        )
    if isinstance(value, dict) and value.get(_FLAX_CHUNK_MARK) is True:
        try:
            shape = tuple(int(value["shape"][str(i)]) for i in range(len(value["shape"])))
            chunks = [value["chunks"][str(i)] for i in range(len(value["chunks"]))]
        except (KeyError, TypeError, ValueError):
            raise CorruptFileError(f"{path}: malformed chunked array {name!r}") from None
        pieces = [_flax_leaf(chunk, path, name) for chunk in chunks]
        dtype = pieces[0].dtype
        if sum(p.nbytes for p in pieces) != math.prod(shape) * dtype.itemsize:
            raise CorruptFileError(f"{path}: chunks of {name!r} do not add up to {list(shape)}")
        return LazyTensor(shape, dtype, lambda: np.concatenate([p.load() for p in pieces]).reshape(shape))
    raise CorruptFileError(f"{path}: entry {name!r} is not an array")


def _flax_tensors(path: Path) -> dict[str, LazyTensor]:
    with open(path, "rb") as f:
        reader = _MsgpackReader(f, path)
        tree = reader.value()
        if f.tell() != reader.size:
            raise CorruptFileError(f"{path}: trailing bytes after the msgpack tree")
    if not isinstance(tree, dict):
        raise CorruptFileError(f"{path}: the msgpack file does not hold a parameter tree")
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
    return _canonical_from_framework(flat, "flax", path)


# --------------------------------------------------------------------------- opening
def detect_format(directory: Path) -> tuple[str, Path]:
    """`(format, weights file)` of a checkpoint directory, in `WEIGHTS_FILES` order."""
    if not directory.exists():
        raise MissingFileError(f"{directory} does not exist")
    if not directory.is_dir():
        raise MissingFileError(f"{directory} is not a directory")
    try:
        path = core.find_weights_file(directory)
    except FileNotFoundError as error:
        if (directory / "model.pt").is_file():
            raise UnknownFormatError(
                f"{directory} holds a fairseq model.pt; import it with `xlmr-convert from-fairseq`"
            ) from None
        raise MissingFileError(str(error)) from None
    names = {
        core.SAFE_WEIGHTS_NAME: "safetensors",
        core.SAFE_WEIGHTS_INDEX_NAME: "safetensors",
        core.TORCH_WEIGHTS_NAME: "torch",
        core.TORCH_WEIGHTS_INDEX_NAME: "torch",
        core.TF_WEIGHTS_NAME: "tf",
        core.FLAX_WEIGHTS_NAME: "flax",
    }
    return names[path.name], path


def open_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Open the weights of a checkpoint directory as canonical lazy tensors (nothing is read yet)."""
    directory = Path(directory)
    fmt, path = detect_format(directory)
    closers: list[Callable[[], None]] = []
    files = [path]
    if path.name == core.SAFE_WEIGHTS_NAME:
        tensors = _safetensors_tensors(path)
    elif path.name == core.SAFE_WEIGHTS_INDEX_NAME:
        tensors, shards = _sharded_tensors(path, _safetensors_tensors)
        files += shards
    elif path.name == core.TORCH_WEIGHTS_NAME:
        tensors = _torch_tensors(path)
    elif path.name == core.TORCH_WEIGHTS_INDEX_NAME:
        tensors, shards = _sharded_tensors(path, _torch_tensors)
        files += shards
    elif path.name == core.TF_WEIGHTS_NAME:
        tensors, close = _tf_tensors(path)
        closers.append(close)
    else:
        tensors = _flax_tensors(path)
    return Checkpoint(directory, fmt, files, tensors, closers)


def canonicalize(tensors: Mapping[str, LazyTensor], tie_word_embeddings: bool) -> dict[str, LazyTensor]:
    """Drop derived buffers and second names of one tensor, as the shared format stores them.

    `position_ids` buffers go; `lm_head.decoder.bias` becomes `lm_head.bias`; a saved copy
    of the tied decoder matrix is dropped when it equals the word embeddings. Anything
    that disagrees is kept, never dropped silently.
    """
    out = {name: t for name, t in tensors.items() if not any(p.search(name) for p in IGNORED_CHECKPOINT_KEYS)}
    for prefix in ("", BASE_MODEL_PREFIX + "."):
        decoder_bias = out.get(prefix + "lm_head.decoder.bias")
        if decoder_bias is None:
            continue
        bias = out.get(prefix + "lm_head.bias")
        if bias is None:
            out[prefix + "lm_head.bias"] = out.pop(prefix + "lm_head.decoder.bias")
        elif np.array_equal(decoder_bias.load(), bias.load()):
            del out[prefix + "lm_head.decoder.bias"]
    decoder = out.get("lm_head.decoder.weight")
    embeddings = out.get(f"{BASE_MODEL_PREFIX}.embeddings.word_embeddings.weight")
    if tie_word_embeddings and decoder is not None and embeddings is not None:
        if decoder.shape == embeddings.shape and np.array_equal(decoder.load(), embeddings.load()):
            del out["lm_head.decoder.weight"]
    return out


# --------------------------------------------------------------------------- writing
def _shard(tensors: Mapping[str, LazyTensor], max_shard_size) -> list[list[str]]:
    """Consecutive shards of at most `max_shard_size` bytes, as `xlmr_core.checkpoint.shard_state`."""
    if max_shard_size is None:
        return [list(tensors)]
    limit = core.parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    current = 0
    for name, tensor in tensors.items():
        if shards[-1] and current + tensor.nbytes > limit:
            shards.append([])
            current = 0
        shards[-1].append(name)
        current += tensor.nbytes
    return shards


def _safetensors_header(tensors: Mapping[str, LazyTensor], metadata: Mapping[str, str]) -> bytes:
    # Same bytes as `xlmr_core.checkpoint.write_safetensors` (a test compares them).
    header: dict = {"__metadata__": dict(metadata)}
    offset = 0
    for name, tensor in tensors.items():
        dtype_name = next(k for k, v in core.SAFETENSORS_DTYPES.items() if v == tensor.dtype)
        header[name] = {
            "dtype": dtype_name,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _write_array(f, array: np.ndarray) -> None:
    little = array if array.dtype.byteorder in "<|=" else array.astype(array.dtype.newbyteorder("<"))
    f.write(np.ascontiguousarray(little).reshape(-1).view(np.uint8).data)


def write_safetensors_checkpoint(
    directory: Path, tensors: Mapping[str, LazyTensor], max_shard_size=None, progress=None
) -> list[str]:
    """Write `model.safetensors` (or shards + index) into `directory`, streaming tensor by tensor."""
    metadata = {"format": "pt"}
    shards = _shard(tensors, max_shard_size)
    written = []
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = (
            core.SAFE_WEIGHTS_NAME if len(shards) == 1 else f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        )
        subset = {key: tensors[key] for key in shard}
        with open(directory / name, "wb") as f:
            f.write(_safetensors_header(subset, metadata))
            for key, tensor in subset.items():
                _write_array(f, load_checked(key, tensor))
                if progress:
                    progress.advance(tensor.nbytes)
        weight_map.update(dict.fromkeys(shard, name))
        written.append(name)
    if len(shards) > 1:
        total = sum(t.nbytes for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        text = json.dumps(index, indent=2, sort_keys=True) + "\n"
        (directory / core.SAFE_WEIGHTS_INDEX_NAME).write_text(text, encoding="utf-8")
        written.append(core.SAFE_WEIGHTS_INDEX_NAME)
    return written


def write_torch_bin(directory: Path, tensors: Mapping[str, LazyTensor], progress=None) -> list[str]:
    """The reference's `pytorch_model.bin`: `torch.save` of a plain state dict."""
    torch = require("torch", "writing pytorch_model.bin", "torch")
    state = {}
    for name, tensor in tensors.items():
        array = np.ascontiguousarray(load_checked(name, tensor))
        if array.dtype == DTYPES["bfloat16"]:
            state[name] = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            state[name] = torch.from_numpy(array.copy() if not array.flags.writeable else array)
        if progress:
            progress.advance(tensor.nbytes)
    torch.save(state, directory / core.TORCH_WEIGHTS_NAME)
    return [core.TORCH_WEIGHTS_NAME]


def keras_scope(architecture: str | None) -> str:
    """The Keras model name the reference's TF class would get (`tfxlm_roberta_for_masked_lm`)."""
    name = "TF" + (architecture or "XLMRobertaModel").removeprefix("TF").removeprefix("Flax")
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _tf_state(tensors: Mapping[str, LazyTensor]) -> dict[str, LazyTensor]:
    # The reference's TF classes always scope the encoder under `roberta/`, base model included.
    if not any(name.startswith(BASE_MODEL_PREFIX + ".") for name in tensors):
        tensors = {f"{BASE_MODEL_PREFIX}.{name}": tensor for name, tensor in tensors.items()}
    return to_framework_state(tensors, "tf")


def _write_h5_list_attribute(group, name: str, values: list[str]) -> None:
    # HDF5 object headers hold at most 64 kB; Keras splits longer lists into name0, name1, ...
    limit = 64512
    data = np.array([v.encode("utf-8") for v in values])
    chunks = 1
    while any(part.nbytes > limit for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part


def write_tf_h5(
    directory: Path, tensors: Mapping[str, LazyTensor], architecture: str | None = None, progress=None
) -> list[str]:
    """The reference's `tf_model.h5`: one HDF5 group per top-level Keras layer.

    Root attribute `layer_names` lists the groups (`roberta`, `lm_head`, `classifier`, ...);
    each group's `weight_names` lists `<model scope>/<tf path>:0`, and the dataset lives at
    that path inside the group. HDF5 has no bfloat16: such tensors are stored as float32,
    which holds every bfloat16 value exactly.
    """
    h5py = require("h5py", "writing tf_model.h5", "tf")
    scope = keras_scope(architecture)
    tf_state = _tf_state(tensors)
    weight_names: dict[str, list[str]] = {}
    with h5py.File(directory / core.TF_WEIGHTS_NAME, "w") as h5:
        for path, tensor in tf_state.items():
            layer, weight_name = path.split("/", 1)[0], f"{scope}/{path}:0"
            array = load_checked(path, tensor)
            if array.dtype == DTYPES["bfloat16"]:
                array = array.astype(np.float32)
            group = h5.require_group(layer)
            group.create_dataset(weight_name, data=np.ascontiguousarray(array))
            weight_names.setdefault(layer, []).append(weight_name)
            if progress:
                progress.advance(tensor.nbytes)
        # Like the reference, the LM head also lists the tied word embeddings (a hard link here).
        word = to_framework_name(f"{BASE_MODEL_PREFIX}.embeddings.word_embeddings.weight", "tf")
        if "lm_head" in weight_names and word in tf_state:
            weight_name = f"{scope}/{word}:0"
            h5["lm_head"][weight_name] = h5[BASE_MODEL_PREFIX][weight_name]
            weight_names["lm_head"].append(weight_name)
        _write_h5_list_attribute(h5, "layer_names", list(weight_names))
        h5.attrs["backend"] = "tensorflow"
        for layer, names in weight_names.items():
            _write_h5_list_attribute(h5[layer], "weight_names", names)
    return [core.TF_WEIGHTS_NAME]


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
    _write_array(f, array)


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


def write_flax_msgpack(directory: Path, tensors: Mapping[str, LazyTensor], progress=None) -> list[str]:
    """The reference's `flax_model.msgpack`: the nested parameter dict as flax.serialization writes it."""
    flax_state = to_framework_state(tensors, "flax")  # renames, and transposes linear weights lazily
    tree: dict = {}
    for path in flax_state:
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConversionError(f"Flax path {path!r} collides with another parameter")
        node[leaf] = path

    with open(directory / core.FLAX_WEIGHTS_NAME, "wb") as f:

        def write(node):
            f.write(_mp_map(len(node)))
            for key, value in node.items():
                f.write(_mp_str(key))
                if isinstance(value, dict):
                    write(value)
                else:
                    tensor = flax_state[value]
                    _write_flax_leaf(f, load_checked(value, tensor))
                    if progress:
                        progress.advance(tensor.nbytes)

        write(tree)
    return [core.FLAX_WEIGHTS_NAME]


def check_writable(formats: Iterable[str]) -> None:
    """Fail before any work when a requested format is unknown or needs a missing library."""
    needs = {
        "torch": ("torch", "writing pytorch_model.bin", "torch"),
        "tf": ("h5py", "writing tf_model.h5", "tf"),
    }
    for fmt in formats:
        if fmt not in FORMATS:
            raise UnknownFormatError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        if fmt in needs:
            require(*needs[fmt])
