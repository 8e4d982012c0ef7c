"""`convert`: any checkpoint directory we can read -> the shared format (+ reference files).

Everything is written into a staging folder beside DST and renamed into place at the end,
so a crash or Ctrl-C leaves either the old DST or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from xlmr_core import XLMRobertaConfig
from xlmr_core import checkpoint as core
from xlmr_core._atomic import default_mode, save_lock, staging_folder
from xlmr_core.formats.base import BFLOAT16, LazyTensor
from xlmr_core.tokenizer_limits import fit_tokenizer_config

from .errors import ConversionError, CorruptFileError, DestinationExistsError, MissingFileError
from .progress import Progress, human_bytes, say

# Files a checkpoint directory carries besides its weights.
TOKENIZER_FILES = (
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


@contextlib.contextmanager
def staged_destination(destination: str | os.PathLike, *, overwrite: bool = False):
    """Yield an empty staging folder that becomes `destination` when the body succeeds.

    An existing `destination` is refused unless `overwrite`; then it is replaced as a
    whole (old files that the new checkpoint does not have are gone too). On any error
    or interrupt the staging folder is removed and `destination` is left as it was.
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise DestinationExistsError(f"{destination} exists; pass --overwrite to replace it")
    if destination.exists() and not destination.is_dir():
        raise ConversionError(f"{destination} exists and is not a directory")
    # The staging folder is locked while it lives, and stale ones of killed runs are removed.
    with staging_folder(destination) as stage:
        stage.chmod(default_mode("directory"))  # mkdtemp makes it private; the result is an ordinary folder
        yield stage
        with save_lock(destination):
            if destination.exists():
                # Named like a staging folder (and unlocked), so a kill before the rmtree leaves
                # something the next save or convert of `destination` removes.
                retired = destination.parent / f".{destination.name}.{secrets.token_hex(4)}.partial"
                os.replace(destination, retired)
                os.replace(stage, destination)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(stage, destination)


def read_config(directory: Path) -> XLMRobertaConfig:
    path = directory / "config.json"
    if not path.is_file():
        raise MissingFileError(f"no config.json in {directory}")
    try:
        return XLMRobertaConfig.from_pretrained(directory)
    except (ValueError, TypeError) as error:
        raise CorruptFileError(f"{path}: {error}") from None


def copy_tokenizer_files(source: Path, stage: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, stage / name)
            copied.append(name)
    return copied


def write_formats(
    stage: Path,
    tensors: Mapping[str, LazyTensor],
    config: XLMRobertaConfig,
    extra_formats: Iterable[str],
    *,
    max_shard_size=None,
    quiet: bool = False,
) -> list[str]:
    """Write the shared format and every extra format into `stage`; return the files written."""
    total = sum(t.nbytes for t in tensors.values())
    architecture = (config.architectures or [None])[0]
    written = []
    for fmt in dict.fromkeys(["safetensors", *extra_formats]):
        if fmt == "tf" and any(t.dtype == BFLOAT16 for t in tensors.values()):
            say(
                f"note: HDF5 has no bfloat16; {core.TF_WEIGHTS_NAME} stores those tensors as float32",
                quiet=quiet,
            )
        progress = Progress(f"writing {core.FORMAT_FILES[fmt]}", total, quiet=quiet)
        written += core.write_weights(
            stage,
            tensors,
            fmt,
            max_shard_size=max_shard_size if fmt == "safetensors" else None,
            architecture=architecture,
            progress=progress,
        )
        progress.close()
    config.save_pretrained(stage)
    return written + ["config.json"]


def convert(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    dtype: str | None = None,
    max_shard_size=None,
    extra_formats: Iterable[str] = (),
    overwrite: bool = False,
    quiet: bool = False,
) -> list[str]:
    """Convert the checkpoint directory `source` into `destination`; return the files written.

    Every tensor's shape is checked against `config.json` before anything is written.
    """
    source, destination = Path(source), Path(destination)
    extra_formats = list(extra_formats)
    core.check_writable(extra_formats)
    if max_shard_size is not None:
        try:
            core.parse_size(max_shard_size)
        except ValueError as error:
            raise ConversionError(str(error)) from None
    if destination.exists() and not overwrite:  # before any reading: fail fast
        raise DestinationExistsError(f"{destination} exists; pass --overwrite to replace it")
    core.detect_format(source)  # a missing or foreign directory is named before its config
    config = read_config(source)
    # Plain reads, not memory maps: a map keeps every page it touched resident to the end.
    with core.open_checkpoint(source, mmap=False) as checkpoint:
        tensors = core.canonicalize(checkpoint.tensors, config.tie_word_embeddings)
        core.check_shapes(tensors, config, checkpoint.files[0])
        if dtype is not None:
            tensors = {name: t.cast(core.FLOAT_DTYPES[dtype]) for name, t in tensors.items()}
            config = config.copy(torch_dtype=dtype)
        total = sum(t.nbytes for t in tensors.values())
        say(
            f"{source} ({checkpoint.format}, {len(tensors)} tensors, {human_bytes(total)}) -> {destination}",
            quiet=quiet,
        )
        with staged_destination(destination, overwrite=overwrite) as stage:
            written = write_formats(
                stage, tensors, config, extra_formats, max_shard_size=max_shard_size, quiet=quiet
            )
            written += copy_tokenizer_files(source, stage)
            fit_tokenizer_config(stage, config)
    return written
