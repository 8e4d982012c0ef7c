"""Peak memory and time of converting and loading an xlm-roberta-large-sized checkpoint.

Builds a random float32 checkpoint of the large shape (560M parameters, ~2.24 GB) in a
temporary folder and rewrites it as each of the reference's weight files
(`pytorch_model.bin`, `tf_model.h5`, `flax_model.msgpack`). Then, each in its own process,
it runs `xlmr-convert convert` from every format and `from_pretrained` of every installed
framework from every format, and reports the peak resident memory (`ru_maxrss` of that
process) and wall time, beside the naive path (`load_checkpoint` -> cast ->
`save_checkpoint`, everything in memory at once). The target: peak < 1.5x the
checkpoint's size. Everything is deleted at the end.

    python benchmarks/bench_convert.py            # large (default)
    python benchmarks/bench_convert.py --preset xlm-roberta-base --frameworks torch
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

from xlmr_core import XLMRobertaConfig
from xlmr_core.architecture import expected_shapes
from xlmr_core.checkpoint import write_weights
from xlmr_core.formats.base import LazyTensor

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
        name: LazyTensor(
            shape,
            np.dtype(np.float32),
            lambda shape=shape: rng.standard_normal(shape, dtype=np.float32) * 0.02,
        )
        for name, shape in expected_shapes(config, head).items()
    }
    directory.mkdir(parents=True)
    write_weights(directory, tensors)
    config.save_pretrained(directory)
    return sum(t.nbytes for t in tensors.values())


_LOAD = """
import importlib, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
framework, directory = sys.argv[1:3]
prefix = {"torch": "XLMRoberta", "tf": "TFXLMRoberta", "flax": "FlaxXLMRoberta"}[framework]
module = importlib.import_module("xlmr_" + framework)
getattr(module, prefix + "ForMaskedLM").from_pretrained(directory)
"""
FORMATS = ("safetensors", "torch", "tf", "flax")


def write_format(source: Path, directory: Path, fmt: str) -> None:
    """`source` rewritten as `fmt` alone (with its config), tensor by tensor."""
    from xlmr_core.checkpoint import open_checkpoint

    directory.mkdir(parents=True)
    shutil.copy(source / "config.json", directory)
    with open_checkpoint(source, mmap=False) as checkpoint:
        write_weights(directory, checkpoint.tensors, fmt, architecture="XLMRobertaForMaskedLM")


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
    parser.add_argument(
        "--frameworks", nargs="*", default=["torch", "tf", "flax"], help="frameworks whose loading to measure"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="xlmr-bench-convert-", dir=args.workdir))
    try:
        source = scratch / "source"
        start = time.perf_counter()
        size = build_checkpoint(source, args.preset)
        elapsed = time.perf_counter() - start
        print(f"built {args.preset}-shaped random checkpoint: {size / 1e9:.2f} GB in {elapsed:.0f} s")
        sources = {"safetensors": source}
        for fmt in FORMATS[1:]:
            start = time.perf_counter()
            sources[fmt] = scratch / f"source-{fmt}"
            write_format(source, sources[fmt], fmt)
            print(f"wrote the {fmt} file in {time.perf_counter() - start:.0f} s")
        cli = [sys.executable, "-m", "conversion", "convert", "--quiet"]
        cases = [
            (f"convert {fmt} -> safetensors", cli + [str(sources[fmt]), str(scratch / "out")])
            for fmt in FORMATS
        ]
        cases += [
            (
                "convert -> float16, 500MB shards",
                cli + [str(source), str(scratch / "out"), "--dtype", "float16", "--max-shard-size", "500MB"],
            ),
            (
                "convert -> bfloat16 + all formats",
                cli + [str(source), str(scratch / "out"), "--dtype", "bfloat16", "--format", "torch,tf,flax"],
            ),
        ]
        for framework in args.frameworks:
            for fmt in FORMATS:
                command = [sys.executable, "-c", _LOAD, framework, str(sources[fmt])]
                cases.append((f"load in {framework} from {fmt}", command))
        if not args.skip_naive:
            cases.append(
                (
                    "naive in-memory float16 (comparison)",
                    [sys.executable, "-c", _NAIVE, str(source), str(scratch / "out")],
                )
            )
        print(f"{'case':<40} {'peak RSS':>10} {'x size':>7} {'time':>8}")
        for label, command in cases:
            result = measure(command)
            ratio = result["peak_rss"] / size
            print(f"{label:<40} {result['peak_rss'] / 1e9:>8.2f}GB {ratio:>7.2f} {result['seconds']:>7.1f}s")
            shutil.rmtree(scratch / "out", ignore_errors=True)
        print("target: peak RSS < 1.5x the checkpoint size")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
