"""Checkpoint directories: which weights file, in which order, and every read and write of one.

A directory's weights are one of (in this order of preference) `model.safetensors`, a
sharded safetensors index, `pytorch_model.bin`, a sharded `.bin` index, `tf_model.h5`,
`flax_model.msgpack`. `open_checkpoint` gives them as canonical lazy tensors whatever the
format (the per-format readers are in `xlmr_core.formats`); `write_weights` writes any
format from canonical tensors, one tensor at a time; `save_checkpoint` writes the shared
format atomically. Nothing here imports a framework.

Every error is one line naming the file and the problem: `CheckpointError` (corrupt,
truncated, refused), its subclasses `CheckpointShapeError` and `UnsupportedCheckpointError`,
`FileNotFoundError` for what is not there, `MissingDependencyError` for a missing library.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import staged_directory
from .architecture import detect_heads, expected_shapes
from .errors import (
    CheckpointError,
    CheckpointShapeError,
    MissingDependencyError,
    UnsupportedCheckpointError,
    require,
    short,
)
from .formats import flax_msgpack, keras_h5, safetensors, torch_pickle
from .formats.base import BFLOAT16, LazyTensor, as_lazy, eager
from .json_text import parse_json
from .pretrained import require_directory
from .tokenizer_limits import fit_tokenizer_config
from .weight_mapping import BASE_MODEL_PREFIX, IGNORED_CHECKPOINT_KEYS

__all__ = [
    "WEIGHTS_FILES",
    "FORMATS",
    "FORMAT_FILES",
    "FLOAT_DTYPES",
    "Checkpoint",
    "CheckpointError",
    "CheckpointShapeError",
    "LazyTensor",
    "MissingDependencyError",
    "UnsupportedCheckpointError",
    "canonicalize",
    "check_shapes",
    "check_writable",
    "detect_format",
    "eager",
    "load_checkpoint",
    "non_finite",
    "open_checkpoint",
    "parse_size",
    "save_checkpoint",
    "write_weights",
]

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"
TORCH_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = keras_h5.FILE_NAME
FLAX_WEIGHTS_NAME = flax_msgpack.FILE_NAME

# The file names looked for, in order of preference, and the format each is in.
WEIGHTS_FILES = {
    SAFE_WEIGHTS_NAME: "safetensors",
    SAFE_WEIGHTS_INDEX_NAME: "safetensors",
    TORCH_WEIGHTS_NAME: "torch",
    TORCH_WEIGHTS_INDEX_NAME: "torch",
    TF_WEIGHTS_NAME: "tf",
    FLAX_WEIGHTS_NAME: "flax",
}
FORMATS = ("safetensors", "torch", "tf", "flax")
FORMAT_FILES = {
    "safetensors": SAFE_WEIGHTS_NAME,
    "torch": TORCH_WEIGHTS_NAME,
    "tf": TF_WEIGHTS_NAME,
    "flax": FLAX_WEIGHTS_NAME,
}
FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": BFLOAT16}
# Shard file names: `model-00001-of-00003.safetensors`, `pytorch_model-00001-of-00003.bin`.
_SHARD_NAMES = {
    "safetensors": "model-{:05d}-of-{:05d}.safetensors",
    "torch": "pytorch_model-{:05d}-of-{:05d}.bin",
}
_SHARD_PATTERN = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
# An earlier save's shard set aside under a unique name while a new save replaces its name.
_SET_ASIDE_PATTERN = re.compile(r"^\.model-\d{5}-of-\d{5}\.[0-9a-f]{8}\.old\.safetensors$")
_INDEX_NAMES = {"safetensors": SAFE_WEIGHTS_INDEX_NAME, "torch": TORCH_WEIGHTS_INDEX_NAME}


# ------------------------------------------------------------------ finding the weights
def detect_format(directory: str | os.PathLike) -> tuple[str, Path]:
    """`(format, weights file)` of a checkpoint directory, in `WEIGHTS_FILES` order."""
    directory = require_directory(directory)
    for name, fmt in WEIGHTS_FILES.items():
        if (directory / name).is_file():
            return fmt, directory / name
    if (directory / "model.pt").is_file():
        raise UnsupportedCheckpointError(
            f"{directory} holds a fairseq model.pt; import it with `xlmr-convert from-fairseq`"
        )
    raise FileNotFoundError(f"no weights file in {directory}: expected one of {', '.join(WEIGHTS_FILES)}")


# ------------------------------------------------------------------ opening
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


def _read_index(path: Path) -> dict[str, str]:
    size = path.stat().st_size
    if size > safetensors.MAX_HEADER_BYTES:  # checked before a byte is read
        raise CheckpointError(f"{path}: shard index of {size} bytes (at most 100 MB)")
    index = parse_json(path.read_bytes(), str(path), CheckpointError)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{path}: corrupt shard index (no valid 'weight_map')")
    shards = []
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CheckpointError(
                f"{path}: weight_map entry {short(name, 60)} is a {type(shard).__name__}, "
                "not a shard file name"
            )
        shards.append(shard)
    for shard in dict.fromkeys(shards):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(
                f"{path}: shard name {short(shard, 60)} points outside the checkpoint directory"
            )
        if len(shard.encode("utf-8", "surrogatepass")) > 255 or not shard.isprintable():
            raise CheckpointError(f"{path}: shard name {short(shard, 60)} is not a usable file name")
        if not (path.parent / shard).is_file():
            raise FileNotFoundError(f"{path}: shard {short(shard, 60)} listed in the index is missing")
    return weight_map


def _read_sharded(index: Path, read_shard) -> tuple[dict[str, LazyTensor], list[Path]]:
    weight_map = _read_index(index)
    shards = list(dict.fromkeys(weight_map.values()))
    tensors: dict[str, LazyTensor] = {}
    for shard in shards:
        for name, tensor in read_shard(index.parent / shard).items():
            if weight_map.get(name) == shard:
                tensors[name] = tensor
    absent = [name for name in weight_map if name not in tensors]
    if absent:
        listed = ", ".join(short(name, 60) for name in absent[:3])
        raise CheckpointError(
            f"{index}: {len(absent)} tensors listed in the index are not in their shards: {listed}"
        )
    return {name: tensors[name] for name in weight_map}, [index.parent / s for s in shards]


def open_checkpoint(directory: str | os.PathLike, *, mmap: bool = True) -> Checkpoint:
    """Open a checkpoint directory's weights as canonical lazy tensors; nothing is read yet.

    `mmap=True` makes safetensors loads copy-on-write memory maps (fast model loading);
    `mmap=False` reads with plain file reads (streaming conversion keeps less resident).
    """
    directory = Path(directory)
    fmt, path = detect_format(directory)
    files, closers = [path], []
    if path.name == SAFE_WEIGHTS_NAME:
        tensors = safetensors.read(path, mmap=mmap)
    elif path.name == SAFE_WEIGHTS_INDEX_NAME:
        tensors, shards = _read_sharded(path, lambda p: safetensors.read(p, mmap=mmap))
        files += shards
    elif path.name == TORCH_WEIGHTS_NAME:
        tensors = torch_pickle.read(path)
    elif path.name == TORCH_WEIGHTS_INDEX_NAME:
        tensors, shards = _read_sharded(path, torch_pickle.read)
        files += shards
    elif path.name == TF_WEIGHTS_NAME:
        tensors, close = keras_h5.read(path)
        closers.append(close)
    else:
        tensors = flax_msgpack.read(path)
    return Checkpoint(directory, fmt, files, tensors, closers)


def load_checkpoint(directory: str | os.PathLike, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint directory, any format, as `{canonical name: array}`."""
    with open_checkpoint(directory, mmap=mmap) as checkpoint:
        return {name: tensor.checked_load(name) for name, tensor in checkpoint.tensors.items()}


