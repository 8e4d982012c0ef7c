"""`pytorch_model.bin` and fairseq `model.pt`: `torch.save` pickles, read and written without torch.

Reading runs no pickled code: a restricted unpickler resolves only plain containers, the
tensor rebuild functions (mapped to our own numpy versions) and `argparse.Namespace` (a
plain record); any other global stops it with an error naming that global, and no object
but a fresh `Namespace` may have its state set (`BUILD`). Every strided view is bounded by
the bytes its record really holds when it is loaded. The archive must be what `torch.save`
writes: no two entries of one name, records stored uncompressed. Both of torch's
layouts are read: the zip archive (torch >= 1.6) and the older single stream. Tensors come
back as `LazyTensor`s whose bytes are read from the archive on `load()`.

Writing produces what `torch.save(state_dict)` does: a zip archive with `data.pkl` (the
pickle, emitted opcode by opcode, since pickling torch's globals would need torch) and one
uncompressed, 64-byte aligned record per tensor, so `torch.load(weights_only=True)` and the
reference read it.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .base import (
    BFLOAT16,
    CheckpointError,
    LazyTensor,
    UnsupportedCheckpointError,
    checked_shape,
    clip,
    reason,
    short,
)

_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": BFLOAT16,
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
_STORAGE_NAMES = {dtype: name for name, dtype in _STORAGE_DTYPES.items()}
_TORCH_DTYPE_NAMES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "double", "float", "half", "long", "int", "short",
}  # fmt: skip
_NUMPY_SCALAR_KINDS = "biufc"


class PickledArgs(dict):
    """What an `argparse.Namespace` in a checkpoint becomes: a dict, also readable as attributes."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise CheckpointError("an argparse.Namespace in the pickle has a state that is not a dict")
        self.update(state)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# ------------------------------------------------------------------ restricted unpickling
