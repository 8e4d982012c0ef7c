"""`encode` in every framework: seconds to embed a corpus of short multilingual texts.

A base-width encoder (hidden 768, 12 heads, `--layers` layers, the bundled 4,002-piece
vocabulary so the embedding table stays small), random weights written once and loaded by
all three frameworks; `--texts` texts made from the bundled `heldout.tsv` sentences (one to
three joined, so lengths vary). For each framework a freshly loaded model runs `encode` twice:
cold (the first call, compilation included: what a user pays) and warm (the second call, on
the programs the first compiled). Printed per framework: seconds, texts/s, the ratio to
torch and how many programs were compiled (Flax: the jitted step's cache; TF: traces of its
encode function; torch: none). The frameworks run one after the other in one process, in
`--rounds` rounds with the order rotating, so the ratios come with their range over rounds.
Each call's process CPU time is printed beside its wall time: with `--threads 1` on a shared
machine it is the fairer figure, since other people's load lengthens the wall time only.

    python benchmarks/bench_encode.py [--texts 2000] [--layers 2] [--rounds 2] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizerFast  # noqa: E402
from xlmr_core.pretrained import bundled_checkpoint  # noqa: E402

FRAMEWORKS = ("torch", "tf", "flax")
BASE_CLASSES = {"torch": "XLMRobertaModel", "tf": "TFXLMRobertaModel", "flax": "FlaxXLMRobertaModel"}
TARGET_RATIO = 1.5  # issue 25: TF and Flax within 1.5x torch's time, cold start counted


def cpu_flags() -> list[str]:
    """The CPU's bf16 / AMX / AVX-512 flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
    return [flag for flag in wanted if flag in flags]


def limit_threads(threads: int) -> None:
    """Run every framework on `threads` threads (before any of them is imported), so that on a
    shared machine none spins on cores another holds and the ratios stay fair."""
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={str(threads > 1).lower()}"
        f" intra_op_parallelism_threads={threads}"
    ).strip()
    import tensorflow as tf
    import torch

    torch.set_num_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def corpus(count: int, seed: int = 0) -> list[str]:
    """`count` texts of one to three `heldout.tsv` sentences, reproducibly from `seed`."""
    lines = (bundled_checkpoint() / "heldout.tsv").read_text(encoding="utf-8").splitlines()
    sentences = [line.split("\t", 1)[1] for line in lines if "\t" in line]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(sentences, rng.integers(1, 4))) for _ in range(count)]


def build_checkpoint(directory: Path, layers: int) -> XLMRobertaConfig:
    """A random base-width checkpoint (torch initialisation, seed 0) in `directory`."""
    import torch

    from xlmr_torch import XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=4002,
        hidden_size=768,
        num_attention_heads=12,
        intermediate_size=3072,
        num_hidden_layers=layers,
        max_position_embeddings=514,
    )
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(directory)
    return config


def compiled_programs(framework: str, model) -> int | None:
    """How many programs `encode` has compiled on `model` (None: the framework compiles none)."""
    if framework == "flax":
        step = model.__dict__.get("_jitted_encode_step")
        return None if step is None else step._cache_size()
    if framework == "tf":
        return sum(model.__dict__.get("_encode_traces", {}).values())
    return None


def run_framework(framework: str, directory: Path, tokenizer, texts: list[str], batch_size: int) -> dict:
    """Load a fresh model, `encode` twice; seconds of each call and the compiled-program count."""
    import importlib

    cls = getattr(importlib.import_module(f"xlmr_{framework}"), BASE_CLASSES[framework])
    model = cls.from_pretrained(directory)
    times, cpu_times, embeddings = [], [], None
    for _ in range(2):
        start, cpu_start = time.perf_counter(), time.process_time()
        embeddings = model.encode(texts, tokenizer, batch_size=batch_size, show_progress_bar=False)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "cold_s": times[0],
        "warm_s": times[1],
        "cold_cpu_s": cpu_times[0],
        "warm_cpu_s": cpu_times[1],
        "programs": compiled_programs(framework, model),
        "embeddings": embeddings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--threads", type=int, help="threads per framework (default: the frameworks' own)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        limit_threads(args.threads)
    frameworks = [name for name in args.frameworks.split(",") if name]

    tokenizer = XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())
    texts = corpus(args.texts)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
    print(f"cpu: {platform.processor() or platform.machine()}, flags: {' '.join(cpu_flags()) or 'none'}")
    print(
        f"{len(texts)} texts, tokens per text: median {int(np.median(lengths))}, max {max(lengths)}, "
        f"{sum(lengths)} in all; hidden 768, {args.layers} layers, batch {args.batch_size}, "
        f"threads {args.threads or 'default'}"
    )

    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "model"
        build_checkpoint(directory, args.layers)
        for index in range(args.rounds):
            order = frameworks[index % len(frameworks) :] + frameworks[: index % len(frameworks)]
            results = {
                name: run_framework(name, directory, tokenizer, texts, args.batch_size) for name in order
            }
            rounds.append(results)
            line = ", ".join(
                f"{name} cold {r['cold_s']:.2f} s (cpu {r['cold_cpu_s']:.2f}) "
                f"warm {r['warm_s']:.2f} s (cpu {r['warm_cpu_s']:.2f}) programs {r['programs']}"
                for name, r in results.items()
            )
            print(f"round {index + 1}: {line}", flush=True)

    reference = frameworks[0]
    summary = {
        "cpu_flags": cpu_flags(),
        "texts": len(texts),
        "tokens": sum(lengths),
        "layers": args.layers,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "threads": args.threads,
        "reference": reference,
    }
    print(f"\n{'framework':<10}{'cold s':>9}{'warm s':>9}{'texts/s':>9}  {'cold / ' + reference:<32}programs")
    for name in frameworks:
        cold = [r[name]["cold_s"] for r in rounds]
        warm = [r[name]["warm_s"] for r in rounds]
        ratios = [r[name]["cold_s"] / r[reference]["cold_s"] for r in rounds]
        cpu_ratios = [r[name]["cold_cpu_s"] / r[reference]["cold_cpu_s"] for r in rounds]
        warm_ratios = [r[name]["warm_s"] / r[reference]["warm_s"] for r in rounds]
        agree = max(float(np.abs(r[name]["embeddings"] - r[reference]["embeddings"]).max()) for r in rounds)
        summary[name] = {
            "cold_s": min(cold),
            "warm_s": min(warm),
            "texts_per_s": len(texts) / min(warm),
            "cold_ratio_range": [min(ratios), max(ratios)],
            "cold_cpu_s": min(r[name]["cold_cpu_s"] for r in rounds),
            "warm_cpu_s": min(r[name]["warm_cpu_s"] for r in rounds),
            "cold_cpu_ratio_range": [min(cpu_ratios), max(cpu_ratios)],
            "warm_ratio_range": [min(warm_ratios), max(warm_ratios)],
            "programs": rounds[-1][name]["programs"],
            "max_abs_diff_vs_reference": agree,
        }
        ratio_text = f"{min(ratios):.2f}-{max(ratios):.2f}x"
        ratio_text += f" (cpu {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}x)"
        print(
            f"{name:<10}{min(cold):>9.2f}{min(warm):>9.2f}{len(texts) / min(warm):>9.0f}  "
            f"{ratio_text:<32}{rounds[-1][name]['programs']}  (max |diff| to {reference}: {agree:.1e})"
        )
    print(f"target: TF and Flax cold within {TARGET_RATIO}x of torch")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