def canonicalize(tensors: Mapping[str, LazyTensor], tie_word_embeddings: bool) -> dict[str, LazyTensor]:
    """Drop derived buffers and second names of one tensor, as the shared format stores them.

    `position_ids` buffers go; `lm_head.decoder.bias` becomes `lm_head.bias`; a saved copy
    of the tied decoder matrix is dropped when it equals the word embeddings. A second name
    whose values disagree is kept (and so reported unexpected), never dropped silently.
    """
    out = {
        name: t
        for name, t in as_lazy(tensors).items()
        if not any(p.search(name) for p in IGNORED_CHECKPOINT_KEYS)
    }
    for prefix in ("", BASE_MODEL_PREFIX + "."):
        decoder_bias = out.get(prefix + "lm_head.decoder.bias")
        if decoder_bias is None:
            continue
        bias = out.get(prefix + "lm_head.bias")
        if bias is None:
            out[prefix + "lm_head.bias"] = out.pop(prefix + "lm_head.decoder.bias")
        elif decoder_bias.shape == bias.shape and np.array_equal(decoder_bias.load(), bias.load()):
            del out[prefix + "lm_head.decoder.bias"]
    decoder = out.get("lm_head.decoder.weight")
    embeddings = out.get(f"{BASE_MODEL_PREFIX}.embeddings.word_embeddings.weight")
    if tie_word_embeddings and decoder is not None and embeddings is not None:
        if decoder.shape == embeddings.shape and np.array_equal(decoder.load(), embeddings.load()):
            del out["lm_head.decoder.weight"]
    return out


