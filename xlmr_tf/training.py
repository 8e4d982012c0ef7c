"""Keras training of the TF models: `fit` / `evaluate` / `predict` with the model's own loss.

`adamw(model, learning_rate)` is the optimizer to compile with: AdamW with the recipe of
`xlmr_core.optimization` (the same update as `xlmr_torch.training.adamw` and
`xlmr_flax.training.create_optimizer`).

`KerasTraining` is mixed into `TFXLMRobertaPreTrainedModel`. Without a compiled Keras loss
the batch's targets (`labels`, or `start_positions` / `end_positions`) become call
arguments and the loss the model computes trains; with `compile(loss=...)` that loss is
applied to the logits instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import keras
import tensorflow as tf

from xlmr_core import optimization


class KerasTraining:
    """`train_step`, `test_step`, `predict_step` and the losses and metrics Keras asks for."""

    def _move_targets_into_features(self, data):
        """Without a compiled loss the model's own loss trains: targets become call arguments."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._compile_loss is not None or y is None:
            return data
        if sample_weight is not None:
            raise ValueError("sample_weight needs a Keras loss: compile(optimizer, loss=...)")
        features = self.input_dict(x)
        if isinstance(y, Mapping):
            targets = dict(y)
        elif isinstance(y, (tuple, list)):
            targets = dict(zip(self.label_names, y))
        else:
            targets = {self.label_names[0]: y}
        unknown = sorted(set(targets) - set(self.label_names))
        if unknown:
            raise ValueError(f"{type(self).__name__} takes targets {self.label_names}, got {unknown}")
        return {**features, **targets}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's TF trainer (3.15), under a strategy, builds the compiled loss and metrics from
        # the replicas' first batches averaged (`strategy.reduce("MEAN", ...)`): integer ids
        # become floats, and under MultiWorkerMirroredStrategy a dict batch fails to reduce.
        # One replica's batch has the real shapes and dtypes (the variables exist already).
        if self._distribute_strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            break
        local = self.distribute_strategy.experimental_local_results
        batch = tf.nest.map_structure(
            lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, batch
        )
        return super()._maybe_symbolic_build(None, batch)

    # -- host-side checks of each batch before the compiled step. Inside `fit` / `evaluate` the
    # model runs traced, where a bad label can only be a graph assertion (a many-line TF error)
    # and under XLA not even that (assertions are dropped: the loss becomes NaN). Keras's step
    # functions are wrapped so that each batch is fetched eagerly, checked by the eager call's
    # checks (same error, same text) and only then handed to the compiled step.
    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force)
        self.train_function = self._checking_batches(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        if self.test_function is not None and not force:
            return self.test_function
        super().make_test_function(force)
        self.test_function = self._checking_batches(self.test_function)
        return self.test_function

    def _checking_batches(self, step_function):
        """`step_function(iterator)` run on the next `steps_per_execution` batches, each checked first."""

        def function(iterator):
            batches = list(itertools.islice(iterator, self.steps_per_execution))
            if not batches:
                raise StopIteration
            for batch in batches:
                self.check_batch(batch)
            return step_function(batches)  # Keras's Python-iterable path: the same compiled step

        return function

    def check_batch(self, data) -> None:
        """The eager call's checks (input ids, labels, positions) on one `fit` / `evaluate` batch
        (under a strategy, on each of this worker's replicas' parts)."""
        for part in _local_parts(self.distribute_strategy, self._move_targets_into_features(data)):
            x, _, _ = keras.utils.unpack_x_y_sample_weight(part)
            self.checked_inputs(self.input_dict(x))

    def train_step(self, data):
        return _multi_worker_logs(super().train_step(self._move_targets_into_features(data)))

    def test_step(self, data):
        return _multi_worker_logs(super().test_step(self._move_targets_into_features(data)))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        output = self(x, training=False)
        if not isinstance(output, Mapping):
            return output
        return {key: value for key, value in output.items() if key not in ("loss", "masked_positions")}

    def _prediction(self, output):
        """What a Keras loss or metric compares with `y`: the logits (QA: start and end logits)."""
        if not isinstance(output, Mapping):
            return output
        if "logits" in output:
            return output["logits"]
        if "start_logits" in output:
            return (output["start_logits"], output["end_logits"])
        return output["last_hidden_state"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled Keras loss when there is one, else the loss the model computed from the labels."""
        if self._compile_loss is not None:
            return super().compute_loss(x, y, self._prediction(y_pred), sample_weight, training=training)
        loss = y_pred.get("loss") if isinstance(y_pred, Mapping) else None
        if loss is None:
            raise ValueError(
                f"{type(self).__name__} computed no loss: the batches carry none of {self.label_names}; "
                "put them in the feature dict, give (features, labels) batches, or compile(loss=...)"
            )
        for extra in self.losses:
            loss = loss + tf.cast(extra, loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None and isinstance(x, Mapping):
            targets = [x[name] for name in self.label_names if name in x]
            y = None if not targets else targets[0] if len(targets) == 1 else tuple(targets)
        return super().compute_metrics(x, y, self._prediction(y_pred), sample_weight)


def _local_parts(strategy, data) -> list:
    """`data` as one structure per local replica (itself when it holds no distributed values)."""
    distributed = [v for v in tf.nest.flatten(data) if isinstance(v, tf.distribute.DistributedValues)]
    if not distributed:
        return [data]
    local = strategy.experimental_local_results
    return [
        tf.nest.map_structure(
            lambda v, i=i: local(v)[i] if isinstance(v, tf.distribute.DistributedValues) else v, data
        )
        for i in range(len(local(distributed[0])))
    ]


def _multi_worker_logs(logs):
    """A step's logs as Keras 3.15 can reduce them under MultiWorkerMirroredStrategy.

    Keras reduces them there with `strategy.reduce("MEAN", value, axis=0)`, which fails for
    the scalars every step returns: a leading axis of one makes that the replicas' mean, a scalar.
    """
    if not isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)


@keras.saving.register_keras_serializable(package="xlmr_tf")
class AdamW(keras.optimizers.AdamW):
    """Keras AdamW with PyTorch's and optax's update and no weight decay on biases or LayerNorm.

    Keras adds `epsilon` to the uncorrected root of the second moment, which equals adding
    `epsilon / sqrt(1 - beta_2**t)` to the corrected one: 30 times PyTorch's epsilon at the
    first step. Here it is added where `torch.optim.AdamW` and `optax.adamw` add it.
    """

    def _use_weight_decay(self, variable):
        # Keras's TF backend hands over the tf.Variable here, named "<keras path>:0".
        path = getattr(variable, "path", variable.name).split(":")[0]
        return optimization.decays(path) and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = keras.ops.cast(gradient, dtype)
        step = keras.ops.cast(self.iterations + 1, dtype)
        first_correction = 1 - keras.ops.power(keras.ops.cast(self.beta_1, dtype), step)
        second_correction = 1 - keras.ops.power(keras.ops.cast(self.beta_2, dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (keras.ops.square(gradient) - v) * (1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_hat, keras.ops.maximum(v_hat, v))
            v = v_hat
        denominator = keras.ops.sqrt(v / second_correction) + keras.ops.cast(self.epsilon, dtype)
        step_size = keras.ops.cast(learning_rate, dtype) / first_correction
        self.assign_sub(variable, step_size * m / denominator)


def adamw(
    learning_rate,
    *,
    weight_decay: float = optimization.WEIGHT_DECAY,
    betas: tuple[float, float] = optimization.BETAS,
    eps: float = optimization.EPSILON,
    max_grad_norm: float | None = optimization.MAX_GRAD_NORM,
) -> AdamW:
    """The optimizer to `compile` with: `AdamW` with the shared recipe (`xlmr_core.optimization`):
    weight decay off biases and LayerNorm, gradients clipped to `max_grad_norm` (None: off).
    `learning_rate` is a float or a `keras.optimizers.schedules.LearningRateSchedule`."""
    return AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_1=betas[0],
        beta_2=betas[1],
        epsilon=eps,
        global_clipnorm=max_grad_norm,
    )
