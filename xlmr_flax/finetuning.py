"""Fine-tuning an `xlmr_flax` model on prepared task data (`xlmr_core.finetuning.prepare`).

    result = finetune(model, train_data, max_steps=100, batch_size=16, learning_rate=5e-5,
                      weight_decay=0.0, warmup_steps=10, seed=0, validation=dev_data, log=None)

The shipped jitted optax step (`xlmr_flax.training`) with the shared AdamW recipe and the shared
schedule table (`xlmr_core.finetuning.schedule`), on `xlmr_core.finetuning`'s seeded batches.
With several devices the state is replicated and each batch split over a data-parallel mesh
(`xlmr_flax.training.data_parallel_mesh`); the step gives the same result as on one device.
The trained parameters are left in `model.params`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xlmr_core.finetuning.loop import (
    EvaluationOutputs,
    bucketed,
    checked_loss,
    eval_batches,
    output_names,
    train_batches,
)
from xlmr_core.finetuning.schedule import learning_rates

from .training import (
    create_optimizer,
    create_train_state,
    data_parallel_mesh,
    make_eval_step,
    make_train_step,
    replicate,
)


def finetune(
    model,
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
) -> dict:
    """Train `model` for `max_steps` AdamW steps on `data` (a `TaskData`) with the jitted optax
    step, then evaluate on `validation`; returns `{"train_loss": [...], "eval": {...}}`.
    `log(step, loss)` is called after every step."""
    table = jnp.asarray(learning_rates(learning_rate, max_steps, warmup_steps), jnp.float32)

    def schedule(count):
        return table[jnp.minimum(count, max_steps - 1)]

    state = create_train_state(model, create_optimizer(schedule, weight_decay=weight_decay), seed=seed)
    mesh = None
    if jax.device_count() > 1 and batch_size % jax.device_count() == 0:
        mesh = data_parallel_mesh()
        state = replicate(state, mesh)
    train_step = make_train_step(model, mesh=mesh)
    losses = []
    batches = train_batches(data, model.config, batch_size, seed)
    for step in range(max_steps):
        state, step_metrics = train_step(state, _bucketed(next(batches), data, model.config))
        losses.append(checked_loss(step_metrics["loss"], step))
        if log is not None:
            log(step + 1, losses[-1])
    model.params = jax.device_get(state.params)
    metrics = evaluate(model, validation, batch_size, seed) if validation is not None else {}
    return {"train_loss": losses, "eval": metrics}


def evaluate(model, data, batch_size: int, seed: int = 0) -> dict[str, float]:
    """`xlmr_core.finetuning.metrics` of `model` on `data` (one pass, in order, dropout off)."""
    eval_step = make_eval_step(model)
    gathered = EvaluationOutputs(data)
    for batch in eval_batches(data, model.config, batch_size, seed):
        out = eval_step(model.params, _bucketed(batch, data, model.config))
        gathered.add({name: np.asarray(out[name]) for name in output_names(data.task)}, out["loss"])
    return gathered.metrics()


def _bucketed(batch: dict, data, config) -> dict:
    # Batches come trimmed to their longest row; jit compiles once per shape, so lengths are
    # rounded up to a few buckets (masked padding: the same numbers).
    return bucketed(batch, config.pad_token_id, data.features["input_ids"].shape[-1])
