"""The heads' own layers: the language-model head and the sentence classification head."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import check_first_token

from .initialisation import Block, dense, layer_norm


def classifier_dropout(config: XLMRobertaConfig) -> float:
    """The classifiers' dropout: `classifier_dropout`, else `hidden_dropout_prob`."""
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


class XLMRobertaLMHead(Block):
    """dense -> gelu -> LayerNorm -> vocabulary projection (usually the word-embedding matrix)."""

    def setup(self):
        config = self.config
        self.dense = dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.layer_norm = layer_norm(config, self.dtype, self.param_dtype)
        if not config.tie_word_embeddings:
            self.decoder = dense(config, config.vocab_size, self.dtype, self.param_dtype, use_bias=False)
        self.bias = self.param("bias", jax.nn.initializers.zeros, (config.vocab_size,), self.param_dtype)

    def __call__(self, features, word_embeddings=None):
        """`word_embeddings` `[vocab, hidden]` is the tied projection when `tie_word_embeddings`."""
        x = self.layer_norm(jax.nn.gelu(self.dense(features), approximate=False))
        if self.config.tie_word_embeddings:
            logits = x @ word_embeddings.astype(self.dtype).T
        else:
            logits = self.decoder(x)
        return logits + self.bias.astype(self.dtype)


class XLMRobertaClassificationHead(Block):
    """Sentence-level head on the first (`<s>`) token."""

    def setup(self):
        self.dense = dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(classifier_dropout(self.config))
        self.out_proj = dense(self.config, self.config.num_labels, self.dtype, self.param_dtype)

    def __call__(self, features, deterministic=True):
        check_first_token(features.shape[1])
        x = self.dropout(features[:, 0], deterministic=deterministic)
        x = self.dropout(jnp.tanh(self.dense(x)), deterministic=deterministic)
        return self.out_proj(x)
