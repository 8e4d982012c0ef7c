"""A loaded model does not follow its file: rewriting `model.safetensors` in place (same size,
other values) or truncating it changes no output and crashes nothing, in torch, TF and Flax.

Each framework runs in a child process, so that a SIGBUS from reading a truncated memory map
fails the test instead of killing pytest. The expected outputs are the model's own before the
file changed; `mmap=True` (the opt-in that keeps the map) must give the same outputs on load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cross.harness import FRAMEWORKS

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, shutil, struct, sys
    from pathlib import Path
    import numpy as np
    from tests.cross.harness import example_inputs, flatten, load_adapter, without_labels
    from xlmr_core import XLMRobertaConfig

    framework, source, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    adapter = load_adapter(framework)
    config = XLMRobertaConfig.from_pretrained(source)
    inputs = without_labels(example_inputs("ForMaskedLM", config))

    def outputs(model):
        return {name: flatten(value) for name, value in adapter.forward(model, inputs).items()}

    def same(a, b, what):
        assert a.keys() == b.keys()
        for name in a:
            for part in a[name]:
                np.testing.assert_allclose(
                    a[name][part], b[name][part], rtol=0, atol=1e-6, err_msg=f"{what}: {name}{part}"
                )

    directory = work / "copy"
    shutil.copytree(source, directory)
    model = adapter.load(directory, "ForMaskedLM")
    before = outputs(model)
    same(outputs(adapter.load(source, "ForMaskedLM", mmap=True)), before, "mmap=True")

    path = directory / "model.safetensors"
    raw = path.read_bytes()
    data_start = 8 + struct.unpack("<Q", raw[:8])[0]
    values = np.frombuffer(raw[data_start:], np.float32)
    with open(path, "r+b") as file:  # in place: the same inode, the same size
        file.seek(data_start)
        file.write((1 - 3 * values).astype(np.float32).tobytes())
        file.flush()
        os.fsync(file.fileno())
    assert path.stat().st_size == len(raw)
    same(outputs(model), before, "after rewriting the file")
    os.truncate(path, data_start)
    same(outputs(model), before, "after truncating the file")
    print("unchanged")
    """
)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loaded_model_ignores_a_rewritten_or_truncated_file(framework, checkpoint, tmp_path):
    pytest.importorskip({"torch": "torch", "tf": "tensorflow", "flax": "flax"}[framework])
    directory, _ = checkpoint("ForMaskedLM")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, framework, str(directory), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    assert result.stdout.strip().endswith("unchanged")
