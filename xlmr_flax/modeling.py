"""XLM-RoBERTa in Flax (Linen).

Read top to bottom: embeddings, attention, layer, encoder, pooler, heads, the main
module and the six head modules, then the wrapper base class (parameters and the call)
and the seven public `FlaxXLMRoberta*` classes; input checks are in `inputs.py`, loading
and saving in `checkpoint_io.py`. Module and parameter names
reproduce the reference `flax_model.msgpack` paths, which `xlmr_core.weight_mapping`
translates to and from the canonical checkpoint names.

A wrapper holds a Linen module and its parameters:

    model = FlaxXLMRobertaForMaskedLM(config, seed=0, dtype=jnp.float32)
    out = model(input_ids, attention_mask, params=None, dropout_rng=None, train=False)

Every call path is `jax.jit`-able: outputs are pytrees, and checks that need values
(token ids in range, labels) run only when the values are concrete (outside `jit`);
shape checks run always.

Key/value cache (decoders only): `past_key_values` is a tuple with one entry per layer,
`(self_key, self_value)` or `(self_key, self_value, cross_key, cross_value)`, each
`[batch, heads, length, head_dim]` -- the same layout as `xlmr_torch`. Each cached step
grows the cache, so under `jit` every new length compiles once.

For jitted generation there is also a fixed-size cache: `model.init_cache(batch, max_length)`
gives zero buffers of length `max_length`, and each call passes them with `cache_index`
(how many positions are already filled; may be traced). New keys and values are written
at `cache_index`, later slots are masked, and the returned buffers keep their shape, so one
compiled step serves every position. `attention_mask`, when given, covers all `max_length`
slots.

Embedding rows at `pad_token_id` (words and absolute positions) receive no gradient, as
with PyTorch's `nn.Embedding(padding_idx=...)`, so training matches `xlmr_torch` exactly.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xlmr_core import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    XLMRobertaConfig,
)
from xlmr_core.modeling_utils import (
    CROSS_ATTENTION_INPUTS,
    IGNORE_INDEX,
    TOKEN_INPUTS,
    check_first_token,
    check_sequence_length,
    classification_problem_type,
    relative_position_index,
)
from xlmr_core.unpadding import check_contiguous_rows, check_unpadded_options
from xlmr_core.unpadding import token_budget as bucketed_token_budget

from .checkpoint_io import CheckpointIO
from .encoding import EncodingMixin
from .inputs import (
    ID_INPUTS,
    InputChecks,
    as_array,
    as_integers,
    check_label_shapes,
    check_range,
    check_shape,
    clamp_to_index,
    concrete,
    is_static,
    to_index,
)

logger = logging.getLogger(__name__)

ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

Dtype = Any


# ----------------------------------------------------------------------------- outputs as pytrees
# The shared output classes are ordered dicts; registering them lets `jit`, `grad` and
# `tree_map` pass them through. Absent (None) fields are not children. The serialization
# registration lets a `jax.export.Exported` returning them be serialized and read back.


def _register_output_pytrees() -> None:
    def flatten_with_keys(output):
        return [(jax.tree_util.DictKey(k), v) for k, v in output.items()], tuple(output.keys())

    def flatten(output):
        return tuple(output.values()), tuple(output.keys())

    for cls in (
        BaseModelOutputWithPoolingAndCrossAttentions,
        CausalLMOutputWithCrossAttentions,
        MaskedLMOutput,
        MultipleChoiceModelOutput,
        QuestionAnsweringModelOutput,
        SequenceClassifierOutput,
        TokenClassifierOutput,
    ):

        def unflatten(keys, children, cls=cls):
            return cls(**dict(zip(keys, children)))

        try:
            jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
            jax.export.register_pytree_node_serialization(
                cls,
                serialized_name=f"xlmr.{cls.__name__}",
                serialize_auxdata=lambda keys: json.dumps(list(keys)).encode(),
                deserialize_auxdata=lambda data: tuple(json.loads(data)),
            )
        except ValueError:  # already registered (module reloaded)
            pass


_register_output_pytrees()


# ----------------------------------------------------------------------------- small pieces


def _normal(config: XLMRobertaConfig):
    return jax.nn.initializers.normal(stddev=config.initializer_range)


def _embedding_init(std: float, padding_idx: int | None):
    """Normal init with the padding row zeroed, as the reference initialises it."""

    def init(key, shape, dtype=jnp.float32):
        table = jax.random.normal(key, shape, dtype) * std
        if padding_idx is not None and padding_idx < shape[0]:
            table = table.at[padding_idx].set(0)
        return table

    return init


def _dense(config, features, dtype, param_dtype, name=None, use_bias=True):
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=_normal(config),
        name=name,
    )


def _layer_norm(config, dtype, param_dtype):
    # The exact two-pass variance: the fast E[x^2] - E[x]^2 form drifts from PyTorch by ~1e-5.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, use_fast_variance=False
    )


def _lookup_without_padding_gradient(table: nn.Embed, ids, padding_idx: int | None):
    """Embedding lookup where rows equal to `padding_idx` get no gradient (PyTorch's padding_idx)."""
    vectors = table(ids)
    if padding_idx is None:
        return vectors
    return jnp.where((ids == padding_idx)[..., None], jax.lax.stop_gradient(vectors), vectors)


def _classifier_dropout(config: XLMRobertaConfig) -> float:
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


# ----------------------------------------------------------------------------- unpadded layout


class Packing(NamedTuple):
    """Where the packed real tokens of an `unpadded=True` call sit in the padded layout.

    The contract is `xlmr_core.unpadding`. `rows[i]` is the flat `[batch * seq]` position of
    packed row `i` (rows past the real-token count are filler, pointing past the end);
    `slots[p]` is the packed row of padded position `p`, or `budget` (a zero row) for padding.
    Everything is a gather: XLA CPU runs gathers in parallel, scatters serially.
    """

    rows: jax.Array
    slots: jax.Array
    count: jax.Array
    first: jax.Array
    batch_size: int
    seq_length: int

    @classmethod
    def from_mask(cls, attention_mask, budget: int) -> Packing:
        batch_size, seq_length = attention_mask.shape
        flat = attention_mask.reshape(-1).astype(bool)
        (rows,) = jnp.nonzero(flat, size=budget, fill_value=batch_size * seq_length)
        order = jnp.cumsum(flat) - 1
        # Tokens beyond the budget (a traced mask with too many) land on the zero row; the
        # call then returns NaN (see `guard`).
        slots = jnp.where(flat & (order < budget), order, budget).astype(jnp.int32)
        # Sentence-level heads read position 0 as before (as xlmr_torch: zeros for a left-padded row).
        first = jnp.arange(batch_size) * seq_length
        return cls(rows.astype(jnp.int32), slots, jnp.sum(flat), first, batch_size, seq_length)

    @property
    def budget(self) -> int:
        return self.rows.shape[0]

    def pack(self, x):
        """`[batch, seq, ...]` -> `[budget, ...]`: real tokens, then filler (the last position again)."""
        flat = x.reshape(self.batch_size * self.seq_length, *x.shape[2:])
        return jnp.take(flat, self.rows, axis=0, mode="clip")

    def pack_labels(self, labels):
        """Labels of the packed rows; padded positions are not in them, filler rows get `IGNORE_INDEX`."""
        real = jnp.arange(self.budget) < self.count
        return jnp.where(real, self.pack(labels), IGNORE_INDEX)

    def _with_zero_row(self, x):
        return jnp.concatenate([x, jnp.zeros((1, *x.shape[1:]), x.dtype)], axis=0)

    def unpack(self, x):
        """`[budget, ...]` -> `[batch, seq, ...]` with zeros at padded positions."""
        padded = jnp.take(self._with_zero_row(x), self.slots, axis=0)
        return padded.reshape(self.batch_size, self.seq_length, *x.shape[1:])

    def first_tokens(self, x):
        """`[budget, hidden]` -> `[batch, 1, hidden]`: position 0 of each row (zeros where it is padding)."""
        return jnp.take(self._with_zero_row(x), self.slots[self.first], axis=0)[:, None]

    def rows_of(self, positions):
        """Packed rows of flat padded `positions` (-1 or padding: the zero row), for gathers from `x`."""
        safe = jnp.where(positions >= 0, positions, 0)
        return jnp.where(positions >= 0, self.slots[safe], self.budget)

    def take_rows(self, x, rows):
        return jnp.take(self._with_zero_row(x), rows, axis=0)

    def guard(self, x):
        """NaN everywhere when the real tokens did not fit the budget (only possible under `jit`)."""
        return jnp.where(self.count > self.budget, jnp.nan, x).astype(x.dtype)


# ----------------------------------------------------------------------------- embeddings


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


class XLMRobertaEmbeddings(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        config, pad = self.config, self.config.pad_token_id
        embed = functools.partial(nn.Embed, dtype=self.dtype, param_dtype=self.param_dtype)
        std = config.initializer_range
        self.word_embeddings = embed(
            config.vocab_size, config.hidden_size, embedding_init=_embedding_init(std, pad)
        )
        self.position_embeddings = embed(
            config.max_position_embeddings, config.hidden_size, embedding_init=_embedding_init(std, pad)
        )
        self.token_type_embeddings = embed(
            config.type_vocab_size, config.hidden_size, embedding_init=_normal(config)
        )
        self.LayerNorm = _layer_norm(config, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, position_ids, inputs_embeds, deterministic=True):
        pad = self.config.pad_token_id
        if inputs_embeds is None:
            inputs_embeds = _lookup_without_padding_gradient(self.word_embeddings, input_ids, pad)
        embeddings = inputs_embeds.astype(self.dtype) + self.token_type_embeddings(token_type_ids)
        if self.config.position_embedding_type == "absolute":
            embeddings = embeddings + _lookup_without_padding_gradient(
                self.position_embeddings, position_ids, pad
            )
        else:
            # The relative kinds never read this table, but checkpoints carry it, so it exists.
            _ = self.position_embeddings.embedding
        return self.dropout(self.LayerNorm(embeddings), deterministic=deterministic)


# ----------------------------------------------------------------------------- attention


class XLMRobertaSelfAttention(nn.Module):
    """Multi-head attention over the layer's own tokens, or over encoder states (cross)."""

    config: XLMRobertaConfig
    position_embedding_type: str = "absolute"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        config = self.config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = _dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.key = _dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.value = _dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        if self.position_embedding_type != "absolute":
            self.distance_embedding = nn.Embed(
                2 * config.max_position_embeddings - 1,
                self.head_dim,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                embedding_init=_normal(config),
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
        elif cache_index is None:  # symbolic lengths (jax.export): the same table, built by jnp
            query_positions = (key_length - query_length) + jnp.arange(query_length)[:, None]
            index = query_positions - jnp.arange(key_length)[None, :] + max_positions - 1
        else:  # fixed-size cache: the queries sit at cache_index, cache_index + 1, ...
            query_positions = cache_index + jnp.arange(query.shape[2])[:, None]
            index = query_positions - jnp.arange(key.shape[2])[None, :] + max_positions - 1
            index = jnp.clip(index, 0, 2 * max_positions - 2)  # slots past the queries are masked anyway
        embedded = self.distance_embedding(index)
        scores = jnp.einsum("bhqd,qkd->bhqk", query, embedded)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + jnp.einsum("bhkd,qkd->bhqk", key, embedded)
        return scores / math.sqrt(self.head_dim)

    def __call__(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        deterministic=True,
        cache_index=None,
        packing=None,
    ):
        # Unpadded (`packing`): the projections run on the packed `[budget, hidden]` tokens; the
        # scores are computed per sequence in the padded layout, so every position kind and the
        # causal mask see exactly the padded path's positions.
        def project(dense, x):
            y = dense(x)
            return self.split_heads(y if packing is None else packing.unpack(y))

        query = project(self.query, hidden_states)
        batch_size, length = query.shape[0], query.shape[2]
        if encoder_hidden_states is not None and past_key_value is not None:
            key, value = (t.astype(self.dtype) for t in past_key_value)  # encoder side is fixed
        elif encoder_hidden_states is not None:
            key = self.split_heads(self.key(encoder_hidden_states))
            value = self.split_heads(self.value(encoder_hidden_states))
        else:
            key, value = project(self.key, hidden_states), project(self.value, hidden_states)
            if past_key_value is not None and cache_index is not None:
                start = (0, 0, cache_index, 0)
                key = jax.lax.dynamic_update_slice(past_key_value[0].astype(self.dtype), key, start)
                value = jax.lax.dynamic_update_slice(past_key_value[1].astype(self.dtype), value, start)
            elif past_key_value is not None:
                key = jnp.concatenate([past_key_value[0].astype(self.dtype), key], axis=2)
                value = jnp.concatenate([past_key_value[1].astype(self.dtype), value], axis=2)

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
        context = context.transpose(0, 2, 1, 3).reshape(batch_size, length, self.num_heads * self.head_dim)
        if packing is not None:
            context = packing.pack(context)
        return context, probs, (key, value)


class XLMRobertaSelfOutput(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)

    def __call__(self, hidden_states, residual, deterministic=True):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), deterministic=deterministic) + residual)


