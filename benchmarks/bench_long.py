"""Long inputs: the forward pass of one sequence of 512, 2,048 and 8,192 tokens.

Base width (768, 12 heads), a config with `max_position_embeddings=8194` (the long-context
XLM-R checkpoints), `--layers` layers (default 2), random weights, float32, CPU, batch 1 with
no padding. Every row (framework, implementation, length) runs in a fresh process, so its peak
resident memory (`resource.getrusage` high-water mark) is its own: import, build the model, a
first call (tracing / compilation), then `--repeats` timed calls, median. Ours switches to
chunked-query attention above `xlmr_core.unpadding.LONG_INPUT_THRESHOLD` tokens; the reference
materialises `[heads, L, L]` scores per layer (3.2 GB in float32 at 8,192 tokens), so its rows
run only up to `--reference-up-to` tokens (default 2,048: the machine is shared).

    python benchmarks/bench_long.py [--framework flax|torch|tf|all] [--layers 2] [--repeats 2]
                                    [--lengths 512 2048 8192] [--reference-up-to 2048]
                                    [--positions absolute relative_key] [--memory-limit-gb 0]
                                    [--time-limit 900]

Each framework adds one `<framework>_forward(implementation, config)` below and its entry in
`FORWARDS`; the function returns `run(input_ids)` giving a numpy array.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LENGTHS = (512, 2048, 8192)
MAX_POSITIONS = 8194


# ----------------------------------------------------------------------------- per framework


def flax_forward(implementation: str, config):
    """Ours (`xlmr_flax`) or the reference's Flax port, `jax.jit`-compiled."""
    import jax
    import numpy as np

    if implementation == "ours":
        import xlmr_flax

        model = xlmr_flax.FlaxXLMRobertaModel(config, seed=0)
    else:
        import transformers

        model = transformers.FlaxXLMRobertaModel(transformers.XLMRobertaConfig(**config.to_dict()), seed=0)
    forward = jax.jit(lambda params, ids, mask: model(ids, mask, params=params).last_hidden_state)

    def run(input_ids):
        mask = np.ones_like(input_ids)
        return np.asarray(forward(model.params, input_ids, mask).block_until_ready())

    return run


def torch_forward(implementation: str, config):
    """Ours (`xlmr_torch`, eager) or the reference `XLMRobertaModel` holding the same weights."""
    import torch

    import xlmr_torch

    torch.manual_seed(0)
    model = xlmr_torch.XLMRobertaModel(config).eval()
    if implementation != "ours":
        import transformers

        reference = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**config.to_dict())).eval()
        missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise RuntimeError(f"weights do not line up: missing {missing}, unexpected {unexpected}")
        model = reference

    def run(input_ids):
        ids = torch.from_numpy(input_ids).long()
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.numpy()

    return run


def tf_forward(implementation: str, config):
    """Ours (`xlmr_tf`) or the reference's TF port (Keras 2), `tf.function(jit_compile=True)`."""
    import numpy as np
    import tensorflow as tf

    if implementation == "ours":
        import keras

        import xlmr_tf

        keras.utils.set_random_seed(0)
        model = xlmr_tf.TFXLMRobertaModel(config)
    else:
        import transformers  # its TF port imports tf_keras (Keras 2) itself

        model = transformers.TFXLMRobertaModel(transformers.XLMRobertaConfig(**config.to_dict()))

    @tf.function(jit_compile=True)
    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask, training=False).last_hidden_state

    def run(input_ids):
        ids = tf.constant(input_ids)
        return forward(ids, tf.ones_like(ids)).numpy().astype(np.float32)

    return run


FORWARDS = {"flax": flax_forward, "torch": torch_forward, "tf": tf_forward}


# ----------------------------------------------------------------------------- one row


def row(framework: str, implementation: str, length: int, layers: int, repeats: int, positions: str) -> dict:
    """Time one (framework, implementation, length) in this process; its peak RSS included."""
    import numpy as np

    from xlmr_core import XLMRobertaConfig

    config = XLMRobertaConfig.from_pretrained(
        "xlm-roberta-base",
        num_hidden_layers=layers,
        max_position_embeddings=MAX_POSITIONS,
        position_embedding_type=positions,
    )
    rng = np.random.default_rng(0)
    input_ids = rng.integers(5, config.vocab_size, size=(1, length)).astype(np.int32)
    input_ids[0, 0], input_ids[0, -1] = 0, 2
    run = FORWARDS[framework](implementation, config)
    start = time.perf_counter()
    out = run(input_ids)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(input_ids)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "framework": framework,
        "implementation": implementation,
        "length": length,
        "positions": positions,
        "first_s": first,
        "seconds": seconds,
        "tokens_per_s": length / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "finite": bool(np.isfinite(out).all()),
    }