def check_shapes(tensors: Mapping[str, LazyTensor], config, where: str | os.PathLike) -> None:
    """Every tensor a model of `config` has must have the shape the config gives it.

    Raises `CheckpointShapeError` naming the key and both shapes (nothing is loaded).
    """
    expected: dict[str, tuple] = {}
    for head in detect_heads(tensors, config):
        expected.update(expected_shapes(config, head))
    prefix = BASE_MODEL_PREFIX + "."
    for name, tensor in tensors.items():
        # A base-model checkpoint's names lack the prefix that a head's carry.
        want = expected.get(name, expected.get(prefix + name))
        if want is not None and tuple(tensor.shape) != tuple(want):
            raise CheckpointShapeError(
                f"{where}: tensor {short(name)} has shape {list(tensor.shape)}, "
                f"config.json implies {list(want)}"
            )


def non_finite(tensors: Mapping[str, LazyTensor], block_bytes: int = 64 * 2**20) -> dict[str, dict[str, int]]:
    """`{name: {"nan": n, "inf": m}}` for every floating tensor holding NaN or infinite values.

    Loading such weights is allowed (a diverged run is still worth inspecting); this says where
    they are. Tensors are read in row blocks of about `block_bytes`, so memory stays bounded.
    """
    found = {}
    for name, tensor in as_lazy(tensors).items():
        if not (tensor.dtype.kind == "f" or tensor.dtype == BFLOAT16) or not tensor.nbytes:
            continue
        nan = inf = 0
        if len(tensor.shape) < 2:
            blocks = [(0, None)]
        else:
            rows = max(1, block_bytes // max(1, tensor.nbytes // tensor.shape[0]))
            blocks = [(start, start + rows) for start in range(0, tensor.shape[0], rows)]
        for start, stop in blocks:
            data = tensor.load() if stop is None else tensor.load_rows(start, stop)
            data = np.asarray(data, dtype=np.float32) if data.dtype == BFLOAT16 else np.asarray(data)
            nan += int(np.count_nonzero(np.isnan(data)))
            inf += int(np.count_nonzero(np.isinf(data)))
        if nan or inf:
            found[name] = {"nan": nan, "inf": inf}
    return found


def describe_non_finite(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """One line per tensor of `non_finite`'s result: `name: 3 NaN, 1 inf`."""
    return [
        f"{short(name)}: "
        + ", ".join(f"{n} {kind}" for kind, n in (("NaN", c["nan"]), ("inf", c["inf"])) if n)
        for name, c in counts.items()
    ]


# ------------------------------------------------------------------ writing
def parse_size(size: int | str) -> int:
    """`"2GB"` -> 2_000_000_000, `"500MiB"` -> 524_288_000, ints pass through."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"shard size must be positive, got {size}")
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(size)[:40], flags=re.IGNORECASE)
    if not match:
        raise ValueError(
            f"cannot read a size from {short(size, 40)}; write it like '2GB', '500MB' or 1000000"
        )
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    power = " KMGT".index(unit.upper() or " ")
    return max(1, int(float(number) * base**power))


def shard_names(tensors: Mapping[str, LazyTensor], max_shard_size: int | str | None) -> list[list[str]]:
    """Consecutive runs of tensor names of at most `max_shard_size` bytes each.

    A single tensor larger than the limit gets a shard of its own.
    """
    if max_shard_size is None:
        return [list(tensors)]
    limit = parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    current = 0
    for name, tensor in tensors.items():
        if shards[-1] and current + tensor.nbytes > limit:
            shards.append([])
            current = 0
        shards[-1].append(name)
        current += tensor.nbytes
    return shards


def check_writable(formats: Iterable[str]) -> None:
    """Fail before any work when a format is unknown or its writer needs a missing library."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise UnsupportedCheckpointError(
                f"unknown format {short(fmt, 40)}; choose from {', '.join(FORMATS)}"
            )
        if fmt == "tf":
            require("h5py", f"writing {TF_WEIGHTS_NAME}", "tf")


def write_weights(
    directory: str | os.PathLike,
    tensors: Mapping[str, LazyTensor | np.ndarray],
    fmt: str = "safetensors",
    *,
    max_shard_size: int | str | None = None,
    architecture: str | None = None,
    metadata: Mapping[str, str] | None = None,
    progress=None,
) -> list[str]:
    """Write canonical `tensors` into `directory` (made if missing) in format `fmt`; return the file names.

    Streams one tensor at a time. `max_shard_size` shards safetensors and `.bin` files (with
    their index). Not atomic by itself: write into a staging folder (`save_checkpoint` does).
    """
    check_writable([fmt])
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = as_lazy(tensors)
    if fmt == "tf":
        keras_h5.write(directory / TF_WEIGHTS_NAME, tensors, architecture, progress)
        return [TF_WEIGHTS_NAME]
    if fmt == "flax":
        flax_msgpack.write(directory / FLAX_WEIGHTS_NAME, tensors, progress)
        return [FLAX_WEIGHTS_NAME]

    def write_one(path, subset):
        if fmt == "safetensors":
            safetensors.write(path, subset, {"format": "pt", **(metadata or {})}, progress)
        else:
            torch_pickle.write(path, subset, progress)

    shards = shard_names(tensors, max_shard_size)
    if len(shards) == 1:
        write_one(directory / FORMAT_FILES[fmt], {name: tensors[name] for name in shards[0]})
        return [FORMAT_FILES[fmt]]
    written, weight_map = [], {}
    for i, names in enumerate(shards, start=1):
        shard = _SHARD_NAMES[fmt].format(i, len(shards))
        write_one(directory / shard, {name: tensors[name] for name in names})
        weight_map.update(dict.fromkeys(names, shard))
        written.append(shard)
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    (directory / _INDEX_NAMES[fmt]).write_text(text, encoding="utf-8")
    return written + [_INDEX_NAMES[fmt]]


def save_checkpoint(
    directory: str | os.PathLike,
    state: Mapping[str, np.ndarray | LazyTensor],
    config=None,
    *,
    max_shard_size: int | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write `state` (and `config.json` when `config` is given) as a checkpoint in the shared format.

    With `max_shard_size`, tensors are split into `model-0000i-of-0000n.safetensors` plus
    `model.safetensors.index.json`. Everything is written in a staging folder first, then
    moved in holding the directory's save lock, in the order `_install_checkpoint` explains,
    so that concurrent saves and a kill at any point leave one whole checkpoint. Weight files
    of an earlier save that the new one does not replace (old shards) are removed. Returns
    the files written.
    """
    directory = Path(directory)
    for name, array in state.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {short(name, 40)}")
        if not hasattr(array, "dtype") or not hasattr(array, "shape"):
            raise TypeError(f"tensor {short(name)} is a {type(array).__name__}, not an array")
    if max_shard_size is not None:
        parse_size(max_shard_size)
    written: list[str] = []
    with staged_directory(directory, install=_install_checkpoint) as stage:
        if config is not None:
            config.save_pretrained(stage)
            written.append("config.json")
        written += write_weights(stage, state, max_shard_size=max_shard_size, metadata=metadata)
    if config is not None:
        # A tokenizer saved here first did not know the model's length limit.
        fit_tokenizer_config(directory, config)
    return [directory / name for name in written]


def _install_checkpoint(stage: Path, directory: Path) -> None:
    """Move a staged checkpoint into the existing `directory` so that readers switch in one step.

    Called holding the directory's save lock (`staged_directory`), so saves never interleave
    here. Readers take `model.safetensors` before the shard index, and `config.json` describes
    the weights; the moves go:

    1. shards of the live (old) checkpoint whose names the new save reuses are hard-linked
       aside under unique names and the old index is rewritten (one rename) to list those,
       so the old checkpoint stays whole while its file names are taken over;
    2. the new shards, then the new entry file (`model.safetensors` or the index);
    3. an old `model.safetensors` that would shadow a new index is deleted. Step 2's last
       rename or this unlink is the single point where a reader goes from old weights to new;
    4. `config.json` and any other staged file, so config.json is never newer than the weights;
    5. stale weight files (old shards, old index, set-aside links) are deleted.

    A kill before the switch leaves the old checkpoint whole (beside unreferenced new files);
    after it, the new weights (with the old config until step 4: the same one when a model is
    saved again). The next save removes what a killed one left. A reader that is between
    reading an index and opening its shards during a save can still see a mix.
    """
    new = {item.name for item in stage.iterdir()}
    entry = SAFE_WEIGHTS_INDEX_NAME if SAFE_WEIGHTS_INDEX_NAME in new else SAFE_WEIGHTS_NAME
    _set_aside_reused_shards(directory, stage, new)
    shards = sorted(name for name in new if _SHARD_PATTERN.match(name))
    for name in [*shards, entry] if entry in new else shards:
        os.replace(stage / name, directory / name)
    if entry == SAFE_WEIGHTS_INDEX_NAME:
        (directory / SAFE_WEIGHTS_NAME).unlink(missing_ok=True)
    for name in sorted(new - set(shards) - {entry}):
        os.replace(stage / name, directory / name)
    for item in directory.iterdir():
        stale = item.name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME) or bool(
            _SHARD_PATTERN.match(item.name) or _SET_ASIDE_PATTERN.match(item.name)
        )
        if stale and item.name not in new:
            item.unlink(missing_ok=True)


def _set_aside_reused_shards(directory: Path, stage: Path, new: set[str]) -> None:
    """Step 1 of `_install_checkpoint`: keep the live sharded checkpoint off the names a save reuses."""
    index = directory / SAFE_WEIGHTS_INDEX_NAME
    if (directory / SAFE_WEIGHTS_NAME).exists() or not index.is_file():
        return  # the live checkpoint reads no shards
    try:
        listing = json.loads(index.read_text(encoding="utf-8"))
        weight_map = dict(listing["weight_map"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable index does not load today either: nothing to keep whole
    reused = {
        shard
        for shard in weight_map.values()
        if isinstance(shard, str)
        and shard in new
        and _SHARD_PATTERN.match(shard)
        and (directory / shard).is_file()
    }
    if not reused:
        return
    renamed = {}
    for shard in sorted(reused):
        aside = f".{shard.removesuffix('.safetensors')}.{secrets.token_hex(4)}.old.safetensors"
        try:
            os.link(directory / shard, directory / aside)
        except OSError:  # a file system without hard links
            shutil.copyfile(directory / shard, directory / aside)
        renamed[shard] = aside
    listing["weight_map"] = {name: renamed.get(shard, shard) for name, shard in weight_map.items()}
    # Written in the staging folder, which goes whatever happens, then renamed over the index.
    rewritten = stage / f".{SAFE_WEIGHTS_INDEX_NAME}.old"
    rewritten.write_text(json.dumps(listing, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(rewritten, index)
