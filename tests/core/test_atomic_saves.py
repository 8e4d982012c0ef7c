"""Saves that race each other or die half-way: one whole checkpoint survives, stale staging goes.

Writers run in child processes (localhost only, bounded by timeouts, always reaped); a
"kill at step k" child SIGKILLs itself just before its k-th file operation (rename, unlink,
link), for every k of a save, so every point between two steps of a save is tried.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xlmr_core import XLMRobertaConfig
from xlmr_core import checkpoint as ckpt

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL are POSIX")

# Six 1 KiB tensors: unsharded, 3 shards of 2 (limit 2500) or 6 shards of 1 (limit 1500).
NAMES = [f"w{i}" for i in range(6)]
SHARDING = {"single": None, "three": 2500, "six": 1500}

COMMON = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from xlmr_core import XLMRobertaConfig
    from xlmr_core import checkpoint as ckpt

    NAMES = [f"w{i}" for i in range(6)]
    SHARDING = {"single": None, "three": 2500, "six": 1500}

    def save(directory, value, sharding):
        state = {name: np.full(256, value, np.float32) for name in NAMES}
        config = XLMRobertaConfig(architectures=[f"V{value:g}"])
        ckpt.save_checkpoint(directory, state, config, max_shard_size=SHARDING[sharding])
    """
)


def run_child(code: str, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", COMMON + textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def save(directory, value, sharding):
    state = {name: np.full(256, value, np.float32) for name in NAMES}
    config = XLMRobertaConfig(architectures=[f"V{value:g}"])
    ckpt.save_checkpoint(directory, state, config, max_shard_size=SHARDING[sharding])


def saved_value(directory: Path) -> tuple[float, float]:
    """(the one value every tensor holds, the value config.json names); fails on a mix."""
    state = ckpt.load_checkpoint(directory)
    assert sorted(state) == NAMES
    values = {float(v) for array in state.values() for v in np.unique(array)}
    assert len(values) == 1, f"tensors of different saves mixed: {sorted(values)}"
    config = json.loads((directory / "config.json").read_text())
    return values.pop(), float(config["architectures"][0][1:])


def test_interleaved_saves_from_two_processes_leave_one_writers_checkpoint(tmp_path):
    target, go = tmp_path / "ckpt", tmp_path / "go"
    save(target, 0, "three")
    writer = """
        import time
        from pathlib import Path
        target, go, first, sharding = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        while not go.exists():
            time.sleep(0.001)
        for value in range(first, first + 40):
            save(target, value, sharding if sharding != "mixed" else ["three", "six"][value % 2])
    """
    args = [(100, "single"), (200, "mixed")]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                COMMON + textwrap.dedent(writer),
                str(target),
                str(go),
                str(first),
                sharding,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for first, sharding in args
    ]
    try:
        go.touch()
        for child in children:
            assert child.wait(timeout=120) == 0, child.stderr.read()[-2000:]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    weights, config = saved_value(target)
    assert weights in (139, 239)
    assert config == weights
    leftovers = [p.name for p in target.iterdir() if p.name not in ("config.json", "model.safetensors")]
    assert weights == 239 or leftovers == []  # the unsharded writer won: no shard of the other remains
    assert not list(tmp_path.glob(".ckpt.*"))  # no staging folder left behind


@pytest.mark.parametrize("old", ["single", "three"])
def test_a_save_killed_at_any_step_leaves_a_whole_checkpoint(tmp_path, old):
    """Old and new in every sharding pair; kill before each file operation of the new save."""
    child = """
        import json
        from pathlib import Path
        root, old = Path(sys.argv[1]), sys.argv[2]
        counted = ("replace", "rename", "unlink", "link")
        real = {name: getattr(os, name) for name in counted}

        def counting(name, box):
            def op(*args, **kwargs):
                box[0] += 1
                if box[0] == box[1]:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real[name](*args, **kwargs)
            return op

        report = {}
        for new in ("single", "three", "six"):
            # How many operations a full save takes (same directory state as every killed run).
            probe = root / f"probe-{new}"
            save(probe, 1, old)
            box = [0, -1]
            for name in counted:
                setattr(os, name, counting(name, box))
            save(probe, 2, new)
            for name, fn in real.items():
                setattr(os, name, fn)
            steps = box[0]
            report[new] = steps
            for k in range(1, steps + 1):
                target = root / f"{new}-{k}"
                save(target, 1, old)
                pid = os.fork()
                if pid == 0:
                    box[:] = [0, k]
                    for name in counted:
                        setattr(os, name, counting(name, box))
                    save(target, 2, new)
                    os._exit(0)
                _, status = os.waitpid(pid, 0)
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (new, k, status)
        print(json.dumps(report))
    """
    result = run_child(child, tmp_path, old, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = json.loads(result.stdout.strip().splitlines()[-1])
    for new, count in steps.items():
        assert count >= 3, (new, count)
        for k in range(1, count + 1):
            target = tmp_path / f"{new}-{k}"
            weights, config = saved_value(target)
            assert weights in (1, 2), (new, k)
            # config.json is never newer than the weights (older is the window before its rename).
            assert not (config == 2 and weights == 1), (new, k)
            assert list(tmp_path.glob(f".{target.name}.*.partial")), "the killed save left its staging"
            # The next save removes the killed one's staging folder and every stale file.
            save(target, 3, "three")
            assert saved_value(target) == (3, 3)
            assert not list(tmp_path.glob(f".{target.name}.*"))
            assert sorted(p.name for p in target.iterdir()) == [
                "config.json",
                "model-00001-of-00003.safetensors",
                "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors",
                "model.safetensors.index.json",
            ], (new, k)


LIVE_WRITER = """
    from pathlib import Path
    from xlmr_core._atomic import staging_folder
    with staging_folder(Path(sys.argv[1])) as staging:
        print(staging, flush=True)
        if sys.argv[2] == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.read()  # a live writer, busy until the test closes its stdin
"""


def later_save(target: Path) -> None:
    save(target, 5, "single")


def later_convert(target: Path) -> None:
    from conversion.convert import staged_destination

    with staged_destination(target, overwrite=True) as stage:
        save(stage / "sub", 5, "single")  # any content: the staging's life is what counts
        for item in (stage / "sub").iterdir():
            os.replace(item, stage / item.name)
        (stage / "sub").rmdir()


@pytest.mark.parametrize("later", [later_save, later_convert], ids=["save", "convert"])
def test_stale_staging_of_dead_writers_is_removed_and_live_writers_kept(tmp_path, later):
    target = tmp_path / "ckpt"
    save(target, 1, "single")
    code = COMMON + textwrap.dedent(LIVE_WRITER)
    live = subprocess.Popen(
        [sys.executable, "-c", code, str(target), "live"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        live_staging = Path(live.stdout.readline().strip())
        dead = run_child(LIVE_WRITER, target, "die")
        assert dead.returncode == -signal.SIGKILL
        dead_staging = Path(dead.stdout.strip())
        assert dead_staging.is_dir() and live_staging.is_dir()
        # A folder of the same shape left by an older version (never locked) is stale too.
        unlocked = tmp_path / ".ckpt.abcd_123.partial"
        unlocked.mkdir()
        # Another target's staging folder in the same parent is not this target's business.
        other = tmp_path / ".ckpt.b.abcd_123.partial"
        other.mkdir()
        later(target)
        assert not dead_staging.exists() and not unlocked.exists()
        assert live_staging.is_dir() and other.is_dir()
        assert saved_value(target) == (5, 5)
    finally:
        live.stdin.close()
        assert live.wait(timeout=30) == 0
    assert not live_staging.exists()
