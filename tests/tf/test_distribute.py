"""`fit` under tf.distribute equals one device on the same global batch, to 1e-5.

MirroredStrategy (its default CPU collectives) runs on 2 logical CPU devices in one fresh
process (devices are fixed when TF starts); MultiWorkerMirroredStrategy with 2 worker
processes on localhost (TF_CONFIG) is heavy: XLMR_HEAVY=1 (nox -s distributed). The cases
(tests/tf/distribute_script.py): the model's own loss with AdamW and with SGD (Adam alone
would not see a loss summed over the replicas instead of averaged: it is scale-invariant),
token labels ignored unevenly across the replicas (the mean is over the global batch's real
labels), and `compile(loss=...)`, for which Keras builds the model on the replicas' averaged
(float) first batch, fitted twice under one strategy. A `fit` with a bad label under the
strategy gets the eager call's one-line error from the host-side batch check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from . import distribute_script
from .conftest import HEAVY, build

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5
# Attention key biases get exactly zero gradient in exact arithmetic (softmax ignores a constant
# added to all of a query's scores): Adam turns their rounding noise into learning-rate-sized
# steps, different for every summation order, so they are left out of the comparison.
EXACTLY_ZERO_GRADIENT = ".attention.self.key.bias"
# The default run's slice (each case traces two `fit`s; the uneven case also fails for a loss
# summed over the replicas; the compiled loss is fitted twice under one strategy, as a user
# fits a second model); XLMR_HEAVY=1 runs every case.
MIRRORED_CASES = (
    [case[0] for case in distribute_script.CASES] + ["compiled_loss"]
    if HEAVY
    else ["uneven_ignored_tokens", "compiled_loss", "compiled_loss"]
)


@pytest.fixture(scope="module")
def starts(tmp_path_factory):
    directory = tmp_path_factory.mktemp("starts")
    for name, head, _, _ in distribute_script.CASES:
        np.savez(directory / f"{name}.npz", **build(head, seed=3).canonical_state())
    return directory


def _python(*arguments, env=None, timeout=400):
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    command = [sys.executable, "-m", "tests.tf.distribute_script", *map(str, arguments)]
    return subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _compared(diffs: dict) -> dict:
    return {name: diff for name, diff in diffs.items() if not name.endswith(EXACTLY_ZERO_GRADIENT)}


def test_mirrored_strategy_on_two_devices_trains_like_one_device(starts, tmp_path):
    process = _python("mirrored", starts, tmp_path / "report.json", *MIRRORED_CASES)
    try:
        _, stderr = process.communicate(timeout=400)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    # The host-side batch check runs on each replica's part (labels [0, 1] and [1, 3]) before the
    # compiled step: the eager call's one-line error, naming the second part's values.
    assert report.pop("bad_label_error") == (
        "ValueError: labels must be in [0, 3) or -100 (ignored); got values from 1 to 3"
    )
    assert sorted(report) == sorted(set(MIRRORED_CASES) | {"compiled_loss#2"})
    for name, entry in report.items():
        assert entry["replicas"] == 2
        assert entry["moved"] > 1e-3, name  # the weights did train
        worst = max(_compared(entry["diff"]).items(), key=lambda item: item[1])
        assert worst[1] <= TOLERANCE, (name, worst)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.skipif(not HEAVY, reason="2 worker processes: set XLMR_HEAVY=1 (nox -s distributed)")
def test_multi_worker_mirrored_strategy_with_two_workers_trains_like_one_device(starts, tmp_path):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            processes.append(_python("worker", starts, tmp_path, env={"TF_CONFIG": json.dumps(config)}))
        for process in processes:
            _, stderr = process.communicate(timeout=500)
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:  # bounded: nothing outlives the test
            process.kill()
            process.wait()
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    for case in distribute_script.CASES:
        with np.load(tmp_path / f"{case[0]}.npz") as saved:
            replicated = dict(saved)
        assert int(replicated.pop("replicas")) == 2
        single = distribute_script.train(one, case, str(starts))
        diffs = _compared({k: float(np.abs(single[k] - replicated[k]).max()) for k in single})
        worst = max(diffs.items(), key=lambda item: item[1])
        assert worst[1] <= TOLERANCE, (case[0], worst)