class XLMRobertaAttention(nn.Module):
    config: XLMRobertaConfig
    position_embedding_type: str = "absolute"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.self = XLMRobertaSelfAttention(
            self.config, self.position_embedding_type, self.dtype, self.param_dtype
        )
        self.output = XLMRobertaSelfOutput(self.config, self.dtype, self.param_dtype)

    def __call__(
        self,
        hidden_states,
        attention_bias,
        head_mask,
        encoder_hidden_states,
        past_key_value,
        deterministic=True,
        cache_index=None,
        packing=None,
    ):
        context, probs, key_value = self.self(
            hidden_states,
            attention_bias,
            head_mask,
            encoder_hidden_states,
            past_key_value,
            deterministic,
            cache_index,
            packing,
        )
        return self.output(context, hidden_states, deterministic), probs, key_value


# ----------------------------------------------------------------------------- layer


class XLMRobertaIntermediate(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.dense = _dense(self.config, self.config.intermediate_size, self.dtype, self.param_dtype)
        self.activation = ACTIVATIONS[self.config.hidden_act]

    def __call__(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class XLMRobertaOutput(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)

    def __call__(self, hidden_states, residual, deterministic=True):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), deterministic=deterministic) + residual)


class XLMRobertaLayer(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        config = self.config
        self.attention = XLMRobertaAttention(
            config, config.position_embedding_type, self.dtype, self.param_dtype
        )
        if config.add_cross_attention:
            # Encoder positions are unrelated to decoder positions: cross-attention has no relative term.
            self.crossattention = XLMRobertaAttention(config, "absolute", self.dtype, self.param_dtype)
        self.intermediate = XLMRobertaIntermediate(config, self.dtype, self.param_dtype)
        self.output = XLMRobertaOutput(config, self.dtype, self.param_dtype)

    def __call__(
        self,
        hidden_states,
        attention_bias,
        head_mask,
        encoder_hidden_states,
        encoder_attention_bias,
        past_key_value,
        deterministic=True,
        cache_index=None,
        packing=None,
    ):
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
        hidden_states, self_probs, present = self.attention(
            hidden_states, attention_bias, head_mask, None, self_past, deterministic, cache_index, packing
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            hidden_states, cross_probs, cross_present = self.crossattention(
                hidden_states,
                encoder_attention_bias,
                head_mask,
                encoder_hidden_states,
                cross_past,
                deterministic,
            )
            present = present + cross_present
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states, deterministic)
        return hidden_states, self_probs, cross_probs, present


# ----------------------------------------------------------------------------- encoder


class XLMRobertaLayerList(nn.Module):
    """Holds the layers under the names `0`, `1`, ... so parameters read `encoder/layer/3/...`."""

    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.layers = [
            XLMRobertaLayer(self.config, self.dtype, self.param_dtype, name=str(i))
            for i in range(self.config.num_hidden_layers)
        ]


class XLMRobertaEncoder(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.layer = XLMRobertaLayerList(self.config, self.dtype, self.param_dtype)

    def __call__(
        self,
        hidden_states,
        attention_bias,
        head_mask,
        encoder_hidden_states,
        encoder_attention_bias,
        past_key_values,
        use_cache,
        output_attentions,
        output_hidden_states,
        deterministic=True,
        cache_index=None,
        packing=None,
    ):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer.layers):
            hidden_states, probs, cross_probs, present = layer(
                hidden_states,
                attention_bias,
                None if head_mask is None else head_mask[i],
                encoder_hidden_states,
                encoder_attention_bias,
                None if past_key_values is None else past_key_values[i],
                deterministic,
                cache_index,
                packing,
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (probs,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_probs,)
            if use_cache:
                presents += (present,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross_attentions


# ----------------------------------------------------------------------------- pooler


class XLMRobertaPooler(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)

    def __call__(self, hidden_states):
        check_first_token(hidden_states.shape[1])
        return jnp.tanh(self.dense(hidden_states[:, 0]))


# ----------------------------------------------------------------------------- heads


class XLMRobertaLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> vocabulary projection (usually the word-embedding matrix)."""

    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        config = self.config
        self.dense = _dense(config, config.hidden_size, self.dtype, self.param_dtype)
        self.layer_norm = _layer_norm(config, self.dtype, self.param_dtype)
        if not config.tie_word_embeddings:
            self.decoder = _dense(config, config.vocab_size, self.dtype, self.param_dtype, use_bias=False)
        self.bias = self.param("bias", jax.nn.initializers.zeros, (config.vocab_size,), self.param_dtype)

    def __call__(self, features, word_embeddings=None):
        """`word_embeddings` `[vocab, hidden]` is the tied projection when `tie_word_embeddings`."""
        x = self.layer_norm(jax.nn.gelu(self.dense(features), approximate=False))
        if self.config.tie_word_embeddings:
            logits = x @ word_embeddings.astype(self.dtype).T
        else:
            logits = self.decoder(x)
        return logits + self.bias.astype(self.dtype)


class XLMRobertaClassificationHead(nn.Module):
    """Sentence-level head on the first (`<s>`) token."""

    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(_classifier_dropout(self.config))
        self.out_proj = _dense(self.config, self.config.num_labels, self.dtype, self.param_dtype)

    def __call__(self, features, deterministic=True):
        check_first_token(features.shape[1])
        x = self.dropout(features[:, 0], deterministic=deterministic)
        x = self.dropout(jnp.tanh(self.dense(x)), deterministic=deterministic)
        return self.out_proj(x)


# ----------------------------------------------------------------------------- losses
# All in float32 whatever the compute dtype; a mean over zero labelled items is NaN, as in PyTorch.


def cross_entropy(logits, labels, ignore_index: int | None = IGNORE_INDEX):
    """Mean token cross-entropy over labels that are not `ignore_index`."""
    logits = logits.astype(jnp.float32)
    valid = jnp.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe_labels = jnp.where(valid, labels, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe_labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.sum(valid)


def mse(predictions, targets):
    return jnp.mean((predictions.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2)


def binary_cross_entropy_with_logits(logits, targets):
    x, y = logits.astype(jnp.float32), targets.astype(jnp.float32)
    return jnp.mean(jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))


# ----------------------------------------------------------------------------- main module


class XLMRobertaModule(nn.Module):
    """The bare encoder (or decoder, with `config.is_decoder`), with an optional pooler.

    Takes already-checked inputs and resolved flags; the wrappers below do the checking.
    """

    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    add_pooling_layer: bool = True

    def setup(self):
        self.embeddings = XLMRobertaEmbeddings(self.config, self.dtype, self.param_dtype)
        self.encoder = XLMRobertaEncoder(self.config, self.dtype, self.param_dtype)
        if self.add_pooling_layer:
            self.pooler = XLMRobertaPooler(self.config, self.dtype, self.param_dtype)

    def word_embeddings(self):
        """The `[vocab, hidden]` matrix the tied LM head projects onto."""
        return self.embeddings.word_embeddings.embedding

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
        cache_index=None,
        token_budget: int | None = None,
        keep_packed: bool = False,
    ):
        """`cache_index` (with fixed-size `past_key_values`) says how many cache slots are filled.

        `token_budget` (static, with `attention_mask`) runs unpadded: everything but the attention
        scores on the first `token_budget` real tokens, packed (see `Packing`). With `keep_packed`
        the call returns `(output, packing)` and `last_hidden_state` stays packed `[budget, hidden]`,
        for the heads to run on; `packing` is None on the padded path."""
        config = self.config
        given = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = given.shape[:2]
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if cache_index is not None:
            past_length = cache_index  # positions continue after the filled slots
        if token_type_ids is None:
            token_type_ids = jnp.zeros((batch_size, seq_length), jnp.int32)
        if position_ids is None:
            if input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, config.pad_token_id, past_length)
            else:
                position_ids = position_ids_from_inputs_embeds(
                    inputs_embeds, config.pad_token_id, past_length
                )

        packing = None
        if token_budget is not None:
            packing = Packing.from_mask(attention_mask, token_budget)
            # Ids and positions are gathered from the padded layout, so the numbers are the padded path's.
            token_type_ids = packing.pack(jnp.broadcast_to(token_type_ids, (batch_size, seq_length)))
            position_ids = packing.pack(jnp.broadcast_to(position_ids, (batch_size, seq_length)))
            input_ids = None if input_ids is None else packing.pack(input_ids)
            inputs_embeds = None if inputs_embeds is None else packing.pack(inputs_embeds)
        embedding_output = self.embeddings(
            input_ids, token_type_ids, position_ids, inputs_embeds, deterministic=deterministic
        )
        if packing is not None:
            embedding_output = packing.guard(embedding_output)
        if cache_index is None:
            attention_bias = self._self_attention_bias(attention_mask, seq_length, past_length)
        else:
            attention_bias = self._fixed_cache_bias(attention_mask, seq_length, past_key_values, cache_index)
        encoder_attention_bias = None
        if encoder_hidden_states is not None:
            encoder_hidden_states = encoder_hidden_states.astype(self.dtype)
            if encoder_attention_mask is not None:
                encoder_attention_bias = self._bias(encoder_attention_mask.astype(bool)[:, None, None, :])
        if head_mask is not None:
            head_mask = head_mask.astype(self.dtype)[:, None, :, None, None]  # [layers, 1, heads, 1, 1]
        hidden_states, presents, all_hidden_states, attentions, cross_attentions = self.encoder(
            embedding_output,
            attention_bias,
            head_mask,
            encoder_hidden_states,
            encoder_attention_bias,
            past_key_values,
            use_cache,
            output_attentions,
            output_hidden_states,
            deterministic,
            cache_index,
            packing,
        )
        pooled = None
        if self.add_pooling_layer:
            pooled = self.pooler(hidden_states if packing is None else packing.first_tokens(hidden_states))
        if packing is not None:
            if all_hidden_states is not None:
                all_hidden_states = tuple(packing.unpack(h) for h in all_hidden_states)
            if not keep_packed:
                hidden_states = packing.unpack(hidden_states)
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=attentions,
            cross_attentions=cross_attentions,
        )
        return (output, packing) if keep_packed else output

    def _bias(self, keep):
        """Additive bias: 0 where a query may look, the dtype's minimum elsewhere."""
        return jnp.where(keep, 0.0, jnp.finfo(self.dtype).min).astype(self.dtype)

    def _self_attention_bias(self, attention_mask, seq_length, past_length):
        total_length = past_length + seq_length
        keep = None
        if attention_mask is not None:
            keep = attention_mask.astype(bool)[:, None, None, :]
        # (One new token may see every key; a symbolic length under jax.export may be one or more.)
        if self.config.is_decoder and not (is_static(seq_length) and seq_length == 1):
            causal = jnp.tril(jnp.ones((seq_length, total_length), bool), past_length)[None, None]
            keep = causal if keep is None else keep & causal
        return None if keep is None else self._bias(keep)

    def _fixed_cache_bias(self, attention_mask, seq_length, past_key_values, cache_index):
        """Causal mask over the whole buffer: query i sees slots up to cache_index + i."""
        slots = past_key_values[0][0].shape[2]
        query_positions = cache_index + jnp.arange(seq_length)[:, None]
        keep = (jnp.arange(slots)[None, :] <= query_positions)[None, None]
        if attention_mask is not None:
            keep = keep & attention_mask.astype(bool)[:, None, None, :]
        return self._bias(keep)


# ----------------------------------------------------------------------------- head modules


class XLMRobertaForCausalLMModule(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.roberta = XLMRobertaModule(self.config, self.dtype, self.param_dtype, add_pooling_layer=False)
        self.lm_head = XLMRobertaLMHead(self.config, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        outputs, packing = self.roberta(**inputs, deterministic=deterministic, keep_packed=True)
        logits = self.lm_head(outputs.last_hidden_state, self.roberta.word_embeddings())
        loss = None
        if labels is not None and packing is None:
            # Position t predicts token t + 1.
            loss = cross_entropy(logits[:, :-1], labels[:, 1:])
        elif labels is not None:
            # The same pairs, where both t and t + 1 are real tokens.
            mask = inputs["attention_mask"].astype(bool)
            ignored = jnp.full_like(labels[:, :1], IGNORE_INDEX)
            targets = jnp.concatenate([jnp.where(mask, labels, IGNORE_INDEX)[:, 1:], ignored], axis=1)
            loss = cross_entropy(logits, packing.pack_labels(targets))
        if packing is not None:
            logits = packing.unpack(logits)
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )


class XLMRobertaForMaskedLMModule(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.roberta = XLMRobertaModule(self.config, self.dtype, self.param_dtype, add_pooling_layer=False)
        self.lm_head = XLMRobertaLMHead(self.config, self.dtype, self.param_dtype)

    def __call__(self, labels=None, max_predictions: int | None = None, deterministic=True, **inputs):
        """With `max_predictions` (static), the LM head runs only on the labelled positions."""
        outputs, packing = self.roberta(**inputs, deterministic=deterministic, keep_packed=True)
        sequence_output = outputs.last_hidden_state
        word_embeddings = self.roberta.word_embeddings()
        loss = masked_positions = None
        if max_predictions is not None:
            flat_labels = labels.reshape(-1)
            labelled = flat_labels != IGNORE_INDEX
            if packing is not None:  # padded positions are never labelled
                labelled = labelled & inputs["attention_mask"].reshape(-1).astype(bool)
            # Static size for jit: the first `max_predictions` labelled positions, padded with -1.
            (masked_positions,) = jnp.nonzero(labelled, size=max_predictions, fill_value=-1)
            real = masked_positions >= 0
            rows = jnp.where(real, masked_positions, 0)
            if packing is None:
                features = sequence_output.reshape(-1, sequence_output.shape[-1])[rows]
            else:
                features = packing.take_rows(sequence_output, packing.rows_of(masked_positions))
            logits = self.lm_head(features, word_embeddings)
            loss = cross_entropy(logits, jnp.where(real, flat_labels[rows], IGNORE_INDEX))
            # More labelled positions than room: say so with NaN rather than a silently partial loss.
            loss = jnp.where(jnp.sum(labelled) > max_predictions, jnp.nan, loss)
        else:
            logits = self.lm_head(sequence_output, word_embeddings)
            if labels is not None:
                loss = cross_entropy(logits, labels if packing is None else packing.pack_labels(labels))
            if packing is not None:
                logits = packing.unpack(logits)
        return MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            masked_positions=masked_positions,
        )


class XLMRobertaForSequenceClassificationModule(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.roberta = XLMRobertaModule(self.config, self.dtype, self.param_dtype, add_pooling_layer=False)
        self.classifier = XLMRobertaClassificationHead(self.config, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        outputs, packing = self.roberta(**inputs, deterministic=deterministic, keep_packed=True)
        features = outputs.last_hidden_state
        if packing is not None:
            features = packing.first_tokens(features)
        logits = self.classifier(features, deterministic=deterministic)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def sequence_classification_loss(config: XLMRobertaConfig, logits, labels):
    """The loss `config.problem_type` names (decided from the labels' dtype when unset)."""
    problem_type = classification_problem_type(config, jnp.issubdtype(labels.dtype, jnp.integer))
    if problem_type == "regression":
        if logits.shape[-1] == 1:
            return mse(logits[:, 0], labels.reshape(-1))
        return mse(logits, labels)
    if problem_type == "single_label_classification":
        return cross_entropy(logits, labels.reshape(-1))
    return binary_cross_entropy_with_logits(logits, labels)


class XLMRobertaForMultipleChoiceModule(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.roberta = XLMRobertaModule(self.config, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = _dense(self.config, 1, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        """Inputs are `[batch, num_choices, sequence(, hidden)]`; each choice is encoded on its own."""
        given = inputs["input_ids"] if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
        batch_size, num_choices, seq_length = given.shape[:3]
        per_choice = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")
        flat = dict(inputs)
        for name in per_choice:
            if inputs.get(name) is not None:
                flat[name] = inputs[name].reshape(batch_size * num_choices, *inputs[name].shape[2:])
        outputs = self.roberta(**flat, deterministic=deterministic)
        pooled = self.dropout(outputs.pooler_output, deterministic=deterministic)
        logits = self.classifier(pooled).reshape(batch_size, num_choices)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class XLMRobertaForTokenClassificationModule(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.roberta = XLMRobertaModule(self.config, self.dtype, self.param_dtype, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(self.config))
        self.classifier = _dense(self.config, self.config.num_labels, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        outputs, packing = self.roberta(**inputs, deterministic=deterministic, keep_packed=True)
        logits = self.classifier(self.dropout(outputs.last_hidden_state, deterministic=deterministic))
        loss = None
        if labels is not None:
            loss = cross_entropy(logits, labels if packing is None else packing.pack_labels(labels))
        if packing is not None:
            logits = packing.unpack(logits)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class XLMRobertaForQuestionAnsweringModule(nn.Module):
    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.roberta = XLMRobertaModule(self.config, self.dtype, self.param_dtype, add_pooling_layer=False)
        self.qa_outputs = _dense(self.config, self.config.num_labels, self.dtype, self.param_dtype)

    def __call__(self, start_positions=None, end_positions=None, deterministic=True, **inputs):
        outputs, packing = self.roberta(**inputs, deterministic=deterministic, keep_packed=True)
        logits = self.qa_outputs(outputs.last_hidden_state)
        if packing is not None:
            logits = packing.unpack(logits)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None:
            seq_length = start_logits.shape[1]
            # Positions outside the sequence are clamped to its length and ignored.
            start = jnp.clip(start_positions.reshape(-1), 0, seq_length)
            end = jnp.clip(end_positions.reshape(-1), 0, seq_length)
            start_scores, end_scores = start_logits, end_logits
            if packing is not None:
                # Unpadded: a padded position is no candidate span end, and a target there is ignored.
                real = inputs["attention_mask"].astype(bool)
                start_scores = jnp.where(real, start_logits, -jnp.inf)
                end_scores = jnp.where(real, end_logits, -jnp.inf)
                padded_target = jnp.concatenate([~real, jnp.ones_like(real[:, :1])], axis=1)
                start = jnp.where(
                    jnp.take_along_axis(padded_target, start[:, None], 1)[:, 0], seq_length, start
                )
                end = jnp.where(jnp.take_along_axis(padded_target, end[:, None], 1)[:, 0], seq_length, end)
            loss = (
                cross_entropy(start_scores, start, ignore_index=seq_length)
                + cross_entropy(end_scores, end, ignore_index=seq_length)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# ----------------------------------------------------------------------------- wrapper base class

_ALL_INPUTS = (*TOKEN_INPUTS, *CROSS_ATTENTION_INPUTS, "past_key_values")


class FlaxXLMRobertaPreTrainedModel(CheckpointIO, InputChecks):
    """A Linen module (`model.module`) plus its parameters (`model.params`) and input checks.

    `dtype` is the computation dtype, `param_dtype` the dtype parameters are created and
    loaded in (bfloat16 compute over float32 parameters works).
    """

    module_class: type[nn.Module]
    base_model_prefix = "roberta"
    # Which optional arguments the head takes, beyond the token inputs.
    accepted_arguments: frozenset[str] = frozenset()

    def __init__(
        self,
        config: XLMRobertaConfig,
        seed: int = 0,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        *,
        _do_init: bool = True,
    ):
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        config.validate()
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True: cross-attention is a decoder part"
            )
        self.config = config
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.module = self.module_class(config=config, dtype=dtype, param_dtype=param_dtype)
        self.seed = seed
        self._params = self.init_weights(jax.random.PRNGKey(seed)) if _do_init else None

    # -- parameters
    def _dummy_inputs(self) -> dict:
        shape = (1, 1, 1) if self.module_class is XLMRobertaForMultipleChoiceModule else (1, 1)
        inputs = {"input_ids": jnp.zeros(shape, jnp.int32)}
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = jnp.zeros((1, 1, self.config.hidden_size), self.dtype)
        return inputs

    def init_weights(self, rng) -> dict:
        """Fresh parameters, initialised like the reference (normal(initializer_range), zero biases)."""
        return self.module.init(rng, **self._dummy_inputs())["params"]

    def parameter_shapes(self) -> dict:
        """The parameter tree as `jax.ShapeDtypeStruct`s, without allocating anything."""
        return jax.eval_shape(self.init_weights, jax.random.PRNGKey(0))

    @property
    def params(self) -> dict:
        if self._params is None:
            raise ValueError("this model was built without parameters; set model.params")
        return self._params

    @params.setter
    def params(self, params: dict) -> None:
        self._params = params

    def num_parameters(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(self.params))

    # -- calling
    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: bool | None = None,
        cache_index=None,
        labels=None,
        start_positions=None,
        end_positions=None,
        labelled_positions_only: bool = False,
        max_predictions: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        params: dict | None = None,
        dropout_rng=None,
        train: bool = False,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        """Run the model. Arguments and outputs as in `xlmr_torch`; `train=True` turns dropout on
        and needs `dropout_rng`. Works inside `jax.jit` / `jax.grad` with `params` passed in.

        `cache_index` selects the fixed-size cache (see `init_cache` and the module docstring);
        `max_predictions` bounds the labelled-positions masked-LM path under `jit`.

        `unpadded=True` computes on the real tokens of `attention_mask` only (`xlmr_core.unpadding`):
        packed into a static `token_budget` rows, outputs back in the padded layout with zeros at
        padding. With a concrete mask the budget defaults to the real-token count's bucket (one
        compilation per bucket) and a mask without padding takes the padded path; under `jit` the
        mask is traced, so pass `token_budget` (static; a batch with more real tokens gives NaN),
        else it is `batch * sequence` (correct, no saving)."""
        config = self.config
        optional = {
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
            "past_key_values": past_key_values,
            "use_cache": use_cache,
            "cache_index": cache_index,
            "labels": labels,
            "start_positions": start_positions,
            "end_positions": end_positions,
            "labelled_positions_only": labelled_positions_only or None,
            "max_predictions": max_predictions,
        }
        for name, value in optional.items():
            if value is not None and name not in self.accepted_arguments:
                raise TypeError(f"{type(self).__name__} does not take {name}")
        if train and dropout_rng is None:
            raise ValueError("train=True turns dropout on and needs dropout_rng (a jax.random key)")
        output_attentions = bool(config.output_attentions if output_attentions is None else output_attentions)
        if unpadded:  # before the shape checks: the option, not its shape, is what is wrong
            check_unpadded_options(
                past_key_values=past_key_values,
                use_cache=use_cache,
                encoder_hidden_states=encoder_hidden_states,
                output_attentions=output_attentions,
                head_mask=head_mask,
            )

        inputs = {
            "input_ids": as_integers(input_ids, "input_ids"),
            "attention_mask": as_array(attention_mask),
            "token_type_ids": as_integers(token_type_ids, "token_type_ids"),
            "position_ids": as_integers(position_ids, "position_ids"),
            "head_mask": as_array(head_mask),
            "inputs_embeds": as_array(inputs_embeds),
            "encoder_hidden_states": as_array(encoder_hidden_states),
            "encoder_attention_mask": as_array(encoder_attention_mask),
            "past_key_values": as_array(past_key_values),
            "cache_index": None if cache_index is None else jnp.asarray(cache_index, jnp.int32),
        }
        inputs = self._check_inputs(inputs)
        inputs.update({name: to_index(inputs[name]) for name in ID_INPUTS})
        inputs["token_budget"] = self._unpadded_budget(inputs, unpadded, token_budget)
        use_cache = config.is_decoder and (config.use_cache if use_cache is None else use_cache)
        if labels is not None or inputs["token_budget"] is not None:
            use_cache = False
        if cache_index is not None:
            use_cache = True  # the updated buffers are the point of the call
        kwargs = dict(
            inputs,
            use_cache=bool(use_cache),
            output_attentions=output_attentions,
            output_hidden_states=bool(
                config.output_hidden_states if output_hidden_states is None else output_hidden_states
            ),
        )
        if "use_cache" not in self.accepted_arguments:
            kwargs["use_cache"] = False  # heads without a cache output do not build one
        kwargs.update(
            self._head_arguments(
                inputs, labels, start_positions, end_positions, labelled_positions_only, max_predictions
            )
        )
        rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
        output = self.module.apply(
            {"params": self.params if params is None else params},
            **kwargs,
            deterministic=not train,
            rngs=rngs,
        )
        use_dict = config.return_dict if return_dict is None else return_dict
        return output if use_dict else output.to_tuple()

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        """Check and convert the head's own arguments (labels and the like); overridden per head."""
        return {}

    def _unpadded_budget(self, inputs, unpadded, token_budget) -> int | None:
        """The static packed length of an `unpadded=True` call, or None for the padded path."""
        if not unpadded:
            if token_budget is not None:
                raise ValueError("token_budget applies to unpadded=True")
            return None
        if token_budget is not None and (
            isinstance(token_budget, bool)
            or not isinstance(token_budget, (int, np.integer))
            or token_budget < 1
        ):
            raise ValueError(f"token_budget must be a positive int (static under jit); got {token_budget!r}")
        mask = inputs["attention_mask"]
        if mask is None:
            return None  # nothing is padding
        rows = mask.reshape(-1, mask.shape[-1])  # multiple choice: one row per choice
        capacity = rows.shape[0] * rows.shape[1]
        values = concrete(mask)
        if values is None:
            if token_budget is None and not is_static(capacity):
                raise ValueError(
                    "unpadded=True with symbolic shapes (jax.export) needs a static token_budget"
                )
            return int(capacity if token_budget is None else token_budget)
        check_contiguous_rows(values.reshape(rows.shape))
        count = int(np.count_nonzero(values))
        if count == capacity:
            return None  # no padding: the padded path is the unpadded one
        if token_budget is None:
            return bucketed_token_budget(count, capacity)
        if token_budget < count:
            raise ValueError(
                f"token_budget={token_budget} is smaller than the {count} real tokens of attention_mask"
            )
        return int(token_budget)

    def init_cache(self, batch_size: int, max_length: int) -> tuple:
        """Zero key/value buffers for `max_length` positions, for calls with `cache_index`."""
        config = self.config
        if not config.is_decoder:
            raise ValueError("a key/value cache needs a decoder (config.is_decoder=True)")
        check_sequence_length(config, 0, max_length)
        shape = (batch_size, config.num_attention_heads, max_length, config.head_dim)
        return tuple(
            (jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype))
            for _ in range(config.num_hidden_layers)
        )


# ----------------------------------------------------------------------------- the models


class FlaxXLMRobertaModel(EncodingMixin, FlaxXLMRobertaPreTrainedModel):
    """The bare encoder (or decoder, with `config.is_decoder`), with the pooler."""

    module_class = XLMRobertaModule
    accepted_arguments = frozenset(
        {"encoder_hidden_states", "encoder_attention_mask", "past_key_values", "use_cache", "cache_index"}
    )


class FlaxXLMRobertaForCausalLM(FlaxXLMRobertaPreTrainedModel):
    """Decoder with a language-model head; `labels` give the next-token loss (shifted inside)."""

    module_class = XLMRobertaForCausalLMModule
    accepted_arguments = frozenset(
        {
            "encoder_hidden_states",
            "encoder_attention_mask",
            "past_key_values",
            "use_cache",
            "cache_index",
            "labels",
        }
    )

    def __init__(self, config, *args, **kwargs):
        if not config.is_decoder:
            logger.warning("FlaxXLMRobertaForCausalLM is meant to run with is_decoder=True")
        super().__init__(config, *args, **kwargs)

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labels is None:
            return {}
        labels = as_integers(labels, "labels")
        check_label_shapes(labels, [self._token_shape(inputs)])
        check_range(labels, self.config.vocab_size, "labels", ignore_index=IGNORE_INDEX)
        return {"labels": to_index(labels)}


class FlaxXLMRobertaForMaskedLM(FlaxXLMRobertaPreTrainedModel):
    """Encoder with a masked-language-model head.

    `labelled_positions_only=True` (needs `labels`) runs the LM head only where
    `labels != -100`: the loss is the same, `logits` is `[num_labelled, vocab]` and
    `masked_positions` holds those rows' flat indices into `[batch * sequence]`. Under
    `jit` the number of rows must be static: pass `max_predictions`; rows beyond the
    labelled ones are padding (`masked_positions == -1`, left out of the loss), and a batch
    with more labelled positions than `max_predictions` gives a NaN loss. Outside `jit`
    `max_predictions` defaults to the exact count.
    """

    module_class = XLMRobertaForMaskedLMModule
    accepted_arguments = frozenset(
        {
            "encoder_hidden_states",
            "encoder_attention_mask",
            "labels",
            "labelled_positions_only",
            "max_predictions",
        }
    )

    def __init__(self, config, *args, **kwargs):
        if config.is_decoder:
            logger.warning("FlaxXLMRobertaForMaskedLM attends both ways; set is_decoder=False")
        super().__init__(config, *args, **kwargs)

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labelled_only and labels is None:
            raise ValueError("labelled_positions_only=True needs labels to know which positions are labelled")
        if max_predictions is not None and not labelled_only:
            raise ValueError("max_predictions applies to labelled_positions_only=True")
        if labels is None:
            return {}
        labels = as_integers(labels, "labels")
        check_label_shapes(labels, [self._token_shape(inputs)])
        check_range(labels, self.config.vocab_size, "labels", ignore_index=IGNORE_INDEX)
        if not labelled_only:
            return {"labels": to_index(labels)}
        values = concrete(labels)
        if values is not None:
            labelled = values != IGNORE_INDEX
            mask = concrete(inputs["attention_mask"])
            if inputs.get("token_budget") is not None and mask is not None:
                labelled &= mask.astype(bool)  # unpadded: padded positions are never labelled
            count = int(np.sum(labelled))
            if max_predictions is None:
                max_predictions = count
            elif count > max_predictions:
                raise ValueError(
                    f"labels mark {count} positions, more than max_predictions={max_predictions}"
                )
        elif max_predictions is None:
            raise ValueError(
                "under jit, labelled_positions_only=True needs a static max_predictions "
                "(the most labelled positions a batch can have)"
            )
        return {"labels": to_index(labels), "max_predictions": int(max_predictions)}


class FlaxXLMRobertaForSequenceClassification(FlaxXLMRobertaPreTrainedModel):
    """Classification or regression from the `<s>` token.

    The loss follows `config.problem_type`; when unset it is regression for one label,
    single-label classification for integer labels and multi-label otherwise.
    """

    module_class = XLMRobertaForSequenceClassificationModule
    accepted_arguments = frozenset({"labels"})

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labels is None:
            return {}
        labels = labels if isinstance(labels, jax.Array) else np.asarray(labels)
        integer = np.issubdtype(labels.dtype, np.integer)
        batch_size, num_labels = self._token_shape(inputs)[0], self.config.num_labels
        problem_type = classification_problem_type(self.config, integer)
        if problem_type == "single_label_classification":
            check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
            check_range(labels, num_labels, "labels", ignore_index=IGNORE_INDEX)
            return {"labels": to_index(labels)}
        if problem_type == "regression":
            shapes = [(batch_size,), (batch_size, 1)] if num_labels == 1 else [(batch_size, num_labels)]
            check_label_shapes(labels, shapes)
        else:
            check_label_shapes(labels, [(batch_size, num_labels)])
        if integer and isinstance(labels, np.ndarray):  # targets of a float loss: no int32 wrap-around
            labels = labels.astype(np.float32)
        return {"labels": jnp.asarray(labels)}


class FlaxXLMRobertaForMultipleChoice(FlaxXLMRobertaPreTrainedModel):
    """Scores `[batch, num_choices, sequence]` inputs; logits are `[batch, num_choices]`."""

    module_class = XLMRobertaForMultipleChoiceModule
    accepted_arguments = frozenset({"labels"})

    def _check_inputs(self, inputs: dict) -> dict:
        given = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"]
        if (inputs["input_ids"] is None) == (inputs["inputs_embeds"] is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        name, layout = (
            ("input_ids", "[batch, num_choices, sequence]")
            if inputs["input_ids"] is not None
            else ("inputs_embeds", "[batch, num_choices, sequence, hidden]")
        )
        if given.ndim != layout.count(",") + 1:
            raise ValueError(f"{name} must be {layout}; got shape {tuple(given.shape)}")
        batch_size, num_choices, seq_length = given.shape[:3]
        flat = dict(inputs)
        for key in ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds"):
            if inputs[key] is not None:
                if key != "inputs_embeds":
                    check_shape(inputs[key], (batch_size, num_choices, seq_length), key)
                # explicit rows: -1 cannot be inferred when a choice has no tokens
                flat[key] = inputs[key].reshape(batch_size * num_choices, *inputs[key].shape[2:])
        super()._check_inputs(flat)  # the checks of one encoder pass over all choices
        inputs["head_mask"] = self._check_head_mask(inputs["head_mask"])
        return inputs

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labels is None:
            return {}
        labels = as_integers(labels, "labels")
        given = inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"]
        check_label_shapes(labels, [given.shape[:1]])
        check_range(labels, given.shape[1], "labels", ignore_index=IGNORE_INDEX)
        return {"labels": to_index(labels)}


class FlaxXLMRobertaForTokenClassification(FlaxXLMRobertaPreTrainedModel):
    """One label per token (e.g. NER); label -100 marks tokens the loss skips."""

    module_class = XLMRobertaForTokenClassificationModule
    accepted_arguments = frozenset({"labels"})

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if labels is None:
            return {}
        labels = as_integers(labels, "labels")
        check_label_shapes(labels, [self._token_shape(inputs)])
        check_range(labels, self.config.num_labels, "labels", ignore_index=IGNORE_INDEX)
        return {"labels": to_index(labels)}


class FlaxXLMRobertaForQuestionAnswering(FlaxXLMRobertaPreTrainedModel):
    """Extractive QA: start and end logits per token.

    Positions outside the sequence are clamped to `sequence_length` and ignored by the loss,
    which is the mean of the start and end cross-entropies.
    """

    module_class = XLMRobertaForQuestionAnsweringModule
    accepted_arguments = frozenset({"start_positions", "end_positions"})

    def _head_arguments(self, inputs, labels, start_positions, end_positions, labelled_only, max_predictions):
        if self.config.num_labels != 2:
            raise ValueError(
                f"question answering needs num_labels=2 (start, end); config has {self.config.num_labels}"
            )
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        if start_positions is None:
            return {}
        batch_size, seq_length = self._token_shape(inputs)
        out = {}
        for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
            positions = as_integers(positions, name)
            check_label_shapes(positions, [(batch_size,), (batch_size, 1)], name)
            out[name] = clamp_to_index(positions, seq_length)  # the loss clamps them the same way
        return out
