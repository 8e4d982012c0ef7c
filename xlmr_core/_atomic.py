"""Writing files so that a crash or Ctrl-C never leaves a half-written one behind.

Directories are written in a staging folder beside them (`.<name>.<random>.partial`) and moved
into place holding a lock on the parent folder (`save_lock`); the staging folders of writers killed
before they finished are removed by the next save of the same directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

# (device, inode) of the staging folders this process holds (see `staging_folder`).
_CLAIMED: set[tuple[int, int]] = set()


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
def save_lock(directory: str | os.PathLike):
    """Hold the exclusive lock of saves into `directory`: a `flock` on its parent folder.

    Saves take it while they change the directory and while they create their staging
    folder, so two saves never interleave their moves and a cleaner never sees a staging
    folder before its writer has locked it. Locking the parent itself leaves no lock file
    behind (a lock file could never be removed safely); saves of other folders in the same
    parent wait for each other only for those short steps.
    """
    if fcntl is None:  # no advisory locks on this platform: saves are not serialised
        yield
        return
    fd = os.open(Path(directory).parent, os.O_RDONLY)
    if _inode(fd) in _CLAIMED:
        # Saving into a folder inside our own staging folder: our claim on it already keeps
        # every other process out, and a second flock of it would wait for ourselves.
        os.close(fd)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as error:
            # File systems that cannot lock a folder (NFS emulates flock with record locks,
            # which need a file open for writing): saves there are not serialised, and no
            # staging folder is ever taken for stale (`_claim` fails the same way).
            if error.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _inode(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _claim(path: Path) -> int | None:
    """An open descriptor of `path` holding its exclusive lock, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_staging(directory: str | os.PathLike) -> list[Path]:
    """Remove the staging folders of `directory` left by writers that died; return them.

    A live writer holds an exclusive `flock` on its staging folder from creation to removal,
    and the kernel drops it when the process dies however it dies (SIGKILL, OOM, power loss
    of a local disk), so a folder whose lock can be taken has no writer. Call it holding
    `save_lock(directory)`, which every writer holds while it creates and locks its folder.
    """
    directory = Path(directory)
    if fcntl is None or not directory.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(directory.name)}\.[a-z0-9_]{{8}}\.partial$")
    removed = []
    for item in directory.parent.iterdir():
        if not pattern.match(item.name) or item.is_symlink() or not item.is_dir():
            continue
        fd = _claim(item)
        if fd is None:
            continue
        try:
            shutil.rmtree(item, ignore_errors=True)
            removed.append(item)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def staging_folder(directory: str | os.PathLike):
    """Yield a new, empty staging folder beside `directory`, locked by this process.

    Stale staging folders of dead writers of the same `directory` are removed first (see
    `remove_stale_staging`). The folder is removed when the body ends, unless the body
    renamed it away (onto `directory`).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with save_lock(directory):
        remove_stale_staging(directory)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent)
        )
        fd = _claim(staging) if fcntl is not None else None
        if fd is not None:
            _CLAIMED.add(_inode(fd))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if fd is not None:
            _CLAIMED.discard(_inode(fd))
            os.close(fd)


def move_all(staging: Path, directory: Path) -> None:
    """Move every entry of `staging` into the existing `directory`, one `os.replace` each."""
    for item in sorted(staging.iterdir()):
        os.replace(item, directory / item.name)


@contextlib.contextmanager
def staged_directory(directory: str | os.PathLike, install: Callable[[Path, Path], None] = move_all):
    """Yield an empty staging folder whose files are moved into `directory` on success.

    Everything is written in the staging folder (a sibling of `directory`, so on the same
    file system). Only when the body finishes, holding `save_lock(directory)`, does the result
    go into place: a new `directory` is the staging folder renamed (it appears complete or not
    at all); into an existing one `install(staging, directory)` moves the files (by default
    one `os.replace` each; checkpoints order theirs so that a reader and a crash at any point
    see one whole checkpoint). A failure or interrupt before that removes the staging folder
    and leaves `directory` untouched; a SIGKILL leaves the folder, which the next save of
    `directory` removes.
    """
    directory = Path(directory)
    with staging_folder(directory) as staging:
        yield staging
        with save_lock(directory):
            if not directory.exists():
                os.chmod(staging, default_mode("directory"))
                os.replace(staging, directory)
                return
            install(staging, directory)
