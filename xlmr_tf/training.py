"""Keras training of the TF models: `fit` / `evaluate` / `predict` with the model's own loss.

`KerasTraining` is mixed into `TFXLMRobertaPreTrainedModel`. Without a compiled Keras loss
the batch's targets (`labels`, or `start_positions` / `end_positions`) become call
arguments and the loss the model computes trains; with `compile(loss=...)` that loss is
applied to the logits instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf


class KerasTraining:
    """`train_step`, `test_step`, `predict_step` and the losses and metrics Keras asks for."""

    def _move_targets_into_features(self, data):
        """Without a compiled loss the model's own loss trains: targets become call arguments."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._compile_loss is not None or y is None:
            return data
        if sample_weight is not None:
            raise ValueError("sample_weight needs a Keras loss: compile(optimizer, loss=...)")
        features = dict(x) if isinstance(x, Mapping) else {"input_ids": x}
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


def _multi_worker_logs(logs):
    """A step's logs as Keras 3.15 can reduce them under MultiWorkerMirroredStrategy.

    Keras reduces them there with `strategy.reduce("MEAN", value, axis=0)`, which fails for
    the scalars every step returns: a leading axis of one makes that the replicas' mean, a scalar.
    """
    if not isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)