class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A flat run of elements in the file, read when a tensor over it is loaded."""

    def __init__(self, dtype: np.dtype, numel: int, read, read_range=None, where: str = "a torch file"):
        # `read()` gives the raw bytes; `read_range(first, count)`, where the file allows,
        # reads `count` elements from element `first` alone. `where` names the file and record.
        self.dtype, self.numel, self.read, self.read_range = dtype, int(numel), read, read_range
        self.where = where

    def __setstate__(self, state):
        raise CheckpointError("the pickle sets the state of a tensor storage, which torch never does")

    def load(self) -> np.ndarray:
        raw, little = self.read(), self.dtype.newbyteorder("<")
        if len(raw) % little.itemsize:
            raise CheckpointError(f"{self.where} of {len(raw)} bytes does not hold whole {self.dtype}s")
        data = raw.view(little) if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype=little)
        if data.size < self.numel:
            raise CheckpointError(f"{self.where} holds {data.size} elements, {self.numel} expected")
        return data


class _Marker:
    """Stands for a torch class (Parameter, Tensor) that only tags a rebuilt tensor."""

    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> LazyTensor:
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor is rebuilt from something that is not a storage")
    size = checked_shape(size, "a tensor")
    if not isinstance(stride, tuple) or not all(type(s) is int and s >= 0 for s in stride):
        raise CheckpointError(f"a tensor of size {list(size)} has invalid strides {short(stride, 40)}")
    if type(storage_offset) is not int or storage_offset < 0 or len(stride) != len(size):
        raise CheckpointError(f"a tensor of size {list(size)} has an invalid offset or strides")
    offset = storage_offset
    last = offset + sum((d - 1) * s for d, s in zip(size, stride)) if math.prod(size) else offset - 1
    if last >= storage.numel:
        raise CheckpointError(
            f"a tensor of size {list(size)} reaches past its storage of {storage.numel} elements"
        )

    numel = math.prod(size)
    contiguous = all(s == math.prod(size[i + 1 :]) for i, (d, s) in enumerate(zip(size, stride)) if d > 1)

    def view_of(flat):
        if contiguous and flat.dtype == storage.dtype:
            return flat[offset : offset + numel].reshape(size)  # no copy of a large tensor
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
        )
        return np.array(view, dtype=storage.dtype)  # native byte order

    def load():
        flat = storage.load()
        # Bounded by the bytes the record really holds, whatever sizes the pickle declared.
        if last >= flat.size:
            raise CheckpointError(
                f"{storage.where}: a tensor of size {short(list(size), 60)} reaches past its record "
                f"of {flat.size} elements"
            )
        return view_of(flat)

    def rows(start, stop):
        row = math.prod(size[1:])
        stop = min(stop, size[0])
        block = storage.read_range(offset + start * row, max(0, stop - start) * row)
        return block.astype(storage.dtype, copy=False).reshape(-1, *size[1:])

    rows_readable = contiguous and storage.read_range is not None and len(size) > 0
    return LazyTensor(size, storage.dtype, load, rows if rows_readable else None)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type(func, new_type, args, state):
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(new_type, _Marker):
        raise CheckpointError("a tensor subclass in the pickle is rebuilt in an unexpected way")
    return func(*args)


def _numpy_dtype(name, align=False, copy=True):
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in _NUMPY_SCALAR_KINDS:
        raise CheckpointError(f"the pickle holds a numpy value of dtype {short(name, 40)}, which is refused")
    return dtype


def _plain_dtype_state(state) -> bool:
    """Whether `state` is what numpy pickles for a little-endian (or byte-order-free) plain dtype."""
    return isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", "|", "=")


def _numpy_scalar(dtype, data=None):
    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in _NUMPY_SCALAR_KINDS
        or not isinstance(data, bytes)
    ):
        raise CheckpointError("the pickle holds a numpy scalar that is not a plain number")
    if len(data) != dtype.itemsize:
        raise CheckpointError("the pickle holds a numpy scalar of the wrong size")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles spell `bytes` values as `_codecs.encode(str, "latin1")`.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("the pickle holds an unexpected _codecs.encode call")
    return text.encode("latin1")


def _ordered_dict(*args):
    if args:  # torch.save only ever pickles an empty OrderedDict() and fills it with SETITEMS
        raise CheckpointError("the pickle builds an OrderedDict from arguments, which torch never does")
    return collections.OrderedDict()


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): _codecs_encode,
    ("argparse", "Namespace"): PickledArgs,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.nn.parameter", "Parameter"): _Marker("Parameter"),
    ("torch", "Tensor"): _Marker("Tensor"),
    ("torch", "Size"): tuple,
    ("torch", "device"): str,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _RestrictedUnpickler(pickle._Unpickler):  # the Python one: its opcodes can be overridden
    def __init__(self, file, path: Path, storages):
        super().__init__(file, encoding="utf-8")
        self.path = path
        self.storages = storages  # (key, dtype, numel) -> _Storage

    def load_build(self):
        # `BUILD` sets an object's state; torch's pickles only ever set a fresh Namespace's.
        # Anything else (a storage record's size, a rebuilt tensor, one of the allowed
        # functions) would let the pickle change what this module checked or runs.
        state, target = self.stack[-1], self.stack[-2] if len(self.stack) > 1 else None
        if isinstance(target, np.dtype) and _plain_dtype_state(state):
            # numpy pickles every dtype with its state (fairseq's args hold numpy scalars); the
            # dtype was already made from its name, so the state is checked, never applied.
            self.stack.pop()
            return
        if not (type(target) is PickledArgs and not target and isinstance(state, dict)):
            raise CheckpointError(
                f"{self.path}: refused to load: the pickle sets the state of a {type(target).__name__}, "
                "which torch.save never does (nothing in the file was run)"
            )
        super().load_build()

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return f"torch.{name}"
        raise CheckpointError(
            f"{self.path}: refused to load: the pickle needs {clip(module, 60)}.{clip(name, 60)}, which is "
            "neither a tensor nor a plain container (nothing in the file was run)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected persistent id {short(pid, 60)}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or type(numel) is not int or numel < 0:
            raise CheckpointError(f"{self.path}: storage of unknown type or size {short(pid, 60)}")
        storage = self.storages(str(key), storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy files: a view into a larger storage
            try:
                _view_key, offset, view_numel = view
                offset, view_numel = int(offset), int(view_numel)
            except (TypeError, ValueError):
                raise CheckpointError(f"{self.path}: malformed storage view {short(view, 60)}") from None
            base, itemsize = storage, storage.dtype.itemsize
            storage = _Storage(
                base.dtype,
                view_numel,
                lambda: base.read()[offset * itemsize : (offset + view_numel) * itemsize],
                where=base.where,
            )
        return storage


# Failures of a hostile or broken pickle that are not ours; their text is cut to one line.
_PICKLE_FAILURES = (
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    struct.error,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    MemoryError,
    RecursionError,
    UnicodeDecodeError,
    NotImplementedError,
)


def _check_archive(path: Path, archive: zipfile.ZipFile) -> None:
    """The archive holds what `torch.save` writes, checked before any record is read."""
    seen, archive_size = set(), path.stat().st_size
    for info in archive.infolist():
        if info.filename in seen:
            # zipfile would take the last entry of a name and torch the first: two readers, two models.
            raise CheckpointError(f"{path}: the archive holds two entries named {short(info.filename, 60)}")
        seen.add(info.filename)
        if info.compress_type != zipfile.ZIP_STORED:
            # torch.save stores every record as it is; a compressed one is no torch file, and its
            # declared size (what inflating it would allocate) is not bounded by the file's.
            raise UnsupportedCheckpointError(
                f"{path}: record {short(info.filename, 60)} is compressed; torch.save stores records "
                "uncompressed (save it again with torch.save)"
            )
        if info.file_size > archive_size:
            raise CheckpointError(
                f"{path}: record {short(info.filename, 60)} declares {info.file_size} bytes, "
                f"more than the whole file's {archive_size}"
            )


def _load_zip(path: Path):
    archive = zipfile.ZipFile(path)
    _check_archive(path, archive)
    names = set(archive.namelist())
    pickles = [name for name in names if name.endswith("data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: a torch zip archive has exactly one data.pkl, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
        raise UnsupportedCheckpointError(f"{path}: big-endian torch files are not supported")

    archive_size = path.stat().st_size

    def guarded(read):
        def run(*args):
            try:
                return read(*args)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as error:
                raise CheckpointError(f"{path}: a tensor record is corrupt ({reason(error)})") from None

        return run

    def data_offset(info: zipfile.ZipInfo) -> int:
        """Where a stored (uncompressed: `_check_archive` refused the rest) record's bytes start."""
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{path}: record {short(info.filename, 60)} has no valid local header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_length + extra_length
        if start + info.file_size > archive_size:
            raise CheckpointError(
                f"{path}: record {short(info.filename, 60)} reaches past the end of the file"
            )
        return start

    def storage(key, dtype, numel):
        name = f"{prefix}data/{key}"
        if name not in names:
            raise CheckpointError(f"{path}: storage {short(key, 40)} is missing from the archive")
        info = archive.getinfo(name)
        start = data_offset(info)

        def read():
            # Straight from the file into one writable array: no second copy of a large table.
            raw = np.fromfile(path, dtype=np.uint8, count=info.file_size, offset=start)
            if len(raw) != info.file_size or zlib.crc32(raw) != info.CRC:
                raise CheckpointError(f"{path}: record {short(name, 60)} is corrupt (its CRC does not match)")
            return raw

        def read_range(first, count):
            little = dtype.newbyteorder("<")
            if (first + count) * little.itemsize > info.file_size:
                raise CheckpointError(f"{path}: record {short(name, 60)} is shorter than its tensor")
            return np.fromfile(path, dtype=little, count=count, offset=start + first * little.itemsize)

        return _Storage(dtype, numel, guarded(read), guarded(read_range), f"{path}: record {short(name, 60)}")

    with archive.open(pickles[0]) as f:
        return _RestrictedUnpickler(io.BytesIO(f.read()), path, storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)

    def no_storages(*_):
        raise CheckpointError(f"{path}: unexpected storage")

    magic = _RestrictedUnpickler(stream, path, no_storages).load()
    if magic != _LEGACY_MAGIC:
        raise UnsupportedCheckpointError(
            f"{path}: not a torch checkpoint (no zip archive, no legacy magic number)"
        )
    _RestrictedUnpickler(stream, path, no_storages).load()  # protocol version
    sys_info = _RestrictedUnpickler(stream, path, no_storages).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise UnsupportedCheckpointError(f"{path}: big-endian torch files are not supported")
    found: dict[str, np.dtype] = {}
    storages: dict[str, _Storage] = {}
    blobs: dict[str, bytes] = {}

    def storage(key, dtype, numel):
        if key not in storages:
            found[key] = dtype
            storages[key] = _Storage(
                dtype, numel, lambda: blobs[key], where=f"{path}: storage {short(key, 40)}"
            )
        return storages[key]

    obj = _RestrictedUnpickler(stream, path, storage).load()
    keys = _RestrictedUnpickler(stream, path, no_storages).load()
    if not isinstance(keys, list):
        raise CheckpointError(f"{path}: corrupt legacy torch file (no storage key list)")
    for key in keys:
        (count,) = struct.unpack("<q", stream.read(8))
        itemsize = found.get(str(key), np.dtype(np.uint8)).itemsize
        if count < 0 or count * itemsize > len(data):
            raise CheckpointError(f"{path}: truncated (storage {short(key, 40)})")
        blob = stream.read(count * itemsize)
        if len(blob) != count * itemsize:
            raise CheckpointError(f"{path}: truncated (storage {short(key, 40)})")
        blobs[str(key)] = blob
    return obj


