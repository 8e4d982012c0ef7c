"""Multi-head attention: self-attention (with relative positions and a cache), its output block.

Packed (unpadded) rows attend in `XLMRobertaSelfAttention.packed_attention`, dispatched from `call`.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from xlmr_core import XLMRobertaConfig, unpadding
from xlmr_core.modeling_utils import relative_position_index

from .attention_kernels import block_pair_attention, chunked_attention, pair_relative_scores
from .embeddings import EmbeddingTable
from .initialisation import Block, dense, layer_norm
from .inputs import dim
from .packing import Packing


@dataclasses.dataclass(frozen=True)
class AttentionInputs:
    """What every layer of one call attends with: built once by the backbone, handed down the stack.

    Mirrored in each wing's `attention.py`; what varies per layer (its cache entry, its head
    mask) is passed beside it, and the structure by keyword. A frozen dataclass here, not the
    other wings' NamedTuple: Keras reads a NamedTuple as nested tensors and refuses one that
    also holds a bool and the `Packing` ("you cannot mix tensors and non-tensors"); a dataclass
    reaches `call` as one opaque value, as the `Packing` itself does.
    """

    attention_bias: tf.Tensor | None = None  # self-attention, padded layout: bool, True = may look
    encoder_hidden_states: tf.Tensor | None = None  # cross-attention runs when given
    encoder_attention_bias: tf.Tensor | None = None
    output_attentions: bool = False
    packing: Packing | None = None  # set: the hidden states are packed rows (unpadded=True)


class XLMRobertaSelfAttention(Block):
    """Multi-head attention over the layer's own tokens, or over encoder states (cross)."""

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.causal = config.is_decoder  # a decoder's self-attention sees no later positions
        self.query = dense(config, config.hidden_size, "query")
        self.key = dense(config, config.hidden_size, "key")
        self.value = dense(config, config.hidden_size, "value")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob)
        self.position_embedding_type = position_embedding_type
        if position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = EmbeddingTable(
                config, 2 * config.max_position_embeddings - 1, self.head_dim, "embeddings",
                name="distance_embedding",
            )  # fmt: skip

    def split_heads(self, x):
        batch_size, length = dim(x, 0), dim(x, 1)
        x = tf.reshape(x, [batch_size, length, self.num_heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def relative_position_bias(self, query, key):
        """Relative-position scores `[batch, heads, q, k]` in float32, divided by sqrt(head_dim)."""
        query_length, key_length = query.shape[2], key.shape[2]
        size = self.max_position_embeddings
        if query_length is not None and key_length is not None:
            index = relative_position_index(query_length, key_length, size)
        else:  # lengths known only at run time
            index = relative_position_index(tf.shape(query)[2], tf.shape(key)[2], size, arange=tf.range)
        embedded = self.distance_embedding(index)
        scores = tf.einsum("bhqd,qkd->bhqk", query, embedded)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + tf.einsum("bhkd,qkd->bhqk", key, embedded)
        return tf.cast(scores, tf.float32) / math.sqrt(self.head_dim)

    def call(self, hidden_states, inputs, head_mask=None, past_key_value=None, cross=False, training=False):
        """`(context, probs, (key, value))`: self-attention, or with `cross` over the encoder states.

        `inputs` is the call's `AttentionInputs` (masks, encoder states, packing).
        """
        if inputs.packing is not None:  # (cross-attention never runs unpadded)
            return self.packed_attention(hidden_states, inputs.attention_bias, inputs.packing, training)
        encoder_hidden_states = inputs.encoder_hidden_states if cross else None
        attention_bias = inputs.encoder_attention_bias if cross else inputs.attention_bias
        output_attentions = inputs.output_attentions
        query = self.split_heads(self.query(hidden_states))
        if encoder_hidden_states is not None and past_key_value is not None:
            key, value = past_key_value  # the encoder side does not change between decoding steps
        else:
            source = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            key = self.split_heads(self.key(source))
            value = self.split_heads(self.value(source))
            if past_key_value is not None:
                key = tf.concat([tf.cast(past_key_value[0], key.dtype), key], axis=2)
                value = tf.concat([tf.cast(past_key_value[1], value.dtype), value], axis=2)
        length = query.shape[2]
        if (
            not output_attentions
            and past_key_value is None
            and encoder_hidden_states is None
            and head_mask is None
            and length is not None
            and length > unpadding.LONG_INPUT_THRESHOLD
        ):
            return self.chunked(query, key, value, attention_bias, training), None, (key, value)
        context, probs = self.attend(query, key, value, attention_bias, head_mask, training)
        return context, (probs if output_attentions else None), (key, value)

    def chunked(self, query, key, value, attention_bias, training):
        """Self-attention of a long input, `QUERY_CHUNK` queries at a time (never `[heads, L, L]`)."""
        relative = self.position_embedding_type != "absolute"
        return chunked_attention(
            query,
            key,
            value,
            attention_bias,
            lambda probs: self.dropout(probs, training=training),
            min(unpadding.QUERY_CHUNK, query.shape[2]),
            self.distance_embedding if relative else None,
            self.max_position_embeddings if relative else None,
            self.position_embedding_type == "relative_key_query",
        )

    def packed_attention(self, hidden_states, attention_bias, packing, training):
        """Attention of packed `[budget, hidden]` rows (`unpadded=True`), about Σ L_i².

        The projections run on the packed rows, which are then laid out in whole blocks per
        sequence (`packing.block_layout`); each query block meets only its own sequence's key
        blocks, with the relative distances and causal mask of the padded path. The context
        comes back packed. No probabilities (the unpadded path refuses `output_attentions`).
        """
        layout = packing.block_layout(self.causal)
        if layout is None:  # XLA with shapes unknown while tracing: scores in the padded layout
            query, key, value = (
                self.split_heads(packing.unpack(project(hidden_states)))
                for project in (self.query, self.key, self.value)
            )
            context, _ = self.attend(query, key, value, attention_bias, None, training)
            return packing.pack(context), None, (key, value)

        def blocks(project):  # [budget, hidden] -> [blocks, heads, block, head_dim]
            rows = packing.take_rows(project(hidden_states), layout.gather)
            rows = tf.reshape(rows, [-1, layout.block, self.num_heads, self.head_dim])
            return tf.transpose(rows, [0, 2, 1, 3])

        relative = None
        if self.position_embedding_type != "absolute":

            def relative(query_pairs, key_pairs, offset):
                return pair_relative_scores(
                    query_pairs,
                    key_pairs,
                    offset,
                    self.distance_embedding,
                    self.max_position_embeddings,
                    self.position_embedding_type == "relative_key_query",
                )

        context = block_pair_attention(
            blocks(self.query),
            blocks(self.key),
            blocks(self.value),
            layout,
            lambda probs: self.dropout(probs, training=training),
            relative,
            self.causal,
        )
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, self.num_heads * self.head_dim])
        return tf.gather(context, layout.scatter), None, None

    def attend(self, query, key, value, attention_bias, head_mask, training):
        """Attention over `[batch, heads, length, head_dim]`: context `[batch, q, hidden]`, probabilities."""
        batch_size, length = dim(query, 0), dim(query, 2)
        # Scores, masks and softmax in float32: a float16 mask bias plus a score would overflow.
        scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32) / math.sqrt(self.head_dim)
        if self.position_embedding_type != "absolute":
            scores = scores + self.relative_position_bias(query, key)
        if attention_bias is not None:  # where a query may look (bool: Keras autocasts float inputs)
            scores = tf.where(attention_bias, scores, tf.float32.min)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), query.dtype)
        probs = self.dropout(probs, training=training)
        if head_mask is not None:
            probs = probs * tf.cast(head_mask, probs.dtype)
        context = tf.matmul(probs, value)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch_size, length, -1])
        return context, probs


class XLMRobertaSelfOutput(Block):
    """dense -> dropout -> residual -> LayerNorm after attention (also the feed-forward's output)."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense(config, config.hidden_size, "dense")
        self.LayerNorm = layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def call(self, hidden_states, residual, training=False):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + residual)


class XLMRobertaAttention(Block):
    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str, **kwargs):
        super().__init__(**kwargs)
        self.self = XLMRobertaSelfAttention(config, position_embedding_type, name="self")
        self.output_layer = XLMRobertaSelfOutput(config, name="output")

    def call(self, hidden_states, inputs, head_mask=None, past_key_value=None, cross=False, training=False):
        context, probs, key_value = self.self(
            hidden_states,
            inputs=inputs,
            head_mask=head_mask,
            past_key_value=past_key_value,
            cross=cross,
            training=training,
        )
        return self.output_layer(context, hidden_states, training=training), probs, key_value
