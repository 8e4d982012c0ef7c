"""Errors of the converter, each with the exit status the command line returns for it."""

from __future__ import annotations

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


class MissingDependencyError(ConversionError):
    exit_code = EXIT_MISSING_DEPENDENCY


def require(module: str, what: str, extra: str):
    """Import `module`, or explain which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{what} needs {module}: pip install 'xlmr[{extra}]'") from None
