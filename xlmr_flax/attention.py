"""Multi-head attention: self-attention (optionally with relative positions) and cross-attention.

Key/value cache (decoders only): `past_key_value` is `(key, value)` `[batch, heads, length,
head_dim]`, grown by each step; with `cache_index` it is a fixed-size buffer written at
`cache_index` (see `xlmr_flax.modeling`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from xlmr_core import unpadding
from xlmr_core.modeling_utils import is_static, relative_position_index

from .attention_kernels import block_pair_attention, chunked_attention, pair_relative_scores
from .initialisation import Block, dense, layer_norm, normal
from .packing import Packing


class AttentionInputs(NamedTuple):
    """What every layer of one call attends with: built once by the backbone, handed down the stack.

    Mirrored in each wing's `attention.py`; what varies per layer (its cache entry, its head
    mask) is passed beside it. Built inside the traced call, so its bool stays a Python bool.
    """

    attention_bias: jax.Array | None = None  # self-attention, padded layout (additive)
    encoder_hidden_states: jax.Array | None = None  # cross-attention runs when given
    encoder_attention_bias: jax.Array | None = None
    output_attentions: bool = False
    packing: Packing | None = None  # set: the hidden states are packed rows (token_budget)
    cache_index: jax.Array | None = None  # Flax's fixed-size cache: the slots already filled


class XLMRobertaSelfAttention(Block):
    """Multi-head attention over the layer's own tokens, or over encoder states (cross)."""

    position_embedding_type: str = "absolute"

    def setup(self):
        config = self.config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.key = dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.value = dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        if self.position_embedding_type != "absolute":
            self.distance_embedding = nn.Embed(
                2 * config.max_position_embeddings - 1,
                self.head_dim,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                embedding_init=normal(config),
            )

    def split_heads(self, x):
        batch_size, length, _ = x.shape
        return x.reshape(batch_size, length, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def relative_position_bias(self, query, key, cache_index=None):
        """Relative-position scores `[batch, heads, q, k]`, already divided by sqrt(head_dim)."""
        max_positions = self.config.max_position_embeddings
        query_length, key_length = query.shape[2], key.shape[2]
        if cache_index is None and is_static(query_length, key_length):
            # Queries are the last positions of the keys: a cached step sees a full recompute's distances.
            index = jnp.asarray(relative_position_index(query_length, key_length, max_positions))
        else:  # symbolic lengths (jax.export) or a fixed-size cache (queries at cache_index, ...)
            index = relative_position_index(
                query_length, key_length, max_positions, arange=jnp.arange, query_start=cache_index
            )
            if cache_index is not None:
                index = jnp.clip(index, 0, 2 * max_positions - 2)  # slots past the queries are masked anyway
        embedded = self.distance_embedding(index)
        scores = jnp.einsum("bhqd,qkd->bhqk", query, embedded)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + jnp.einsum("bhkd,qkd->bhqk", key, embedded)
        return scores / math.sqrt(self.head_dim)

    def __call__(
        self, hidden_states, inputs, head_mask=None, past_key_value=None, cross=False, deterministic=True
    ):
        """`(context, probs, (key, value))`: self-attention, or with `cross` over the encoder states.

        `inputs` is the call's `AttentionInputs`; `output_attentions=False` there lets long inputs
        skip the `[heads, L, L]` probabilities.
        """
        if inputs.packing is not None:  # unpadded=True never has a cache, cross-attention or head mask
            return self.packed_attention(hidden_states, inputs.attention_bias, inputs.packing, deterministic)
        encoder_hidden_states = inputs.encoder_hidden_states if cross else None
        attention_bias = inputs.encoder_attention_bias if cross else inputs.attention_bias
        cache_index = None if cross else inputs.cache_index  # the encoder side is never a buffer
        query = self.split_heads(self.query(hidden_states))
        if encoder_hidden_states is not None and past_key_value is not None:
            key, value = (t.astype(self.dtype) for t in past_key_value)  # encoder side is fixed
        elif encoder_hidden_states is not None:
            key = self.split_heads(self.key(encoder_hidden_states))
            value = self.split_heads(self.value(encoder_hidden_states))
        else:
            key = self.split_heads(self.key(hidden_states))
            value = self.split_heads(self.value(hidden_states))
            if past_key_value is not None and cache_index is not None:
                start = (0, 0, cache_index, 0)
                key = jax.lax.dynamic_update_slice(past_key_value[0].astype(self.dtype), key, start)
                value = jax.lax.dynamic_update_slice(past_key_value[1].astype(self.dtype), value, start)
            elif past_key_value is not None:
                key = jnp.concatenate([past_key_value[0].astype(self.dtype), key], axis=2)
                value = jnp.concatenate([past_key_value[1].astype(self.dtype), value], axis=2)
        if (
            not inputs.output_attentions
            and past_key_value is None
            and encoder_hidden_states is None
            and is_static(query.shape[2])
            and query.shape[2] > unpadding.LONG_INPUT_THRESHOLD
        ):
            return (
                self.chunked(query, key, value, attention_bias, head_mask, deterministic),
                None,
                (key, value),
            )
        context, probs = self.attend(query, key, value, attention_bias, head_mask, deterministic, cache_index)
        return context, probs, (key, value)

    def chunked(self, query, key, value, attention_bias, head_mask, deterministic):
        """Self-attention of a long input, `QUERY_CHUNK` queries at a time (never `[heads, L, L]`)."""
        relative = self.position_embedding_type != "absolute"
        return chunked_attention(
            query,
            key,
            value,
            attention_bias,
            head_mask,
            lambda probs: self.dropout(probs, deterministic=deterministic),
            self.dtype,
            min(unpadding.QUERY_CHUNK, query.shape[2]),
            self.distance_embedding if relative else None,
            self.config.max_position_embeddings,
            self.position_embedding_type == "relative_key_query",
        )

    def packed_attention(self, hidden_states, attention_bias, packing, deterministic=True):
        """Attention of packed `[budget, hidden]` tokens (`unpadded=True`), about Σ L_i².

        The projections run on the packed tokens, which are then laid out in whole blocks per
        sequence (`packing.layout`); each query block meets only its own sequence's key blocks,
        with the relative distances and causal mask of the padded path. The context comes
        back packed. No probabilities (the unpadded path refuses `output_attentions`).
        """
        layout = packing.layout
        if layout is None:  # symbolic shapes: no static block budgets, scores in the padded layout
            query, key, value = (
                self.split_heads(packing.unpack(projection(hidden_states)))
                for projection in (self.query, self.key, self.value)
            )
            context, _ = self.attend(query, key, value, attention_bias, None, deterministic)
            return packing.pack(context), None, None

        def blocks(projection):  # [budget, hidden] -> [blocks, heads, block, head_dim]
            rows = packing.take_rows(projection(hidden_states), layout.gather)
            return rows.reshape(-1, layout.block, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

        relative = None
        if self.position_embedding_type != "absolute":

            def relative(query_pairs, key_pairs, offset):
                return pair_relative_scores(
                    query_pairs,
                    key_pairs,
                    offset,
                    self.distance_embedding,
                    self.config.max_position_embeddings,
                    self.position_embedding_type == "relative_key_query",
                )

        context = block_pair_attention(
            blocks(self.query),
            blocks(self.key),
            blocks(self.value),
            layout,
            lambda probs: self.dropout(probs, deterministic=deterministic),
            self.dtype,
            relative,
            self.config.is_decoder,
        )
        context = context.transpose(0, 2, 1, 3).reshape(-1, self.num_heads * self.head_dim)
        return jnp.take(context, layout.scatter, axis=0), None, None

    def attend(self, query, key, value, attention_bias, head_mask, deterministic, cache_index=None):
        """Scores, softmax and weighted values: `[batch, length, hidden]` context and the probabilities."""
        batch_size, length = query.shape[0], query.shape[2]
        scores = jnp.einsum("bhqd,bhkd->bhqk", query, key) / math.sqrt(self.head_dim)
        bias = attention_bias
        if self.position_embedding_type != "absolute":
            relative = self.relative_position_bias(query, key, cache_index)
            # min + a negative score would overflow to -inf in half precision
            bias = relative if bias is None else jnp.maximum(relative + bias, jnp.finfo(relative.dtype).min)
        if bias is not None:
            scores = scores + bias
        # Softmax in float32 whatever the compute dtype: bfloat16 sums lose too much.
        probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(self.dtype)
        probs = self.dropout(probs, deterministic=deterministic)
        if head_mask is not None:
            probs = probs * head_mask
        context = jnp.einsum("bhqk,bhkd->bhqd", probs, value)
        return context.transpose(0, 2, 1, 3).reshape(
            batch_size, length, self.num_heads * self.head_dim
        ), probs


class XLMRobertaSelfOutput(Block):
    """dense -> dropout -> residual -> LayerNorm after attention (also the feed-forward's output)."""

    def setup(self):
        self.dense = dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)
        self.LayerNorm = layer_norm(self.config, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)

    def __call__(self, hidden_states, residual, deterministic=True):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), deterministic=deterministic) + residual)


class XLMRobertaAttention(Block):
    position_embedding_type: str = "absolute"

    def setup(self):
        self.self = XLMRobertaSelfAttention(
            self.config, self.dtype, self.param_dtype, position_embedding_type=self.position_embedding_type
        )
        self.output = XLMRobertaSelfOutput(self.config, self.dtype, self.param_dtype)

    def __call__(
        self, hidden_states, inputs, head_mask=None, past_key_value=None, cross=False, deterministic=True
    ):
        context, probs, key_value = self.self(
            hidden_states, inputs, head_mask, past_key_value, cross, deterministic
        )
        return self.output(context, hidden_states, deterministic), probs, key_value
