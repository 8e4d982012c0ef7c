"""Importing xlmr_tf is quiet when TensorFlow's log level asks for it, and errors still show."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )


def test_import_prints_nothing_when_the_log_level_asks_for_quiet():
    result = run_python(
        "import xlmr_tf, tensorflow as tf; print(int(tf.constant(2) + 1))", TF_CPP_MIN_LOG_LEVEL="3"
    )
    assert result.returncode == 0 and result.stdout.strip() == "3"
    assert result.stderr == ""


def test_stderr_works_again_after_the_import():
    result = run_python("import sys, xlmr_tf; print('still here', file=sys.stderr)", TF_CPP_MIN_LOG_LEVEL="3")
    assert result.stderr.strip().endswith("still here")
