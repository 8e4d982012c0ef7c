"""Fine-tuning an `xlmr_torch` model on prepared task data (`xlmr_core.finetuning.prepare`).

    result = finetune(model, train_data, max_steps=100, batch_size=16, learning_rate=5e-5,
                      weight_decay=0.0, warmup_steps=10, seed=0, validation=dev_data, log=None)
    result["train_loss"]        # the loss of every optimizer step
    result["eval"]              # xlmr_core.finetuning.metrics on the validation data

A plain PyTorch loop with the shared AdamW recipe (`xlmr_torch.training.adamw`) and the shared
schedule (`xlmr_core.finetuning.schedule`); the batches come from `xlmr_core.finetuning`, so the
same seed trains on the same batches in every framework. Under `torchrun` the model is wrapped
in DDP (or FSDP2, `strategy="fsdp"`) and each process takes its slice of every global batch;
the loss recorded is the global batch's mean whatever the split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from xlmr_core.finetuning.loop import (
    EvaluationOutputs,
    checked_loss,
    eval_batches,
    output_names,
    train_batches,
)
from xlmr_core.finetuning.schedule import learning_rates

from .training import adamw, global_mean_loss, init_distributed, loss_units, unwrap_model, wrap_model


def finetune(
    model: torch.nn.Module,
    data,
    *,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    seed: int = 0,
    validation=None,
    log: Callable[[int, float], None] | None = None,
    strategy: str = "ddp",
) -> dict:
    """Train `model` for `max_steps` AdamW steps on `data` (a `TaskData`), then evaluate on
    `validation`; returns `{"train_loss": [...], "eval": {...}}`. `log(step, loss)` is called
    after every step. `strategy` ("ddp", "fsdp") applies under `torchrun` only."""
    setup = init_distributed()
    model.to(setup.device).train()
    wrapped = wrap_model(model, strategy, setup.device)
    optimizer = adamw(wrapped, learning_rate, weight_decay=weight_decay)
    rates = learning_rates(learning_rate, max_steps, warmup_steps)
    # The shared table as LambdaLR's factor of the base rate (a zero base rate stays zero).
    factors = rates / learning_rate if learning_rate else np.zeros_like(rates)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: float(factors[min(s, max_steps - 1)]))
    head = type(unwrap_model(model)).__name__
    if batch_size % setup.world_size:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the {setup.world_size} processes")

    losses = []
    batches = train_batches(data, unwrap_model(model).config, batch_size, seed)
    for step in range(max_steps):
        batch = next(batches)
        part = _slice(batch, setup.rank, setup.world_size)
        loss = wrapped(**_tensors(part, setup.device)).loss
        if setup.world_size > 1:
            loss = global_mean_loss(loss, loss_units(head, part), loss_units(head, batch), setup.world_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        value = loss.detach()
        if setup.world_size > 1:
            # Each rank's rescaled loss sums, over the ranks, to world_size times the global mean.
            dist.all_reduce(value)
            value = value / setup.world_size
        losses.append(checked_loss(value, step))
        if log is not None:
            log(step + 1, losses[-1])
    model.eval()
    metrics = evaluate(unwrap_model(model), validation, batch_size, seed) if validation is not None else {}
    return {"train_loss": losses, "eval": metrics}


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, batch_size: int, seed: int = 0) -> dict[str, float]:
    """`xlmr_core.finetuning.metrics` of `model` on `data` (one pass, in order, dropout off)."""
    model.eval()
    device = next(model.parameters()).device
    gathered = EvaluationOutputs(data)
    for batch in eval_batches(data, model.config, batch_size, seed):
        out = model(**_tensors(batch, device))
        gathered.add({name: out[name].float().cpu().numpy() for name in output_names(data.task)}, out.loss)
    return gathered.metrics()


def _tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(value)).to(device) for name, value in batch.items()}


def _slice(batch: dict[str, np.ndarray], rank: int, world_size: int) -> dict[str, np.ndarray]:
    """This process's rows of the global batch (all of it on one process)."""
    if world_size == 1:
        return batch
    size = len(batch["input_ids"]) // world_size
    return {name: value[rank * size : (rank + 1) * size] for name, value in batch.items()}
