"""xlmr_flax (jitted) against xlmr_torch, side by side in one process, on CPU.

Times an encoder forward pass and a fine-tuning train step (sequence classification,
AdamW, dropout on) on an xlm-roberta-base-sized config, batch 8 x 128, float32, and prints
tokens/s and the Flax/torch ratio. JAX compile time is measured and reported separately
(it is paid once per input shape); the timed runs reuse the compiled functions.

    python benchmarks/bench_flax.py [--batch 8] [--length 128] [--repeats 5] [--layers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import xlmr_flax
import xlmr_torch
from xlmr_core import XLMRobertaConfig
from xlmr_flax.training import create_optimizer, create_train_state, make_train_step


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_forward(config, ids, mask, repeats):
    """The bare encoder with pooler, no gradients: (name, torch s, flax s, compile s)."""
    torch.manual_seed(0)
    torch_model = xlmr_torch.XLMRobertaModel(config).eval()
    ids_t, mask_t = torch.from_numpy(ids).long(), torch.from_numpy(mask).long()

    def torch_forward():
        with torch.inference_mode():
            torch_model(ids_t, attention_mask=mask_t).last_hidden_state.sum().item()

    flax_forward, compile_seconds = compile_forward(xlmr_flax.FlaxXLMRobertaModel(config, seed=0), ids, mask)
    return "forward", timed(torch_forward, repeats), timed(flax_forward, repeats), compile_seconds


def compile_forward(flax_model, ids, mask):
    """(`run()`, compile seconds): `flax_model`'s jitted forward on these inputs, compiled ahead.

    Works for any Flax model called as `model(input_ids, attention_mask, params=...)`, ours
    and the reference's alike; `run()` blocks until the last hidden state is computed.
    """
    forward = jax.jit(lambda params, i, m: flax_model(i, m, params=params).last_hidden_state)
    ids_j, mask_j = jnp.asarray(ids), jnp.asarray(mask)
    start = time.perf_counter()
    compiled_forward = forward.lower(flax_model.params, ids_j, mask_j).compile()
    compile_seconds = time.perf_counter() - start

    def run():
        compiled_forward(flax_model.params, ids_j, mask_j).block_until_ready()

    return run, compile_seconds


def bench_train_step(config, ids, mask, labels, repeats):
    """Sequence classification, AdamW, gradient clipping, dropout on: (name, torch s, flax s, compile s)."""
    torch.manual_seed(0)
    torch_classifier = xlmr_torch.XLMRobertaForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(torch_classifier.parameters(), lr=2e-5, weight_decay=0.01)
    ids_t, mask_t = torch.from_numpy(ids).long(), torch.from_numpy(mask).long()
    labels_t = torch.from_numpy(labels).long()

    def torch_step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch_classifier(ids_t, attention_mask=mask_t, labels=labels_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(torch_classifier.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    flax_classifier = xlmr_flax.FlaxXLMRobertaForSequenceClassification(config, seed=0)
    state = create_train_state(flax_classifier, create_optimizer(2e-5, num_train_steps=1000), seed=0)
    flax_classifier.params = None  # the state holds them; one copy in memory
    batch = {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.asarray(mask),
        "labels": jnp.asarray(labels),
    }
    step = make_train_step(flax_classifier, donate=True)
    start = time.perf_counter()
    compiled_step = step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def flax_step():
        holder["state"], metrics = compiled_step(holder["state"], batch)
        return float(metrics["loss"])

    return "train step", timed(torch_step, repeats), timed(flax_step, repeats), compile_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=None, help="override num_hidden_layers (quick runs)")
    args = parser.parse_args()

    overrides = {"num_labels": 2}
    if args.layers is not None:
        overrides["num_hidden_layers"] = args.layers
    config = XLMRobertaConfig.from_pretrained("xlm-roberta-base", **overrides)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, size=(args.batch, args.length)).astype(np.int32)
    ids[:, 0] = 0
    mask = np.ones_like(ids)
    labels = rng.integers(0, 2, size=args.batch).astype(np.int32)
    tokens = args.batch * args.length
    print(
        f"config xlm-roberta-base ({config.num_hidden_layers} layers, vocab {config.vocab_size}), "
        f"batch {args.batch} x {args.length}, float32, CPU: jax {jax.__version__} on {jax.devices()[0]}, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    )

    rows = [
        bench_forward(config, ids, mask, args.repeats),
        bench_train_step(config, ids, mask, labels, args.repeats),
    ]
    print(f"\n{'':12} {'torch tok/s':>12} {'flax tok/s':>12} {'flax/torch':>11} {'jax compile s':>14}")
    for name, torch_seconds, flax_seconds, compile_seconds in rows:
        print(
            f"{name:12} {tokens / torch_seconds:12.0f} {tokens / flax_seconds:12.0f} "
            f"{torch_seconds / flax_seconds:10.2f}x {compile_seconds:14.1f}"
        )


if __name__ == "__main__":
    main()
