"""Peak memory and time of `xlmr-convert convert` on an xlm-roberta-large-sized checkpoint.

Builds a random float32 checkpoint of the large shape (560M parameters, ~2.24 GB) in a
temporary folder, then runs each conversion in its own process and reports its peak
resident memory (`ru_maxrss` of that process) and wall time, side by side with the naive
path (`load_checkpoint` -> cast -> `save_checkpoint`, everything in memory at once).
The target: peak < 1.5x the checkpoint's size. Everything is deleted at the end.

    python benchmarks/bench_convert.py            # large (default)
    python benchmarks/bench_convert.py --preset xlm-roberta-base
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from conversion import formats
from conversion.architecture import expected_shapes
from xlmr_core import XLMRobertaConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs one command as its child and prints the child's peak RSS (bytes) and wall time as JSON.
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"returncode": code, "peak_rss": peak, "seconds": elapsed}))
"""

_NAIVE = """
import sys, numpy as np
from xlmr_core import XLMRobertaConfig
from xlmr_core.checkpoint import load_checkpoint, save_checkpoint
state = {k: np.asarray(v).astype(np.float16) for k, v in load_checkpoint(sys.argv[1]).items()}
save_checkpoint(sys.argv[2], state, XLMRobertaConfig.from_pretrained(sys.argv[1]), max_shard_size="500MB")
"""


def build_checkpoint(directory: Path, preset: str, head: str = "ForMaskedLM", **config_overrides) -> int:
    """A random float32 checkpoint of the preset's shape (with `config_overrides`) for `head`,
    written tensor by tensor; returns its size in bytes."""
    config = XLMRobertaConfig.from_pretrained(preset, architectures=[f"XLMRoberta{head}"], **config_overrides)
    rng = np.random.default_rng(0)
    tensors = {
        name: formats.LazyTensor(
            shape,
            np.dtype(np.float32),
            lambda shape=shape: rng.standard_normal(shape, dtype=np.float32) * 0.02,
        )
        for name, shape in expected_shapes(config, head).items()
    }
    directory.mkdir(parents=True)
    formats.write_safetensors_checkpoint(directory, tensors)
    config.save_pretrained(directory)
    return sum(t.nbytes for t in tensors.values())


def measure(command: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if measured["returncode"] != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {measured['returncode']}")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="xlm-roberta-large", choices=["xlm-roberta-base", "xlm-roberta-large"]
    )
    parser.add_argument("--workdir", help="where to put the temporary checkpoints (default: system temp)")
    parser.add_argument("--skip-naive", action="store_true", help="do not run the in-memory comparison")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="xlmr-bench-convert-", dir=args.workdir))
    try:
        source = scratch / "source"
        start = time.perf_counter()
        size = build_checkpoint(source, args.preset)
        elapsed = time.perf_counter() - start
        print(f"built {args.preset}-shaped random checkpoint: {size / 1e9:.2f} GB in {elapsed:.0f} s")
        cli = [sys.executable, "-m", "conversion", "convert", "--quiet"]
        cases = [
            ("safetensors -> safetensors (float32)", cli + [str(source), str(scratch / "f32")]),
            (
                "-> float16, 500MB shards",
                cli + [str(source), str(scratch / "f16"), "--dtype", "float16", "--max-shard-size", "500MB"],
            ),
            (
                "-> bfloat16 + flax_model.msgpack",
                cli + [str(source), str(scratch / "bf16"), "--dtype", "bfloat16", "--format", "flax"],
            ),
        ]
        if not args.skip_naive:
            cases.append(
                (
                    "naive in-memory float16 (comparison)",
                    [sys.executable, "-c", _NAIVE, str(source), str(scratch / "naive")],
                )
            )
        print(f"{'conversion':<40} {'peak RSS':>10} {'x size':>7} {'time':>8}")
        for label, command in cases:
            result = measure(command)
            ratio = result["peak_rss"] / size
            print(f"{label:<40} {result['peak_rss'] / 1e9:>8.2f}GB {ratio:>7.2f} {result['seconds']:>7.1f}s")
            for name in ("f32", "f16", "bf16", "naive"):
                shutil.rmtree(scratch / name, ignore_errors=True)
        print("target: peak RSS < 1.5x the checkpoint size")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
