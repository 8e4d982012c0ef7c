"""The project's error family and the helpers that keep every message to one short line.

Every module that raises for bad input imports from here: `OneLineError` is mixed into each
error class, so whatever text goes in (a path, a tensor name, a library's message) comes out as
one line of at most `MAX_MESSAGE` characters.
"""

from __future__ import annotations

import importlib

# Longest message of this project; longer library text is cut (the rule of one short line).
MAX_MESSAGE = 300


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


def require(module: str, what: str, extra: str):
    """Import `module`, or raise `MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{what} needs {module}: pip install 'xlmr[{extra}]'") from None
