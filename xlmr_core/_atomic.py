"""Writing files so that a crash or Ctrl-C never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def default_mode(kind: str) -> int:
    """The permissions an ordinary `open()` / `mkdir()` would give, for "file" or "directory".

    Temporary files and folders are created private (0600 / 0700); what we rename into
    place should instead look like anything else the user writes.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o666 if kind == "file" else 0o777) & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file renamed into place."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    `path` is left as it was.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, default_mode("file"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_directory(directory: str | os.PathLike):
    """Yield an empty staging folder whose files are moved into `directory` on success.

    Everything is written in the staging folder (a sibling of `directory`, so on the
    same file system); only when the body finishes are the files renamed into place,
    one `os.replace` each. A failure or interrupt before that removes the staging
    folder and leaves `directory` untouched. A new `directory` is created by renaming
    the whole staging folder, so it appears complete or not at all.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent))
    try:
        yield staging
        if not directory.exists():
            os.chmod(staging, default_mode("directory"))
            os.replace(staging, directory)
            return
        for item in sorted(staging.iterdir()):
            os.replace(item, directory / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
