"""Texts per second through `RayPredictor` on a local Ray cluster with 1 and 2 workers, beside the
single-process pipeline on the same texts.

    python benchmarks/bench_ray.py [--framework torch] [--task sentence-embedding] [--count 4000]
        [--batch-size 64] [--workers 1 2] [--directory DIR]

Each Ray job is timed end to end: its workers start, import the framework, load the model,
answer every text, and the rows come back to the driver (a small job first fills the OS caches).
So the figures include each worker's start-up, as a real job pays it once. Needs xlmr[ray]. The
default model is the bundled xlmr-tiny; pass --directory for a real checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.core.texts import benchmark_sentences  # noqa: E402
from xlmr_core.pretrained import bundled_checkpoint  # noqa: E402


def ray_job(ray, predictor, task, directory, texts, workers: int, batch_size: int) -> float:
    """Seconds for one `map_batches` job over `texts` on `workers` workers."""
    dataset = ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(texts)])
    start = time.perf_counter()
    rows = dataset.map_batches(
        predictor,
        fn_constructor_args=(task, directory),
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
    ).take_all()
    elapsed = time.perf_counter() - start
    assert sorted(row["id"] for row in rows) == list(range(len(texts)))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--framework", choices=["torch", "tf", "flax"], default="torch")
    parser.add_argument("--task", default="sentence-embedding")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--directory", default=str(bundled_checkpoint()))
    args = parser.parse_args()

    import ray

    package = importlib.import_module(f"xlmr_{args.framework}")
    texts = benchmark_sentences(args.count)
    pipe = package.pipeline(args.task, args.directory, batch_size=args.batch_size)
    list(pipe(iter(texts[: args.batch_size])))  # warm-up (Flax compiles)
    start = time.perf_counter()
    list(pipe(iter(texts)))
    alone = time.perf_counter() - start

    ray.init(
        num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        print(
            f"{args.framework} {args.task}, {len(texts)} texts, "
            f"batch size {args.batch_size}, {os.cpu_count()} CPUs"
        )
        print(f"  single process, warm           {len(texts) / alone:8.1f} texts/s")
        for workers in args.workers:
            ray_job(ray, package.RayPredictor, args.task, args.directory, texts[: 4 * workers], workers, 4)
            seconds = ray_job(
                ray, package.RayPredictor, args.task, args.directory, texts, workers, args.batch_size
            )
            print(
                f"  Ray Data, {workers} worker(s), end to end {len(texts) / seconds:8.1f} texts/s "
                f"({seconds:.1f} s)"
            )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
