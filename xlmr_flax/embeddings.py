"""Word, position and token-type embeddings, and the position ids they read.

Embedding rows at `pad_token_id` (words and absolute positions) receive no gradient, as
with PyTorch's `nn.Embedding(padding_idx=...)`, so training matches `xlmr_torch` exactly.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from .initialisation import Block, embedding_init, layer_norm, normal


def position_ids_from_input_ids(input_ids, padding_idx: int | None, past_length: int = 0):
    """Fairseq positions: real tokens count up from `padding_idx + 1`, pads stay at `padding_idx`."""
    if padding_idx is None:
        positions = jnp.arange(past_length, past_length + input_ids.shape[1])
        return jnp.broadcast_to(positions, input_ids.shape)
    not_pad = (input_ids != padding_idx).astype(jnp.int32)
    return (jnp.cumsum(not_pad, axis=1) + past_length) * not_pad + padding_idx


def position_ids_from_inputs_embeds(inputs_embeds, padding_idx: int | None, past_length: int = 0):
    """Without token ids padding cannot be seen, so every position counts as a real token."""
    batch_size, seq_length = inputs_embeds.shape[:2]
    start = past_length + (0 if padding_idx is None else padding_idx + 1)
    return jnp.broadcast_to(jnp.arange(start, start + seq_length), (batch_size, seq_length))


def lookup_without_padding_gradient(table: nn.Embed, ids, padding_idx: int | None):
    """Embedding lookup where rows equal to `padding_idx` get no gradient (PyTorch's padding_idx)."""
    vectors = table(ids)
    if padding_idx is None:
        return vectors
    return jnp.where((ids == padding_idx)[..., None], jax.lax.stop_gradient(vectors), vectors)


class XLMRobertaEmbeddings(Block):
    def setup(self):
        config, pad = self.config, self.config.pad_token_id
        embed = functools.partial(nn.Embed, dtype=self.dtype, param_dtype=self.param_dtype)
        std = config.initializer_range
        self.word_embeddings = embed(
            config.vocab_size, config.hidden_size, embedding_init=embedding_init(std, pad)
        )
        self.position_embeddings = embed(
            config.max_position_embeddings, config.hidden_size, embedding_init=embedding_init(std, pad)
        )
        self.token_type_embeddings = embed(
            config.type_vocab_size, config.hidden_size, embedding_init=normal(config)
        )
        self.LayerNorm = layer_norm(config, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, position_ids, inputs_embeds, deterministic=True):
        pad = self.config.pad_token_id
        if inputs_embeds is None:
            inputs_embeds = lookup_without_padding_gradient(self.word_embeddings, input_ids, pad)
        embeddings = inputs_embeds.astype(self.dtype) + self.token_type_embeddings(token_type_ids)
        if self.config.position_embedding_type == "absolute":
            embeddings = embeddings + lookup_without_padding_gradient(
                self.position_embeddings, position_ids, pad
            )
        else:
            # The relative kinds never read this table, but checkpoints carry it, so it exists.
            _ = self.position_embeddings.embedding
        return self.dropout(self.LayerNorm(embeddings), deterministic=deterministic)
