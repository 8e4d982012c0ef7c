"""Distributed training of any `xlmr_torch` head on a synthetic task: DDP, FSDP2, resume.

    python examples/torch_finetune.py --head XLMRobertaForSequenceClassification --steps 50
    torchrun --nproc_per_node 2 examples/torch_finetune.py --output runs/a            # DDP
    torchrun --nproc_per_node 2 examples/torch_finetune.py --fsdp --output runs/a     # FSDP2
    torchrun --nproc_per_node 2 examples/torch_finetune.py --output runs/a --resume    # continue

What this demo adds to `examples/finetune.py` (which fine-tunes your JSON-lines data, task logic
in `xlmr_core.finetuning`, under `torchrun` too): training checkpoints and `--resume`, gradient
accumulation, `--bf16`, gradient clipping, and a synthetic task per head (learnable in a few
dozen steps) to show them without data. It reads no data files: for real data use `finetune.py`.
Every rank builds the same global batch from (seed, step) and takes its slice of it, so a run
gives the same weights on any number of processes (up to float rounding) and resuming needs
nothing but the step. The loss is the mean over the global batch's labelled tokens whatever
the split (see `xlmr_torch.training.global_mean_loss`).

`--output DIR` gets `checkpoint-XXXXXXXX/` every `--save-every` steps (model, optimizer,
scheduler, RNG; written atomically; under FSDP2 the model and optimizer are a
`torch.distributed.checkpoint` folder of per-rank shards) and, at the end, `final/`, a
`save_pretrained` directory that loads in every framework (rank 0 writes it; FSDP gathers
the full weights).
`--stop-after K` ends the run after step K as if interrupted; `--resume` picks up the latest
checkpoint in DIR.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import xlmr_torch
from xlmr_core import XLMRobertaConfig
from xlmr_torch.training import (
    IGNORE_INDEX,
    barrier,
    checkpoint_name,
    decay_parameter_groups,
    global_mean_loss,
    init_distributed,
    latest_checkpoint,
    linear_schedule,
    load_training_checkpoint,
    loss_units,
    save_pretrained_full,
    save_training_checkpoint,
    set_gradient_sync,
    wrap_model,
)

HEADS = (
    "XLMRobertaForMaskedLM",
    "XLMRobertaForCausalLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
)
CONFIGS = {
    "tiny": dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    ),
    "small": dict(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=130,
    ),
    "base": dict(),  # xlm-roberta-base: the config's defaults
}
SIGNAL_TOKEN = 7  # the synthetic tasks are about where (or whether) this token occurs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--head", default="XLMRobertaForSequenceClassification", choices=HEADS)
    parser.add_argument("--checkpoint", help="start from this checkpoint directory (default: random init)")
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS), help="size without --checkpoint")
    parser.add_argument("--dropout", type=float, help="override hidden and attention dropout")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps")
    parser.add_argument("--global-batch-size", type=int, default=16, help="examples per step, all ranks")
    parser.add_argument("--accumulation-steps", type=int, default=1, help="micro-batches per rank per step")
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="clip threshold; 0 turns it off")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (weights stay float32)")
    parser.add_argument("--fsdp", action="store_true", help="FSDP2 fully_shard instead of DDP")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="checkpoints and the final save_pretrained directory")
    parser.add_argument("--save-every", type=int, default=0, help="training checkpoint every N steps")
    parser.add_argument("--stop-after", type=int, help="stop after this step, as if interrupted")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in --output"
    )
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args(argv)
    if args.resume and args.output is None:
        parser.error("--resume needs --output")
    return args


# ----------------------------------------------------------------------------- data


def _step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def synthetic_batch(head: str, config: XLMRobertaConfig, step: int, batch_size: int, length: int, seed: int):
    """The global batch of step `step`: a function of (seed, step) only."""
    rng = _step_rng(seed, step)
    vocab, bos, eos = config.vocab_size, config.bos_token_id, config.eos_token_id
    low = 4  # above the special ids and the mask-free zone
    if head in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"):
        # Counting sequences (each token is the previous one plus one): learnable from context.
        start = rng.integers(low, vocab - 1, size=(batch_size, 1))
        ids = low + (start - low + np.arange(length - 2)) % (vocab - 1 - low)
        ids = np.concatenate([np.full((batch_size, 1), bos), ids, np.full((batch_size, 1), eos)], 1)
        if head == "XLMRobertaForCausalLM":
            return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": ids.copy()}
        labels = np.full_like(ids, IGNORE_INDEX)
        masked = rng.random(ids.shape) < 0.15
        masked[:, 1] |= ~masked[:, 1:-1].any(1)  # at least one masked token per row
        masked[:, [0, -1]] = False
        labels[masked] = ids[masked]
        ids = np.where(masked, vocab - 1, ids)  # <mask> is the last id
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}

    def sentences(n):
        ids = rng.integers(low, vocab, size=(n, length))
        ids[ids == SIGNAL_TOKEN] = SIGNAL_TOKEN + 1
        ids[:, 0], ids[:, -1] = bos, eos
        return ids

    if head == "XLMRobertaForSequenceClassification":
        ids, labels = sentences(batch_size), rng.integers(0, 2, size=batch_size)
        where = rng.integers(1, length - 1, size=batch_size)
        ids[labels == 1, where[labels == 1]] = SIGNAL_TOKEN
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}
    if head == "XLMRobertaForMultipleChoice":
        choices = 2
        ids = sentences(batch_size * choices).reshape(batch_size, choices, length)
        labels = rng.integers(0, choices, size=batch_size)
        ids[np.arange(batch_size), labels, rng.integers(1, length - 1, size=batch_size)] = SIGNAL_TOKEN
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}
    if head == "XLMRobertaForTokenClassification":
        ids = sentences(batch_size)
        labels = (ids % 2).astype(np.int64)  # tag the even ids
        labels[:, [0, -1]] = IGNORE_INDEX
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}
    if head == "XLMRobertaForQuestionAnswering":
        ids = sentences(batch_size)
        start = rng.integers(1, length - 3, size=batch_size)
        ids[np.arange(batch_size), start] = SIGNAL_TOKEN  # the answer is the 3 tokens from here
        return {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "start_positions": start,
            "end_positions": start + 2,
        }
    raise ValueError(f"no synthetic task for {head}")


def rank_slice(batch: dict, rank: int, world_size: int) -> dict:
    """This rank's contiguous share of the global batch."""
    size = len(next(iter(batch.values())))
    if size % world_size:
        raise ValueError(f"global batch {size} is not divisible by {world_size} processes")
    share = size // world_size
    return {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}


