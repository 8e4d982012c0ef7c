"""The heads' losses, in float32 whatever the compute dtype.

`IGNORE_INDEX` labels are left out of the mean (when every label is ignored the loss is 0
rather than torch's NaN). Each is a mean over the global batch: under `tf.distribute` every
replica divides its own sum by the count of all replicas, so the replicas' summed gradients
are those of one device running the whole batch (as Keras's own losses, which divide by the
replica count).
"""

from __future__ import annotations

import tensorflow as tf

from xlmr_core.modeling_utils import IGNORE_INDEX

from .inputs import dim


def global_mean(total, count):
    """`total / count`, `count` summed over the replicas when a strategy runs several."""
    count = tf.stop_gradient(tf.cast(count, tf.float32))
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(total, count)


def cross_entropy(logits, labels, ignore_index: int | None = IGNORE_INDEX):
    """Mean softmax cross entropy of integer `labels`, leaving out those equal to `ignore_index`."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    keep = (
        tf.ones_like(labels, tf.float32)
        if ignore_index is None
        else tf.cast(labels != ignore_index, tf.float32)
    )
    safe_labels = labels if ignore_index is None else tf.where(labels == ignore_index, 0, labels)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    return global_mean(tf.reduce_sum(losses * keep), tf.reduce_sum(keep))


def _mean(losses):
    return global_mean(tf.reduce_sum(losses), tf.size(losses))


def mse(predictions, labels):
    """Mean squared error."""
    return _mean(tf.square(tf.cast(predictions, tf.float32) - tf.cast(labels, tf.float32)))


def binary_cross_entropy(logits, labels):
    """Mean sigmoid cross entropy (multi-label classification)."""
    logits, labels = tf.cast(logits, tf.float32), tf.cast(labels, tf.float32)
    return _mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def answer_loss(logits, positions, real=None):
    """Cross entropy of answer `positions` `[batch]` (or `[batch, 1]`) over span logits `[batch, seq]`.

    Positions outside the sequence are clamped to its length and ignored. On the unpadded path
    `real` (the attention mask as bool) makes padding no candidate answer, and an answer that
    points at padding is ignored too (as an out-of-range one), not scored against -inf.
    """
    seq_length = dim(logits, 1)
    positions = tf.clip_by_value(tf.reshape(positions, [-1]), 0, seq_length)
    if real is not None:
        logits = tf.where(real, tf.cast(logits, tf.float32), tf.float32.min)
        on_padding = tf.concat([~real, tf.ones_like(real[:, :1])], axis=1)  # the last: already ignored
        positions = tf.where(
            tf.gather(on_padding, positions[:, None], batch_dims=1)[:, 0],
            tf.cast(seq_length, positions.dtype),
            positions,
        )
    return cross_entropy(logits, positions, ignore_index=seq_length)
