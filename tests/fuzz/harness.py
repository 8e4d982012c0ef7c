"""Running fuzz cases: each target in a child process of its own, with a memory limit and a timeout.

A case is `(target, seed, index)`; the child rebuilds it from those three (the generators are
deterministic), runs it and reports one of:

* `accepted` — it worked;
* `clean` — it raised one of the project's errors: a `ValueError`, `TypeError` or `OSError` (not a
  `UnicodeError`, not the `json` module's), raised from the project's own code (an `OSError` may come
  from the file system), with a message of one line and at most 300 characters;
* `crash` — anything else: another exception, a broken rule of the target (slow != fast), or the
  child killed (abort, segfault, the memory limit).

The parent sends one case at a time and waits `HANG_SECONDS`; a case that takes longer is a `hang`
(the child is killed and a fresh one takes the next case).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HANG_SECONDS = 20.0
MAX_MESSAGE = 300
# Where a clean error may be raised: the project's packages.
PROJECT_DIRS = tuple(
    str(REPO_ROOT / name) + os.sep
    for name in ("xlmr_core", "xlmr_torch", "xlmr_tf", "xlmr_flax", "conversion")
)


def is_clean(error: BaseException) -> tuple[bool, str]:
    """Whether `error` obeys the rule for bad input, and why not."""
    import json as json_module

    if not isinstance(error, (ValueError, TypeError, OSError)):
        return False, "not a ValueError/TypeError/OSError"
    if isinstance(error, (UnicodeError, json_module.JSONDecodeError)):
        return False, "a library's decoding error"
    message = str(error)
    if not message.strip():
        return False, "empty message"
    if "\n" in message or len(message) > MAX_MESSAGE:
        return False, f"message of {len(message)} characters on {message.count(chr(10)) + 1} lines"
    if isinstance(error, OSError):
        return True, ""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = frame.tb_frame.f_code.co_filename if frame is not None else ""
    if not where.startswith(PROJECT_DIRS):
        return False, f"raised in {where}"
    return True, ""


def describe(error: BaseException) -> str:
    """`Type: first 200 characters of the message (file:line of the raise)`."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = ""
    if frame is not None:
        where = f" ({Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno})"
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}{where}"


@dataclasses.dataclass
class Tally:
    """Counts of one or more fuzz runs, and the first few failures of each target."""

    cases: int = 0
    clean: int = 0
    accepted: int = 0
    crashes: int = 0
    hangs: int = 0
    ties: int = 0  # accepted cases where slow and fast differ by a segmentation tie alone
    failures: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        for name in ("cases", "clean", "accepted", "crashes", "hangs", "ties", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures

    def line(self) -> str:
        return (
            f"fuzz: {self.cases} cases, {self.clean} clean errors, {self.accepted} accepted, "
            f"{self.crashes} crashes, {self.hangs} hangs"
        )


class _Child:
    """One worker process running cases of one target."""

    def __init__(self, target: str, seed: int, memory_mb: int | None):
        command = [sys.executable, "-m", "tests.fuzz.worker", target, str(seed), str(memory_mb or 0)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._log = tempfile.TemporaryFile()  # the worker's stderr, shown if it cannot start
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self._buffer = b""
        try:
            ready = self._read_line(timeout=600.0)  # imports (a framework) and set-up come first
        except EOFError:
            ready = None
        if ready is None or json.loads(ready).get("ready") is not True:
            self.kill()
            self._log.seek(0)
            tail = self._log.read().decode(errors="replace")[-600:]
            raise RuntimeError(f"the fuzz worker for {target} did not start: {tail}")

    def _read_line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        stream = self.process.stdout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([stream], [], [], left)
            if not readable:
                return None
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def run(self, index: int, timeout: float) -> dict:
        try:
            self.process.stdin.write(f"{index}\n".encode())
            self.process.stdin.flush()
            line = self._read_line(timeout)
        except (EOFError, BrokenPipeError):
            code = self.process.wait()
            how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
            return {"outcome": "crash", "detail": f"the worker process died ({how})", "dead": True}
        if line is None:
            return {"outcome": "hang", "detail": f"no answer within {timeout:.0f} s", "dead": True}
        return json.loads(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()


def run_target(
    target: str,
    cases: int,
    *,
    seed: int = 0,
    memory_mb: int | None = 4096,
    timeout: float = HANG_SECONDS,
    start: int = 0,
) -> Tally:
    """Run cases `start .. start + cases - 1` of `target` in a child process; a fresh child after
    each death or hang."""
    tally = Tally()
    began = time.monotonic()
    child = _Child(target, seed, memory_mb)
    try:
        for index in range(start, start + cases):
            result = child.run(index, timeout)
            tally.cases += 1
            outcome = result["outcome"]
            if outcome == "accepted":
                tally.accepted += 1
                tally.ties += bool(result.get("tie"))
            elif outcome == "clean":
                tally.clean += 1
            else:
                if outcome == "hang":
                    tally.hangs += 1
                else:
                    tally.crashes += 1
                tally.failures.append(
                    f"{target}[seed={seed}, case={index}] {outcome}: {result.get('detail')}"
                )
            if result.get("dead"):
                child.kill()
                child = _Child(target, seed, memory_mb)
    finally:
        child.kill()
    tally.seconds = time.monotonic() - began
    return tally


# Cases per target in the default test run (about 1,000 in all); `XLMR_FUZZ_SCALE` (or
# `python -m tests.fuzz --scale`) multiplies them. `nox -s fuzz` runs scale 25: 10,000 texts
# through slow and fast, some 25,000 cases in all.
DEFAULT_CASES = {
    "text": 400,
    "decode": 100,
    "safetensors": 100,
    "weight_files": 60,
    "config": 100,
    "tokenizer_json": 60,
    "sentencepiece": 60,
    "special_tokens": 80,
    "cli": 40,
    "model_torch": 30,
    "model_tf": 20,
    "model_flax": 10,
}
# Targets that reach native code (SentencePiece, tokenizers) or only Python run under a memory
# limit (MB of address space); the frameworks reserve far more address space than they use.
MEMORY_LIMIT_MB = 4096
UNLIMITED = ("model_torch", "model_tf", "model_flax", "cli")
FRAMEWORK_OF = {"model_torch": "torch", "model_tf": "tensorflow", "model_flax": "flax"}


def cases_for(target: str, scale: float) -> int:
    return max(1, round(DEFAULT_CASES[target] * scale))


def memory_for(target: str) -> int | None:
    return None if target in UNLIMITED else MEMORY_LIMIT_MB


def available(target: str) -> bool:
    """Model-input targets need their framework installed."""
    import importlib.util

    module = FRAMEWORK_OF.get(target)
    return module is None or importlib.util.find_spec(module) is not None


# What the fuzz tests of one pytest session ran (tests/fuzz/conftest.py prints it at the end).
TOTAL = Tally()
