"""Running `examples/torch_finetune.py` (or another script) in-process or under torchrun, and
reading its results."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "torch_finetune.py"
TORCHRUN_TIMEOUT_S = 240

heavy = pytest.mark.skipif(
    os.environ.get("XLMR_HEAVY") != "1",
    reason="heavy multi-process test: set XLMR_HEAVY=1 (nox -s distributed runs them)",
)


def load_example():
    """The example as a module, so single-process runs need no new interpreter."""
    spec = importlib.util.spec_from_file_location("torch_finetune_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(nproc: int, args: list[str], timeout: float = TORCHRUN_TIMEOUT_S, script: Path = EXAMPLE) -> str:
    """Run `script` (the example by default) under `torchrun --standalone` (localhost, a free
    port, gloo on CPU); the whole process group is killed on timeout. Returns the combined output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # never look for another interface
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    process = subprocess.Popen(
        [*command, str(script), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so the workers die with it
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{output[-3000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output[-3000:]
    return output


def final_weights(output_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(output_dir / "final" / "model.safetensors")


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)