def micro_batches(batch: dict, count: int) -> list[dict]:
    size = len(next(iter(batch.values())))
    if size % count:
        raise ValueError(f"per-rank batch {size} is not divisible by --accumulation-steps {count}")
    share = size // count
    return [{k: v[i * share : (i + 1) * share] for k, v in batch.items()} for i in range(count)]


# ----------------------------------------------------------------------------- model


def build_model(args, setup):
    model_class = getattr(xlmr_torch, args.head)
    overrides = {}
    if args.dropout is not None:
        overrides.update(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if args.head == "XLMRobertaForQuestionAnswering":
        overrides["num_labels"] = 2
    elif args.head in ("XLMRobertaForSequenceClassification", "XLMRobertaForTokenClassification"):
        overrides.setdefault("num_labels", 2)
    if args.head == "XLMRobertaForCausalLM":
        overrides["is_decoder"] = True
    # Same seed on every rank: every rank starts from the same weights (DDP also broadcasts them).
    torch.manual_seed(args.seed)
    if args.checkpoint:
        model = model_class.from_pretrained(args.checkpoint, **overrides)
    else:
        model = model_class(XLMRobertaConfig(**{**CONFIGS[args.config], **overrides}))
    return model_class, model.to(setup.device)


# ----------------------------------------------------------------------------- training


def train(args) -> dict:
    """Run the training described by `args`; returns {"losses": [...], "step": last step}."""
    setup = init_distributed()
    model_class, model = build_model(args, setup)
    config = model.config

    model = wrap_model(model, "fsdp" if args.fsdp else "ddp", setup.device)
    model.train()
    # foreach=False: the per-tensor update is the same arithmetic on a full tensor or on a shard.
    optimizer = torch.optim.AdamW(decay_parameter_groups(model, args.weight_decay), lr=args.lr, foreach=False)
    scheduler = linear_schedule(optimizer, args.steps, args.warmup_steps)
    # Dropout draws from each rank's own generator: different masks on different data.
    torch.manual_seed(args.seed + 1 + setup.rank)

    start = 0
    if args.resume and (checkpoint := latest_checkpoint(args.output)) is not None:
        start = load_training_checkpoint(checkpoint, model, optimizer, scheduler)["step"]
        if setup.is_main:
            print(f"resumed from {checkpoint} at step {start}", flush=True)

    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=args.bf16)
    losses, last = [], start
    began = time.perf_counter()
    for step in range(start, args.steps):
        global_batch = synthetic_batch(
            args.head, config, step, args.global_batch_size, args.seq_len, args.seed
        )
        global_batch = {k: torch.as_tensor(v, dtype=torch.long) for k, v in global_batch.items()}
        total_units = loss_units(args.head, global_batch)
        micros = micro_batches(
            rank_slice(global_batch, setup.rank, setup.world_size), args.accumulation_steps
        )
        step_loss = torch.zeros((), device=setup.device)
        for index, micro in enumerate(micros):
            set_gradient_sync(model, index == len(micros) - 1)  # reduce once per step
            micro = {k: v.to(setup.device) for k, v in micro.items()}
            with autocast:
                loss = model(**micro).loss
            scaled = global_mean_loss(
                loss.float(), loss_units(args.head, micro), total_units, setup.world_size
            )
            scaled.backward()
            step_loss += scaled.detach() / setup.world_size
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if dist.is_initialized():
            dist.all_reduce(step_loss)
        losses.append(float(step_loss))
        last = step + 1
        if setup.is_main and (step % args.log_every == 0 or last == args.steps):
            print(f"step {last:5d}  loss {losses[-1]:.4f}  lr {scheduler.get_last_lr()[0]:.2e}", flush=True)
        if args.output and args.save_every and last % args.save_every == 0:
            save_training_checkpoint(
                args.output / checkpoint_name(last), model, optimizer, scheduler, step=last
            )
        if args.stop_after is not None and last >= args.stop_after:
            break

    elapsed = time.perf_counter() - began
    if setup.is_main and math.isfinite(elapsed) and last > start:
        print(f"{last - start} steps in {elapsed:.1f} s on {setup.world_size} process(es)", flush=True)
    if args.output and last == args.steps:
        save_pretrained_full(model, model_class, args.output / "final")
        if setup.is_main:
            print(f"saved {args.output / 'final'}", flush=True)
    barrier()
    return {"losses": losses, "step": last}


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return train(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
