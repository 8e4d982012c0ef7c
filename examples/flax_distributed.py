"""Fine-tune an `xlmr_flax` head on a device mesh, on one process or many (`jax.distributed`).

    python examples/flax_distributed.py --local-devices 4 --layout fsdp_tp --output runs/jax

    # 2 processes on this machine (CPU, gloo collectives), 2 devices each: one 2 x 2 mesh
    python examples/flax_distributed.py --coordinator 127.0.0.1:12355 --num-processes 2 \\
        --process-id 1 --local-devices 2 --layout fsdp_tp --output runs/jax &
    python examples/flax_distributed.py --coordinator 127.0.0.1:12355 --num-processes 2 \\
        --process-id 0 --local-devices 2 --layout fsdp_tp --output runs/jax

Every process builds the same global batch from (seed, step); `make_train_step(mesh=)` splits
it over the mesh's `"data"` axis, each process filling only its own devices' shards, and the
parameters and optimizer state stay in the `--layout` of `xlmr_flax.sharding` (`dp`, `fsdp`,
`tp`, `fsdp_tp`). The result is the same as one device's up to float rounding, dropout on.
At the end the parameters are gathered and process 0 writes `--output` with
`save_pretrained`: the shared checkpoint format, which every framework loads.

What this demo adds to `examples/finetune.py --framework flax` (your JSON-lines data on one
process, task logic in `xlmr_core.finetuning`): a mesh of many devices, the sharded layouts and
`jax.distributed` processes, on a synthetic task. It reads no data files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HEADS = ("ForMaskedLM", "ForSequenceClassification")
# Every dimension divisible by 4, so each partition rule really shards on a 2 x 2 mesh.
TINY = dict(
    vocab_size=128,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=40,
)
SIGNAL_TOKEN = 7  # the classification task: does the sentence contain this token?


def parse_args(argv=None) -> argparse.Namespace:
    """The command line; parsed before JAX is imported, since `--local-devices` must be."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--head", default="ForSequenceClassification", choices=HEADS)
    parser.add_argument("--checkpoint", help="start from this checkpoint directory (default: random init)")
    parser.add_argument("--layout", default="fsdp", choices=("dp", "fsdp", "tp", "fsdp_tp"))
    parser.add_argument(
        "--model-axis", type=int, help="size of the mesh's 'model' axis (default: 2 for tp layouts, else 1)"
    )
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--global-batch-size", type=int, default=16, help="examples per step, all processes")
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="save_pretrained directory for the final model")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--local-devices", type=int, help="fake CPU devices in this process (sets XLA_FLAGS)")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for jax.distributed")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_processes > 1 and args.coordinator is None:
        parser.error("--num-processes > 1 needs --coordinator")
    return args


def global_batch(head: str, config, step: int, batch_size: int, length: int, seed: int) -> dict:
    """The global batch of step `step`: a function of (seed, step) only, the same in every process."""
    rng = np.random.default_rng([seed, step])
    vocab, low = config.vocab_size, 4  # ids below 4 are special
    if head == "ForMaskedLM":
        # Counting sequences (each token is the previous one plus one): learnable from context.
        start = rng.integers(low, vocab - 1, size=(batch_size, 1))
        ids = low + (start - low + np.arange(length)) % (vocab - 1 - low)
        ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
        masked = rng.random(ids.shape) < 0.15
        masked[:, 1] = True  # at least one prediction per row
        masked[:, [0, -1]] = False
        labels = np.where(masked, ids, -100)
        ids = np.where(masked, vocab - 1, ids)  # <mask> is the last id
    else:
        ids = rng.integers(low, vocab, size=(batch_size, length))
        ids[ids == SIGNAL_TOKEN] = SIGNAL_TOKEN + 1
        ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
        labels = rng.integers(0, 2, size=batch_size)
        where = rng.integers(1, length - 1, size=batch_size)
        ids[labels == 1, where[labels == 1]] = SIGNAL_TOKEN
    ids = ids.astype(np.int32)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels.astype(np.int32)}


def main(argv=None) -> list[float]:
    """Train as the command line says; returns the losses (every process has them)."""
    args = parse_args(argv)
    if args.local_devices:
        # XLA reads its flags once, when JAX starts: they must be set before the import.
        flag = f"--xla_force_host_platform_device_count={args.local_devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    from jax.experimental import multihost_utils

    if args.coordinator:
        # CPU devices of different processes talk through gloo (there is no NCCL on CPU).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )

    import xlmr_flax
    from xlmr_core import XLMRobertaConfig
    from xlmr_flax import sharding
    from xlmr_flax.training import create_optimizer, create_train_state, make_train_step

    model_class = getattr(xlmr_flax, f"FlaxXLMRoberta{args.head}")
    dropout = dict(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout, num_labels=2)
    if args.checkpoint:
        model = model_class.from_pretrained(args.checkpoint, **dropout)
    else:
        # The same seed in every process: every process starts from the same weights.
        model = model_class(XLMRobertaConfig(**TINY, **dropout), seed=args.seed)

    model_axis = args.model_axis or (2 if args.layout in ("tp", "fsdp_tp") else 1)
    mesh = sharding.make_mesh(model=model_axis)  # all devices of all processes
    main_process = jax.process_index() == 0
    if main_process:
        print(
            f"{jax.process_count()} process(es), {jax.device_count()} device(s): mesh data="
            f"{mesh.shape['data']} x model={mesh.shape['model']}, layout {args.layout}",
            flush=True,
        )

    optimizer = create_optimizer(args.lr, num_train_steps=args.steps, num_warmup_steps=min(3, args.steps))
    state = create_train_state(model, optimizer, seed=args.seed, mesh=mesh, layout=args.layout)
    train_step = make_train_step(model, mesh=mesh)
    losses = []
    for step in range(args.steps):
        batch = global_batch(args.head, model.config, step, args.global_batch_size, args.seq_len, args.seed)
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))  # replicated: every process can read it
        if main_process and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"step {step + 1:4d}  loss {losses[-1]:.4f}", flush=True)

    if args.output:
        # Collective: every process takes part in gathering the shards; only process 0 writes.
        if jax.process_count() > 1:
            params = multihost_utils.process_allgather(state.params, tiled=True)
        else:
            params = jax.device_get(state.params)
        if main_process:
            model.params = params
            model.save_pretrained(args.output)
            print(f"saved {args.output}", flush=True)
    if args.coordinator:
        # Keep the coordinator (process 0) up until every process is done with it.
        multihost_utils.sync_global_devices("flax_distributed done")
        jax.distributed.shutdown()
    return losses


if __name__ == "__main__":
    main(sys.argv[1:])