def _limit_memory(gib: float):
    """A `preexec_fn` capping the row's address space, so an implementation that cannot fit fails
    with its allocator's error (reported as out of memory) instead of swapping a shared machine."""
    if not gib:
        return None
    limit = int(gib * 2**30)
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def fresh_row(framework, implementation, length, layers, repeats, positions="absolute", limits=(0, None)):
    """`row` in a fresh subprocess (its own peak memory), or the reason it failed.

    `limits`: `(memory GiB or 0, seconds or None)`; a row past either is reported as such."""
    memory_gib, seconds = limits
    command = [sys.executable, __file__, "--row", framework, implementation, str(length)]
    command += ["--layers", str(layers), "--repeats", str(repeats), "--positions", positions]
    failed = {"framework": framework, "implementation": implementation, "length": length}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds, preexec_fn=_limit_memory(memory_gib)
        )
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"too slow: over the {seconds} s limit"}
    if done.returncode != 0:
        if memory_gib and any(
            word in done.stderr for word in ("MemoryError", "can't allocate", "Out of memory", "bad_alloc")
        ):
            return {**failed, "error": f"out of memory under the {memory_gib} GiB cap"}
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"framework": framework, "implementation": implementation, "length": length, "error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--framework", choices=[*FORWARDS, "all"], default="all")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--reference-up-to", type=int, default=2048)
    parser.add_argument("--positions", nargs="+", default=["absolute", "relative_key"])
    parser.add_argument(
        "--memory-limit-gb", type=float, default=0, help="address-space cap per row (0: none)"
    )
    parser.add_argument("--time-limit", type=float, default=900, help="seconds per row")
    parser.add_argument("--json", type=Path, help="also write every row (failed and skipped included) here")
    parser.add_argument(
        "--row", nargs=3, metavar=("FRAMEWORK", "IMPLEMENTATION", "LENGTH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.row:
        framework, implementation, length = args.row
        positions = args.positions[0]
        print(
            json.dumps(row(framework, implementation, int(length), args.layers, args.repeats, positions)),
            flush=True,
        )
        return
    from bench_encode import cpu_flags

    print(f"cpu flags: {' '.join(cpu_flags()) or 'none'}; cores: {os.cpu_count()}", flush=True)
    print(
        f"xlm-roberta-base width, {args.layers} layers, max_position_embeddings={MAX_POSITIONS}, batch 1, "
        f"median of {args.repeats} calls after a first; a fresh process per row",
        flush=True,
    )
    limits = (args.memory_limit_gb, args.time_limit)
    cases = [
        (f, p, n)
        for f in FORWARDS
        if args.framework in ("all", f)
        for p in args.positions
        for n in args.lengths
    ]
    rows = []
    for framework, positions, length in cases:
        for implementation in ("reference", "ours"):
            label = f"{framework:<6} {positions:<13} {implementation:<9} {length:>6}"
            if implementation == "reference" and length > args.reference_up_to:
                print(f"{label}  skipped (--reference-up-to)")
                rows.append(
                    {
                        "framework": framework,
                        "implementation": implementation,
                        "length": length,
                        "positions": positions,
                        "skipped": f"over --reference-up-to {args.reference_up_to}",
                    }
                )
                continue
            result = fresh_row(
                framework, implementation, length, args.layers, args.repeats, positions, limits
            )
            rows.append({**result, "positions": positions})
            if "error" in result:
                print(f"{label}  failed: {result['error'][:200]}", flush=True)
                continue
            print(
                f"{label}  {result['tokens_per_s']:8.0f} tok/s  "
                f"peak RSS {result['peak_rss_mb']:7.0f} MB  first call {result['first_s']:6.1f} s",
                flush=True,
            )
    if args.json:
        settings = {
            "layers": args.layers,
            "repeats": args.repeats,
            "max_position_embeddings": MAX_POSITIONS,
            "reference_up_to": args.reference_up_to,
            "memory_limit_gb": args.memory_limit_gb,
            "time_limit_s": args.time_limit,
            "cpu_flags": cpu_flags(),
        }
        args.json.write_text(json.dumps({**settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
