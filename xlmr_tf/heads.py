"""The task heads on top of the encoder: the language-model head and the sentence classifier."""

from __future__ import annotations

import keras
import tensorflow as tf

from xlmr_core import XLMRobertaConfig

from .activations import gelu
from .initialisation import Block, dense, layer_norm


class XLMRobertaLMHead(Block):
    """dense -> gelu -> LayerNorm -> vocabulary projection (usually the word-embedding matrix).

    The tied matrix is passed in at call time, so it stays one variable owned by the embeddings.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = config.vocab_size
        self.dense = dense(config, config.hidden_size, "dense")
        self.layer_norm = layer_norm(config, "layer_norm")
        self.tied = config.tie_word_embeddings
        if not self.tied:
            self.decoder = dense(config, config.vocab_size, "decoder", use_bias=False)

    def build(self, input_shape=None):
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")

    def call(self, features, word_embeddings=None):
        hidden = self.layer_norm(gelu(self.dense(features)))
        if self.tied:
            # One 2-D matmul: with the batch dimensions kept, TF materialises the transposed
            # (250k-row) table on every call, which costs its size in memory and ~8x the time.
            rows = tf.reshape(hidden, (-1, hidden.shape[-1]))
            logits = tf.matmul(rows, tf.cast(word_embeddings, hidden.dtype), transpose_b=True)
            logits = tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [self.vocab_size]], axis=0))
        else:
            logits = self.decoder(hidden)
        return logits + self.bias


class XLMRobertaClassificationHead(Block):
    """Sentence-level head on the first (`<s>`) token."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense(config, config.hidden_size, "dense", activation="tanh")
        self.dropout = keras.layers.Dropout(classifier_dropout(config))
        self.out_proj = dense(config, config.num_labels, "out_proj")

    def call(self, features, training=False):
        """`[batch, seq, hidden]` (or a packing's `first_tokens`) -> `[batch, num_labels]`."""
        x = self.dropout(features[:, 0], training=training)
        x = self.dropout(self.dense(x), training=training)
        return self.out_proj(x)


def classifier_dropout(config: XLMRobertaConfig) -> float:
    """The dropout rate of the classification heads: `classifier_dropout`, else `hidden_dropout_prob`."""
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
