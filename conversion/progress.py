"""A small progress indicator on stderr (no dependency): a live line on a terminal, a few lines in logs."""

from __future__ import annotations

import sys
import time


def human_bytes(size: float) -> str:
    """`2_240_000_000` -> `"2.24 GB"` (decimal units, like `--max-shard-size`)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Counts bytes through one step of the work and shows how far it is.

    On a terminal the line is redrawn in place; elsewhere (a log file, a pipe) a line is
    printed at every tenth of a large job. `quiet=True` prints nothing.
    """

    def __init__(self, label: str, total: int, *, quiet: bool = False, stream=None):
        self.label = label
        self.total = max(int(total), 1)
        self.done = 0
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.live = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()
        self._last_tenth = 0
        self._last_draw = 0.0

    def advance(self, nbytes: int) -> None:
        self.done += int(nbytes)
        if self.quiet:
            return
        if self.live:
            now = time.perf_counter()
            if now - self._last_draw > 0.1 or self.done >= self.total:
                self._last_draw = now
                self.stream.write(f"\r{self._line()}")
                self.stream.flush()
        elif self.total > 100_000_000:
            tenth = min(10, self.done * 10 // self.total)
            if tenth > self._last_tenth and tenth < 10:
                self._last_tenth = tenth
                self.stream.write(self._line() + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        end = "\r" if self.live else ""
        self.stream.write(f"{end}{self.label}: {human_bytes(self.done)} in {elapsed:.1f} s\n")
        self.stream.flush()

    def _line(self) -> str:
        width = 30
        filled = int(width * min(self.done, self.total) / self.total)
        percent = 100 * min(self.done, self.total) / self.total
        bar = "#" * filled + "." * (width - filled)
        return f"{self.label}: [{bar}] {percent:3.0f}% {human_bytes(self.done)}/{human_bytes(self.total)}"


def say(message: str, *, quiet: bool = False) -> None:
    """An informational line on stderr (stdout is kept for a command's real output)."""
    if not quiet:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
