"""`examples/flax_distributed.py` as 2 `jax.distributed` processes (1 CPU device each, gloo)
writes a checkpoint that loads, with the weights of a 1-process run on the same data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")

from tests.conftest import REPO_ROOT  # noqa: E402

EXAMPLE = REPO_ROOT / "examples" / "flax_distributed.py"
TIMEOUT_S = 600
TOLERANCE = 1e-5
# Masked LM: the tied word embedding is sharded over the vocabulary, as in real training.
COMMON = ["--head", "ForMaskedLM", "--layout", "fsdp", "--steps", "2", "--local-devices", "1"]

heavy = pytest.mark.skipif(
    os.environ.get("XLMR_HEAVY") != "1",
    reason="heavy multi-process test: set XLMR_HEAVY=1 (nox -s distributed runs them)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(commands: list[list[str]]) -> list[str]:
    """Run the example once per argument list, all at the same time; returns their outputs."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    env.pop("XLA_FLAGS", None)  # --local-devices sets the device count
    processes = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLE), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, killed whole below
        )
        for args in commands
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return outputs


@heavy
def test_two_processes_save_the_weights_of_one(tmp_path):
    from safetensors.numpy import load_file

    from xlmr_flax import FlaxXLMRobertaForMaskedLM

    _run([[*COMMON, "--output", str(tmp_path / "single")]])
    coordinator = f"127.0.0.1:{_free_port()}"
    distributed = [*COMMON, "--coordinator", coordinator, "--num-processes", "2"]
    outputs = _run(
        [[*distributed, "--process-id", str(i), "--output", str(tmp_path / "two")] for i in range(2)]
    )
    assert "2 process(es), 2 device(s)" in outputs[0]

    model = FlaxXLMRobertaForMaskedLM.from_pretrained(tmp_path / "two")
    assert model.config.vocab_size == 128
    single, two = (load_file(tmp_path / name / "model.safetensors") for name in ("single", "two"))
    assert single.keys() == two.keys()
    assert max(float(np.abs(single[k] - two[k]).max()) for k in single) <= TOLERANCE
