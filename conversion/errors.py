"""Errors of the converter, each with the exit status the command line returns for it."""

from __future__ import annotations

import argparse
import sys

from xlmr_core.checkpoint import (
    CheckpointError,
    CheckpointShapeError,
    UnsupportedCheckpointError,
)
from xlmr_core.configuration import ConfigError
from xlmr_core.errors import MAX_MESSAGE, MissingDependencyError, clip
from xlmr_core.tokenization_base import TokenizerError

# Exit statuses, documented in `xlmr-convert --help`.
EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING_FILE = 3
EXIT_CORRUPT_FILE = 4
EXIT_SHAPE_MISMATCH = 5
EXIT_UNKNOWN_FORMAT = 6
EXIT_DESTINATION_EXISTS = 7
EXIT_MISSING_DEPENDENCY = 8
EXIT_EXPORT_FAILED = 10
EXIT_OTHER = 9
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit status:
  0  success
  1  verify: a comparison is above its tolerance (FAIL)
  2  usage error (bad arguments)
  3  a file or directory is missing
  4  a file is corrupt, truncated, or holds more than tensors and plain containers
  5  a tensor has the wrong shape
  6  unknown or unsupported checkpoint format
  7  DST exists (pass --overwrite to replace it)
  8  a needed library or device is missing (the message names the extra to install)
  9  any other error (permission denied, disk full, an internal error): the message says which
  10 export: the exporter failed, or the artifact does not match the eager model
  130 interrupted (Ctrl-C); nothing was written"""


class ConversionError(Exception):
    """A problem the command line reports as one line, with its own exit status."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class MissingFileError(ConversionError):
    exit_code = EXIT_MISSING_FILE


class CorruptFileError(ConversionError):
    exit_code = EXIT_CORRUPT_FILE


class ShapeMismatchError(ConversionError):
    exit_code = EXIT_SHAPE_MISMATCH


class UnknownFormatError(ConversionError):
    exit_code = EXIT_UNKNOWN_FORMAT


class DestinationExistsError(ConversionError):
    exit_code = EXIT_DESTINATION_EXISTS


class ExportError(ConversionError):
    """`xlmr-convert export`: the exporter failed, or its artifact does not match the eager model."""

    exit_code = EXIT_EXPORT_FAILED


# The core's errors (xlmr_core.errors and the modules that define theirs) and the exit status
# each one means here. A missing library is the core's `MissingDependencyError` wherever it is raised.
_CORE_EXIT_CODES = (
    (CheckpointShapeError, EXIT_SHAPE_MISMATCH),
    (UnsupportedCheckpointError, EXIT_UNKNOWN_FORMAT),
    (CheckpointError, EXIT_CORRUPT_FILE),
    (ConfigError, EXIT_CORRUPT_FILE),
    (TokenizerError, EXIT_CORRUPT_FILE),
    (FileNotFoundError, EXIT_MISSING_FILE),
    (NotADirectoryError, EXIT_MISSING_FILE),  # a file given where the checkpoint directory belongs
    (MissingDependencyError, EXIT_MISSING_DEPENDENCY),
)
REPORTED = (
    ConversionError,
    CheckpointError,
    ConfigError,
    TokenizerError,
    FileNotFoundError,
    NotADirectoryError,
    MissingDependencyError,
)


def exit_code(error: BaseException) -> int:
    """The exit status for one of the `REPORTED` errors."""
    if isinstance(error, ConversionError):
        return error.exit_code
    return next((code for kind, code in _CORE_EXIT_CODES if isinstance(error, kind)), EXIT_OTHER)


def one_line(error: BaseException) -> str:
    """The error's message as one line of at most `MAX_MESSAGE` characters."""
    return clip(str(error), MAX_MESSAGE) or type(error).__name__


def run_command(prog: str, parser, run, argv, usage_errors: tuple = ()) -> int:
    """Parse `argv` with `parser` and return `run(args)`'s exit status. Every error ends as one
    line on stderr and its exit status, never a Traceback: the `REPORTED` errors by `exit_code`,
    `usage_errors` (a command's own) as usage, anything unexpected as exit 9."""
    try:
        return run(parser.parse_args(argv))
    except REPORTED as error:
        sys.stderr.write(f"{prog}: error: {one_line(error)}\n")
        return exit_code(error)
    except usage_errors as error:
        sys.stderr.write(f"{prog}: error: {one_line(error)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted; nothing was written\n")
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except Exception as error:
        sys.stderr.write(f"{prog}: error: {one_line(f'{type(error).__name__}: {error}')}\n")
        return exit_code(error)


class CommandParser(argparse.ArgumentParser):
    """`argparse` whose usage errors are a `ConversionError` (one line, exit 2, via `run_command`)
    instead of argparse's own exit."""

    def error(self, message):
        self.print_usage(sys.stderr)
        raise ConversionError(message)


def positive_int(text: str) -> int:
    """An argparse `type=` for a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value
