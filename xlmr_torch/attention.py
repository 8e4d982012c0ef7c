"""Multi-head attention: self-attention (padded or packed rows), cross-attention, and its output."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import relative_position_index

from .attention_kernels import chunked_attention, chunks_queries, relative_scores
from .packing import Packing


class AttentionInputs(NamedTuple):
    """What every layer of one call attends with: built once by the backbone, handed down the stack.

    Mirrored in each wing's `attention.py`; what varies per layer (its cache entry, its head
    mask) is passed beside it.
    """

    attention_bias: torch.Tensor | None = None  # self-attention, padded layout
    encoder_hidden_states: torch.Tensor | None = None  # cross-attention runs when given
    encoder_attention_bias: torch.Tensor | None = None
    output_attentions: bool = False
    packing: Packing | None = None  # set: the hidden states are packed rows (unpadded=True)


class XLMRobertaSelfAttention(nn.Module):
    """Multi-head attention over the layer's own tokens, or over encoder states (cross)."""

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        # Packed rows carry no mask: a decoder's packed attention applies causality itself.
        self.causal = config.is_decoder
        self.position_embedding_type = position_embedding_type
        if position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.head_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, length, _ = x.shape
        return x.view(batch_size, length, self.num_heads, self.head_dim).transpose(1, 2)

    def relative_position_bias(self, query, key) -> torch.Tensor:
        """Relative-position scores `[batch, heads, q, k]`, already divided by sqrt(head_dim).

        Handing these to SDPA as an additive bias keeps the fused kernel for relative kinds.
        The index is built by torch ops from the (possibly symbolic) lengths, so an exported
        program serves every length instead of holding the example's table as a constant.
        """
        arange = functools.partial(torch.arange, device=query.device)
        index = relative_position_index(query.shape[2], key.shape[2], self.max_position_embeddings, arange)
        embedded = self.distance_embedding(index).to(query.dtype)
        scores = torch.einsum("bhqd,qkd->bhqk", query, embedded)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + torch.einsum("bhkd,qkd->bhqk", key, embedded)
        return scores / math.sqrt(self.head_dim)

    def chunk_relative_bias(self, query, key, query_position: int) -> torch.Tensor:
        """`relative_position_bias` of a chunk of queries at `query_position ..`, from a distance window."""
        scores = relative_scores(
            query,
            key,
            query_position,
            self.distance_embedding.weight,
            self.max_position_embeddings,
            self.position_embedding_type == "relative_key_query",
            block=query.shape[2],
        )
        return scores / math.sqrt(self.head_dim)

    def forward(self, hidden_states, inputs, head_mask=None, past_key_value=None, cross=False):
        """`(context, probs, (key, value))`: self-attention, or with `cross` over the encoder states.

        `inputs` is the call's `AttentionInputs` (masks, encoder states, packing).
        """
        if inputs.packing is not None:  # (cross-attention never runs unpadded)
            return self.packed_attention(hidden_states, inputs.packing), None, None
        encoder_hidden_states = inputs.encoder_hidden_states if cross else None
        bias = inputs.encoder_attention_bias if cross else inputs.attention_bias
        batch_size, length, _ = hidden_states.shape
        query = self.split_heads(self.query(hidden_states))
        if encoder_hidden_states is not None and past_key_value is not None:
            key, value = past_key_value  # the encoder side does not change between decoding steps
        else:
            source = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            key = self.split_heads(self.key(source))
            value = self.split_heads(self.value(source))
            if past_key_value is not None:
                key = torch.cat([past_key_value[0], key], dim=2)
                value = torch.cat([past_key_value[1], value], dim=2)

        is_relative = self.position_embedding_type != "absolute"
        # SDPA's CPU flash kernel keeps absolute attention O(L); the other paths materialise L².
        if (is_relative or inputs.output_attentions or head_mask is not None) and chunks_queries(length):
            context, probs = chunked_attention(
                query,
                key,
                value,
                bias,
                relative=self.chunk_relative_bias if is_relative else None,
                dropout_p=self.dropout.p if self.training else 0.0,
                head_mask=head_mask,
                output_attentions=inputs.output_attentions,
            )
            context = context.transpose(1, 2).reshape(batch_size, length, self.num_heads * self.head_dim)
            return context, probs, (key, value)

        if is_relative:
            relative = self.relative_position_bias(query, key)
            if bias is None:
                bias = relative
            else:
                # min + a negative score would overflow to -inf in half precision
                bias = (relative + bias).clamp(min=torch.finfo(relative.dtype).min)

        if inputs.output_attentions or head_mask is not None:
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if bias is not None:
                scores = scores + bias
            probs = self.dropout(scores.softmax(dim=-1))
            if head_mask is not None:
                probs = probs * head_mask
            context = torch.matmul(probs, value)
        else:
            probs = None
            dropout_p = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p)
        context = context.transpose(1, 2).reshape(batch_size, length, self.num_heads * self.head_dim)
        return context, probs, (key, value)

    def packed_attention(self, hidden_states: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Self-attention over packed `[budget, hidden]` rows, each sequence attending to itself only.

        One fused SDPA call per sequence on its `[1, heads, L_i, head_dim]` slice: the cost is
        sum(L_i^2), and on CPU this loop measured faster than re-padding q/k/v to the batch's
        longest row for one SDPA call, and far faster than jagged nested tensors (math fallback).
        """
        tokens = hidden_states.shape[0]
        query, key, value = (
            projection(hidden_states).view(tokens, self.num_heads, self.head_dim)
            for projection in (self.query, self.key, self.value)
        )
        dropout_p = self.dropout.p if self.training else 0.0
        contexts = []
        for start, length in packing.segments():
            # [L, heads, head_dim] -> [1, heads, L, head_dim]: the padded path's strides.
            q, k, v = (x[start : start + length].transpose(0, 1)[None] for x in (query, key, value))
            bias = None
            if self.position_embedding_type != "absolute" and chunks_queries(length):
                context, _ = chunked_attention(
                    q, k, v, causal=self.causal, relative=self.chunk_relative_bias, dropout_p=dropout_p
                )
                contexts.append(context[0].transpose(0, 1).reshape(length, -1))
                continue
            if self.position_embedding_type != "absolute":
                bias = self.relative_position_bias(q, k)
                if self.causal:
                    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
                    bias = bias.masked_fill(future, torch.finfo(bias.dtype).min)
            causal = self.causal and bias is None and length > 1
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=dropout_p, is_causal=causal
            )
            contexts.append(context[0].transpose(0, 1).reshape(length, -1))
        filler = tokens - packing.real_tokens
        if filler:  # filler rows attend to nothing: zero context
            contexts.append(hidden_states.new_zeros(filler, hidden_states.shape[1]))
        return torch.cat(contexts)


class XLMRobertaSelfOutput(nn.Module):
    """dense -> dropout -> add the residual -> LayerNorm (`in_features`: the dense layer's input width)."""

    def __init__(self, config: XLMRobertaConfig, in_features: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class XLMRobertaAttention(nn.Module):
    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str):
        super().__init__()
        self.self = XLMRobertaSelfAttention(config, position_embedding_type)
        self.output = XLMRobertaSelfOutput(config)

    def forward(self, hidden_states, inputs, head_mask=None, past_key_value=None, cross=False):
        context, probs, key_value = self.self(hidden_states, inputs, head_mask, past_key_value, cross)
        return self.output(context, hidden_states), probs, key_value