def load(path: str | os.PathLike):
    """Unpickle a `torch.save` file without running pickled code; tensors become `LazyTensor`s."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except CheckpointError:
        raise
    except _PICKLE_FAILURES as error:
        raise CheckpointError(f"{path}: corrupt or truncated torch file ({reason(error)})") from None


def read(path: str | os.PathLike) -> dict[str, LazyTensor]:
    """The state dict of a `pytorch_model.bin` (or of a `{"state_dict": ...}` wrapper)."""
    path = Path(path)
    loaded = load(path)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    state = {}
    for name, tensor in loaded.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: state dict key {short(name, 40)} is not a string")
        if not isinstance(tensor, LazyTensor):
            raise CheckpointError(f"{path}: entry {short(name)} is a {type(tensor).__name__}, not a tensor")
        state[name] = tensor
    return state


# ------------------------------------------------------------------ writing
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _tuple(items: list[bytes]) -> bytes:
    return b")" if not items else b"(" + b"".join(items) + b"t"


def _state_dict_pickle(tensors: Mapping[str, LazyTensor]) -> bytes:
    """The bytes of `pickle.dumps(OrderedDict(name -> tensor), protocol=2)` as `torch.save` makes them."""
    out = [b"\x80\x02", _global("collections", "OrderedDict"), b")R"]
    if tensors:
        out.append(b"(")
        for key, (name, tensor) in enumerate(tensors.items()):
            storage = _STORAGE_NAMES[np.dtype(tensor.dtype).newbyteorder("=")]
            numel = math.prod(tensor.shape)
            strides, step = [], 1
            for size in reversed(tensor.shape):
                strides.insert(0, step)
                step *= size
            persistent_id = _tuple(
                [
                    _string("storage"),
                    _global("torch", storage),
                    _string(str(key)),
                    _string("cpu"),
                    _int(numel),
                ]
            )
            arguments = [
                persistent_id + b"Q",
                _int(0),
                _tuple([_int(d) for d in tensor.shape]),
                _tuple([_int(s) for s in strides]),
                b"\x89",  # requires_grad=False
                _global("collections", "OrderedDict") + b")R",  # backward hooks
            ]
            out += [_string(name), _global("torch._utils", "_rebuild_tensor_v2"), _tuple(arguments), b"R"]
        out.append(b"u")
    out.append(b".")
    return b"".join(out)


_ALIGNMENT = 64  # torch aligns every record's data, so that a memory-mapped load is aligned


def _aligned_record(archive: zipfile.ZipFile, name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    zip64 = size > zipfile.ZIP64_LIMIT * 0.9
    header = archive.fp.tell() + 30 + len(name.encode()) + (20 if zip64 else 0)
    padding = -(header + 4) % _ALIGNMENT
    info.extra = struct.pack("<HH", 0x4246, padding) + b"Z" * padding  # "FB": torch's padding field id
    return info, zip64


def write(path: str | os.PathLike, tensors: Mapping[str, LazyTensor], progress=None) -> None:
    """Write `tensors` as `torch.save` writes a state dict, one tensor at a time. Not atomic."""
    path = Path(path)
    for name, tensor in tensors.items():
        if np.dtype(tensor.dtype).newbyteorder("=") not in _STORAGE_NAMES:
            raise TypeError(f"tensor {short(name)} has dtype {tensor.dtype}, which torch files cannot hold")
    prefix = "archive/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(prefix + "data.pkl", _state_dict_pickle(tensors))
        archive.writestr(prefix + "byteorder", "little")
        for key, (name, tensor) in enumerate(tensors.items()):
            array = tensor.checked_load(name)
            little = array if array.dtype.byteorder in "<|=" else array.astype(array.dtype.newbyteorder("<"))
            data = np.ascontiguousarray(little).reshape(-1).view(np.uint8)
            info, zip64 = _aligned_record(archive, f"{prefix}data/{key}", data.nbytes)
            with archive.open(info, "w", force_zip64=zip64) as record:
                record.write(data.data)
            if progress:
                progress.advance(tensor.nbytes)
        archive.writestr(prefix + "version", "3\n")
        archive.writestr(prefix + ".data/serialization_id", "0" * 40)
