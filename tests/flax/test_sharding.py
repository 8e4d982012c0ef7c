"""Partition rules: every layout on a 2x2 mesh of fake CPU devices trains like one device,
and sharding shrinks the bytes each device holds as the layout says.

The 4-device runs need `XLA_FLAGS` before JAX starts, so they run `sharding_worker.py` in a
fresh interpreter; the rule tests below run here on the one real device.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("jax")

from tests.conftest import REPO_ROOT  # noqa: E402
from xlmr_flax import sharding  # noqa: E402

WORKER = REPO_ROOT / "tests" / "flax" / "sharding_worker.py"
TOLERANCE = 1e-5
heavy = pytest.mark.skipif(
    os.environ.get("XLMR_HEAVY") != "1",
    reason="heavy multi-device test: set XLMR_HEAVY=1 (nox -s distributed runs them)",
)
# Per-device parameter bytes over one device's, from the tiny model's shapes: FSDP halves
# every matrix, TP halves the head/FFN/vocabulary ones, both quarter them. Vectors
# (LayerNorm, output biases) stay whole, hence the margins.
MAX_BYTES_RATIO = {"dp": 1.0, "fsdp": 0.55, "tp": 0.62, "fsdp_tp": 0.33}


def _env(devices: int) -> dict:
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(REPO_ROOT),
    )


def _report(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def run_worker(head: str, steps: int, layouts: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, str(WORKER), head, str(steps), *layouts],
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _report(result.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(head: str, steps: int, layout: str) -> dict:
    """Two processes with 2 fake devices each, one `jax.distributed` mesh (gloo collectives)."""
    port = str(_free_port())
    command = [sys.executable, str(WORKER), head, str(steps), layout, "--distributed"]
    processes = [
        subprocess.Popen(
            [*command, str(i), port],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=600)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert all(p.returncode == 0 for p in processes), outputs[0][-3000:]
    return _report(outputs[0])


@pytest.fixture(scope="module")
def fast_report():
    # The default run: the layout that uses both mesh axes, on the tied masked-LM head.
    return run_worker("ForMaskedLM", 3, ["fsdp_tp"])


def _assert_matches_one_device(result):
    assert result["max_param_diff"] <= TOLERANCE
    assert result["max_loss_diff"] <= TOLERANCE
    assert result["max_logit_diff"] <= TOLERANCE


def _assert_bytes_shrink(report, layout):
    single, result = report["single"]["bytes"], report[layout]["bytes"]
    for part in ("params", "opt_state"):
        assert result[part] <= MAX_BYTES_RATIO[layout] * single[part], (part, result, single)
    # the training step keeps the layout, and the shards really are that size
    assert report[layout]["bytes_after_training"] == result["params"] == report[layout]["addressable_bytes"]


def test_fsdp_tp_mesh_trains_like_one_device(fast_report):
    _assert_matches_one_device(fast_report["fsdp_tp"])


def test_fsdp_tp_mesh_quarters_the_matrices(fast_report):
    _assert_bytes_shrink(fast_report, "fsdp_tp")
    assert fast_report["fsdp_tp"]["query_kernel_spec"] == "P('data', 'model')"


@pytest.fixture(scope="module", params=["ForMaskedLM", "ForSequenceClassification"])
def full_report(request):
    if os.environ.get("XLMR_HEAVY") != "1":
        pytest.skip("heavy multi-device test: set XLMR_HEAVY=1 (nox -s distributed runs them)")
    return run_worker(request.param, 4, list(sharding.LAYOUTS))


@pytest.mark.parametrize("layout", list(sharding.LAYOUTS))
def test_every_layout_trains_like_one_device(full_report, layout):
    _assert_matches_one_device(full_report[layout])


@pytest.mark.parametrize("layout", list(sharding.LAYOUTS))
def test_every_layout_shrinks_bytes_per_device(full_report, layout):
    _assert_bytes_shrink(full_report, layout)


@heavy
def test_two_jax_processes_train_like_one_device():
    report = run_two_processes("ForMaskedLM", 3, "fsdp_tp")
    assert report["fsdp_tp"]["process_count"] == 2
    _assert_matches_one_device(report["fsdp_tp"])


# ----------------------------------------------------------------------------- the rules

MESH_2X2 = SimpleNamespace(shape={"data": 2, "model": 2})  # spec_for reads only the axis sizes
QUERY = "roberta/encoder/layer/0/attention/self/query/kernel"


@pytest.mark.parametrize(
    "layout, expected",
    [("dp", (None, None)), ("fsdp", ("data", None)), ("tp", (None, "model")), ("fsdp_tp", ("data", "model"))],
)
def test_query_kernel_spec_per_layout(layout, expected):
    assert tuple(sharding.spec_for(QUERY, (32, 32), MESH_2X2, layout)) == expected


@pytest.mark.parametrize(
    "path, shape, expected",
    [
        ("roberta/encoder/layer/3/attention/output/dense/kernel", (32, 32), ("model", "data")),
        ("roberta/encoder/layer/0/intermediate/dense/kernel", (32, 40), ("data", "model")),
        ("roberta/encoder/layer/0/intermediate/dense/bias", (40,), ("model",)),
        ("roberta/encoder/layer/0/output/dense/kernel", (40, 32), ("model", "data")),
        ("roberta/embeddings/word_embeddings/embedding", (100, 32), ("model", "data")),
        ("roberta/embeddings/position_embeddings/embedding", (64, 32), ("data", None)),
        ("roberta/embeddings/LayerNorm/scale", (32,), ()),
    ],
)
def test_rules_shard_heads_ffn_and_vocabulary(path, shape, expected):
    assert tuple(sharding.spec_for(path, shape, MESH_2X2, "fsdp_tp")) == expected


@pytest.mark.parametrize("shape, expected", [((32, 37), ("data", None)), ((99, 32), (None, "data"))])
def test_indivisible_dimensions_stay_replicated(shape, expected):
    path = "intermediate/dense/kernel" if shape[1] == 37 else "word_embeddings/embedding"
    assert tuple(sharding.spec_for(path, shape, MESH_2X2, "fsdp_tp")) == expected


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of"):
        sharding.spec_for(QUERY, (32, 32), MESH_2X2, "zero")
