"""Fine-tuning an `xlmr_tf` model on prepared task data (`xlmr_core.finetuning.prepare`).

    result = finetune(model, train_data, max_steps=100, batch_size=16, learning_rate=5e-5,
                      weight_decay=0.0, warmup_steps=10, seed=0, validation=dev_data, log=None)

Keras's own idiom: `model.compile(optimizer=adamw(schedule))` then `model.fit` on a `tf.data`
pipeline fed by `xlmr_core.finetuning`'s seeded batches, the loss computed inside the model from
the labels the batches carry. The schedule is the shared table (`xlmr_core.finetuning.schedule`),
so the rate of every step is the one torch and optax apply.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from xlmr_core.finetuning.loop import (
    EvaluationOutputs,
    checked_loss,
    eval_batches,
    output_names,
    train_batches,
)
from xlmr_core.finetuning.schedule import learning_rates

from .training import adamw


@keras.saving.register_keras_serializable(package="xlmr_tf")
class TabulatedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The rate of update `step` read from a table (the last entry after its end)."""

    def __init__(self, rates):
        self.rates = [float(r) for r in rates]

    def __call__(self, step):
        index = tf.minimum(tf.cast(step, tf.int32), len(self.rates) - 1)
        return tf.gather(tf.constant(self.rates, tf.float32), index)

    def get_config(self):
        return {"rates": self.rates}


class _StepLosses(keras.callbacks.Callback):
    """Records the loss of each optimizer step (each `fit` epoch is one step, see `finetune`)."""

    def __init__(self, log):
        super().__init__()
        self.losses: list[float] = []
        self.log = log

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(checked_loss(logs["loss"], epoch))
        if self.log is not None:
            self.log(epoch + 1, self.losses[-1])


def finetune(
    model: keras.Model,
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
    """Train `model` for `max_steps` AdamW steps on `data` (a `TaskData`) with `compile` + `fit`,
    then evaluate on `validation`; returns `{"train_loss": [...], "eval": {...}}`. `log(step,
    loss)` is called after every step."""
    schedule = TabulatedSchedule(learning_rates(learning_rate, max_steps, warmup_steps))
    # Batches are trimmed to their longest row, so shapes change from step to step: XLA would
    # compile once per length; the graph step is retraced with relaxed shapes instead.
    model.compile(optimizer=adamw(schedule, weight_decay=weight_decay), jit_compile=False)
    first = next(train_batches(data, model.config, batch_size, seed))
    signature = {
        name: tf.TensorSpec([None] * value.ndim, tf.as_dtype(value.dtype)) for name, value in first.items()
    }
    dataset = tf.data.Dataset.from_generator(
        lambda: train_batches(data, model.config, batch_size, seed), output_signature=signature
    )
    recorder = _StepLosses(log)
    # Keras logs an epoch's running mean of the loss; with one step per epoch (the iterator
    # carries on across epochs when steps_per_epoch is set) each epoch's loss is one step's.
    # The order is the seed's (`batches`): Keras shuffles nothing.
    model.fit(dataset, epochs=max_steps, steps_per_epoch=1, shuffle=False, verbose=0, callbacks=[recorder])
    metrics = evaluate(model, validation, batch_size, seed) if validation is not None else {}
    return {"train_loss": recorder.losses, "eval": metrics}


def evaluate(model: keras.Model, data, batch_size: int, seed: int = 0) -> dict[str, float]:
    """`xlmr_core.finetuning.metrics` of `model` on `data` (one pass, in order, dropout off)."""
    gathered = EvaluationOutputs(data)
    for batch in eval_batches(data, model.config, batch_size, seed):
        out = model({name: tf.constant(np.ascontiguousarray(v)) for name, v in batch.items()}, training=False)
        gathered.add({name: out[name].numpy() for name in output_names(data.task)}, out["loss"].numpy())
    return gathered.metrics()
