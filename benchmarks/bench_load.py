"""`from_pretrained` of a base-size checkpoint: median seconds per framework, fresh process each.

A random `xlm-roberta-base`-shaped bare model (12 layers, hidden 768, vocabulary 250,002; about
1.1 GB of float32 in model.safetensors) is written once with the torch wing (or `--checkpoint`
names an existing directory). Then each framework loads it `--runs` times, each time in a new
Python process, with and without `mmap=True`; the file is read once before the runs, so the page
cache is warm as it is for a user loading a model again. Import time is measured apart (the
framework and the model class imported before the clock starts) and not counted in the load.
Printed per framework and mode: median and range of the load seconds (wall clock), the median
CPU seconds of the loading process (a steadier figure on a shared machine) and, for reference,
the median import seconds. Issue 25's target: TF's plain load within 1.5 s.

    python benchmarks/bench_load.py [--runs 5] [--frameworks torch,tf,flax] [--checkpoint DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("torch", "tf", "flax")
CLASSES = {
    "torch": ("xlmr_torch", "XLMRobertaModel"),
    "tf": ("xlmr_tf", "TFXLMRobertaModel"),
    "flax": ("xlmr_flax", "FlaxXLMRobertaModel"),
}
TF_TARGET_SECONDS = 1.5

# Run in the child: import (timed apart), then one `from_pretrained`, printed as JSON.
_CHILD = """
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
module, name, directory, mmap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
start = time.perf_counter()
cls = getattr(__import__(module), name)
imported, cpu = time.perf_counter(), time.process_time()
model = cls.from_pretrained(directory, **({"mmap": True} if mmap else {}))
print(json.dumps({"import": imported - start, "load": time.perf_counter() - imported,
                  "cpu": time.process_time() - cpu}))
"""


def write_checkpoint(directory: Path) -> None:
    """A random base-shaped bare model (torch initialisation, seed 0)."""
    import torch

    from xlmr_core import XLMRobertaConfig
    from xlmr_torch import XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        type_vocab_size=1,
    )
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(directory)


def warm_page_cache(directory: Path) -> None:
    for path in sorted(directory.glob("*.safetensors")):
        with open(path, "rb", buffering=0) as f:
            while f.read(64 * 2**20):
                pass


def load_once(framework: str, directory: Path, mmap: bool) -> dict:
    """One fresh process: its import, load and CPU seconds."""
    module, name = CLASSES[framework]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, module, name, str(directory), "1" if mmap else "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=directory,  # not the repository: `PYTHONPATH` alone says which tree is measured
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{framework} load failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument(
        "--checkpoint", type=Path, help="a base-shaped checkpoint directory (else one is written)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"--frameworks: unknown {unknown}; choose from {FRAMEWORKS}")
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.checkpoint
        if directory is None:
            directory = Path(scratch) / "base"
            write_checkpoint(directory)
        warm_page_cache(directory)
        results = {}
        # Rounds interleave the frameworks and modes, so that a busy moment on a shared machine
        # does not land on one row alone.
        cases = [(framework, mmap) for framework in frameworks for mmap in (False, True)]
        runs = {case: [] for case in cases}
        for _ in range(args.runs):
            for case in cases:
                runs[case].append(load_once(case[0], directory, case[1]))
    print(f"{'framework':9} {'mmap':5} {'load s (median)':>15} {'range':>13} {'cpu s':>6} {'import s':>8}")
    for (framework, mmap), measured in runs.items():
        loads = [m["load"] for m in measured]
        row = {
            "load": statistics.median(loads),
            "min": min(loads),
            "max": max(loads),
            "cpu": statistics.median(m["cpu"] for m in measured),
            "import": statistics.median(m["import"] for m in measured),
        }
        results[f"{framework}{'_mmap' if mmap else ''}"] = row
        print(
            f"{framework:9} {str(mmap):5} {row['load']:15.2f} {row['min']:6.2f}–{row['max']:<6.2f} "
            f"{row['cpu']:6.2f} {row['import']:8.2f}"
        )
    if "tf" in frameworks:
        tf_load = results["tf"]["load"]
        verdict = "within" if tf_load <= TF_TARGET_SECONDS else "over"
        print(f"TF plain load {tf_load:.2f} s: {verdict} the {TF_TARGET_SECONDS} s target")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
