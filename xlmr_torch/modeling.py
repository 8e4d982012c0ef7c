"""XLM-RoBERTa in PyTorch.

Read top to bottom: embeddings, attention, layer, encoder, pooler, heads, the shared
base class, then the seven public models; input checks are in `inputs.py`, loading and
saving in `checkpoint_io.py`. Module attribute names reproduce the reference state-dict
names exactly, so published checkpoints load without renaming.

Key/value cache (decoders only): `past_key_values` is a tuple with one entry per layer.
Each entry is `(self_key, self_value)`, or `(self_key, self_value, cross_key, cross_value)`
when cross-attention ran; every tensor is `[batch, heads, length, head_dim]`. Pass back
what the previous call returned, together with an `attention_mask` that covers the
past and the new tokens when there is padding. The encoder side is computed once and
reused; `encoder_hidden_states` must still be passed for cross-attention to run.

Unpadded execution (`unpadded=True` on every model, the contract of `xlmr_core.unpadding`):
with padding in `attention_mask`, the embeddings, every dense layer, LayerNorm, the
feed-forward and the token-level heads run on the real tokens packed as `[tokens, hidden]`,
and attention runs per sequence (one fused SDPA call each). Outputs come back in the padded
layout with zeros at padded positions; token-level losses leave padded positions out (the
causal LM also leaves out the prediction made from a padded position; question answering
keeps padded positions out of the softmax and treats an answer there as ignored); the
pooler and sentence-level heads read position 0 as before (zeros for a left-padded row).
Tracers see the padded path. Mask rows must be one run of 1s (right or left padding).

Where we deliberately differ from the reference:
- relative position kinds place the new queries after the cached ones, so a cached call
  with several new tokens (or a first call that merely creates a cache) gives the same
  result as a full recompute; the reference puts every query at the last position;
- positions derived from `inputs_embeds` continue after the cached length;
- `encoder_hidden_states` given to a model without cross-attention, out-of-range ids and
  over-long inputs raise `ValueError` instead of being ignored or failing in an index op;
- sequence classification decides its `problem_type` per call and leaves the config alone;
- losses are computed in float32 even for float16 / bfloat16 models.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import numbers

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

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
from xlmr_core.call_limits import check_activation_size
from xlmr_core.modeling_utils import (
    IGNORE_INDEX,
    check_first_token,
    check_integer_dtype,
    classification_problem_type,
)
from xlmr_core.unpadding import check_contiguous_rows, check_unpadded_options

from . import outputs as _outputs  # noqa: F401 - registers the output classes as torch pytrees
from .checkpoint_io import CheckpointIO
from .encoding import EncodingMixin
from .inputs import (
    as_index,
    as_labels,
    as_positions,
    check_label_shapes,
    check_length,
    check_shape,
    dtype_name,
    normalise_call,
    tracing,
)

logger = logging.getLogger(__name__)

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


# ----------------------------------------------------------------------------- embeddings


def position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int | None, past_length: int = 0):
    """Fairseq positions: real tokens count up from `padding_idx + 1`, pads stay at `padding_idx`."""
    if padding_idx is None:
        positions = torch.arange(past_length, past_length + input_ids.shape[1], device=input_ids.device)
        return positions.expand_as(input_ids)
    not_pad = input_ids.ne(padding_idx).long()
    return (torch.cumsum(not_pad, dim=1) + past_length) * not_pad + padding_idx


def position_ids_from_inputs_embeds(
    inputs_embeds: torch.Tensor, padding_idx: int | None, past_length: int = 0
):
    """Without token ids padding cannot be seen, so every position counts as a real token."""
    batch_size, seq_length = inputs_embeds.shape[:2]
    start = past_length + (0 if padding_idx is None else padding_idx + 1)
    positions = torch.arange(start, start + seq_length, device=inputs_embeds.device)
    return positions.expand(batch_size, seq_length)


class XLMRobertaEmbeddings(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        pad = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        # The relative kinds never read this table, but checkpoints carry it, so it exists.
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=pad
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.absolute_positions = config.position_embedding_type == "absolute"

    def forward(self, input_ids, token_type_ids, position_ids, inputs_embeds):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.absolute_positions:
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


# ----------------------------------------------------------------------------- unpadded execution


def unpads(unpadded: bool, attention_mask) -> bool:
    """Whether a call with `unpadded=True` really packs: eager, with a mask that hides something.

    A tracer (`torch.export`, `torch.compile`, ONNX, `jit.trace`) sees no mask values, so it
    runs the padded path: correct for every mask, only without the saving.
    """
    return bool(unpadded) and attention_mask is not None and not tracing() and not bool(attention_mask.all())


class PackedBatch:
    """The real tokens of a padded `[batch, seq]` batch, packed row-major (`xlmr_core.unpadding`).

    Row `i` of the batch is rows `starts[i] : starts[i] + lengths[i]` of a packed tensor; rows
    from `real_tokens` up to `length` are filler (zeros in, dropped out) that no real token
    attends to, there only when a `token_budget` asks for a fixed packed length.
    """

    def __init__(self, attention_mask: torch.Tensor, length: int | None = None, causal: bool = False):
        self.batch_size, self.seq_length = attention_mask.shape
        keep = attention_mask != 0
        self.keep = keep.reshape(-1)
        self.indices = self.keep.nonzero().squeeze(-1)
        # Python ints: the per-sequence attention loop slices with them (one host sync per call).
        self.lengths = keep.sum(dim=1).tolist()
        self.starts = [0]
        for n in self.lengths[:-1]:
            self.starts.append(self.starts[-1] + n)
        self.real_tokens = sum(self.lengths)
        self.length = self.real_tokens if length is None else length
        self.causal = causal

    def pack(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """`[batch, seq, ...]` -> `[length, ...]`: the real positions, then zero filler."""
        if x is None:
            return None
        if x.shape[0] != self.batch_size:  # position ids given as [1, seq]
            x = x.expand(self.batch_size, *x.shape[1:])
        packed = x.reshape(self.batch_size * self.seq_length, *x.shape[2:]).index_select(0, self.indices)
        filler = self.length - self.real_tokens
        if filler:
            packed = torch.cat([packed, packed.new_zeros(filler, *packed.shape[1:])])
        return packed

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """`[length, ...]` -> `[batch, seq, ...]` with zeros at padded positions (filler dropped)."""
        real = x[: self.real_tokens]
        flat = real.new_zeros(self.batch_size * self.seq_length, *x.shape[1:])
        return flat.index_copy(0, self.indices, real).view(self.batch_size, self.seq_length, *x.shape[1:])

    def segments(self):
        """`(start, length)` of every non-empty sequence in the packed rows."""
        return [(start, n) for start, n in zip(self.starts, self.lengths) if n]

    def padding_to_ignore(self, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        """`labels` (`[batch, seq]` or flat) with `ignore_index` at padded positions."""
        return labels.masked_fill(~self.keep.to(labels.device).view(labels.shape), ignore_index)


def head_packing(unpadded: bool, attention_mask, device) -> PackedBatch | None:
    """The packing a head's `unpadded=True` call ran with (None: the padded path ran)."""
    return PackedBatch(attention_mask.to(device)) if unpads(unpadded, attention_mask) else None


def token_head(head: nn.Module, sequence_output: torch.Tensor, packing: PackedBatch | None):
    """A token-level head on every position or, unpadded, on the real tokens only (zeros elsewhere)."""
    if packing is None:
        return head(sequence_output)
    return packing.unpack(head(packing.pack(sequence_output)))


def plan_unpadded(
    config: XLMRobertaConfig, attention_mask, batch_size: int, seq_length: int, token_budget
) -> PackedBatch:
    """The packing of a call that `unpads`: checks the mask's layout and the budget."""
    check_shape(attention_mask, (batch_size, seq_length), "attention_mask")
    check_contiguous_rows(attention_mask.detach().cpu().numpy())
    packing = PackedBatch(attention_mask, causal=config.is_decoder)
    if token_budget is not None:
        token_budget = int(token_budget)
        if token_budget < packing.real_tokens:
            raise ValueError(
                f"token_budget={token_budget} is smaller than the batch's {packing.real_tokens} real tokens"
            )
        # More than the padded batch holds saves nothing: capped, as `xlmr_core.unpadding.token_budget` does.
        packing.length = min(token_budget, batch_size * seq_length)
    return packing


def check_unpadded_arguments(unpadded, token_budget) -> None:
    """`unpadded` is a bool; `token_budget` is None or a positive int, and needs `unpadded=True`."""
    if not isinstance(unpadded, bool):
        raise TypeError(f"unpadded must be True or False, got {type(unpadded).__name__}")
    if token_budget is None:
        return
    if isinstance(token_budget, bool) or not isinstance(token_budget, numbers.Integral) or token_budget < 1:
        raise ValueError(f"token_budget must be a positive integer or None, got {token_budget!r}"[:300])
    if not unpadded:
        raise ValueError("token_budget is the packed length of unpadded=True; pass unpadded=True with it")


# ----------------------------------------------------------------------------- attention


def relative_position_index(query_length, key_length, max_position_embeddings: int, device=None):
    """`xlmr_core.modeling_utils.relative_position_index` computed by torch ops.

    Built from the (possibly symbolic) lengths inside the graph, so an exported program
    serves every length instead of holding the example's table as a constant.
    """
    query_positions = torch.arange(key_length - query_length, key_length, device=device)[:, None]
    key_positions = torch.arange(key_length, device=device)[None, :]
    return query_positions - key_positions + (max_position_embeddings - 1)


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
        """
        # Queries are the last positions of the keys: a cached step sees a full recompute's distances.
        index = relative_position_index(
            query.shape[2], key.shape[2], self.max_position_embeddings, device=query.device
        )
        embedded = self.distance_embedding(index).to(query.dtype)
        scores = torch.einsum("bhqd,qkd->bhqk", query, embedded)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + torch.einsum("bhkd,qkd->bhqk", key, embedded)
        return scores / math.sqrt(self.head_dim)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions=False,
        packing=None,
    ):
        if packing is not None:
            return self.packed_attention(hidden_states, packing), None, None
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

        bias = attention_bias
        if self.position_embedding_type != "absolute":
            relative = self.relative_position_bias(query, key)
            if bias is None:
                bias = relative
            else:
                # min + a negative score would overflow to -inf in half precision
                bias = (relative + bias).clamp(min=torch.finfo(relative.dtype).min)

        if output_attentions or head_mask is not None:
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

    def packed_attention(self, hidden_states: torch.Tensor, packing: PackedBatch) -> torch.Tensor:
        """Self-attention over packed `[tokens, hidden]` rows, each sequence attending to itself only.

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
            if self.position_embedding_type != "absolute":
                bias = self.relative_position_bias(q, k)
                if packing.causal:
                    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
                    bias = bias.masked_fill(future, torch.finfo(bias.dtype).min)
            causal = packing.causal and bias is None and length > 1
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=dropout_p, is_causal=causal
            )
            contexts.append(context[0].transpose(0, 1).reshape(length, -1))
        filler = tokens - packing.real_tokens
        if filler:  # filler rows attend to nothing: zero context
            contexts.append(hidden_states.new_zeros(filler, hidden_states.shape[1]))
        return torch.cat(contexts)


class XLMRobertaSelfOutput(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class XLMRobertaAttention(nn.Module):
    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str):
        super().__init__()
        self.self = XLMRobertaSelfAttention(config, position_embedding_type)
        self.output = XLMRobertaSelfOutput(config)

    def forward(
        self,
        hidden_states,
        attention_bias,
        head_mask,
        encoder_hidden_states,
        past_key_value,
        output_attentions,
        packing=None,
    ):
        context, probs, key_value = self.self(
            hidden_states,
            attention_bias,
            head_mask,
            encoder_hidden_states,
            past_key_value,
            output_attentions,
            packing,
        )
        return self.output(context, hidden_states), probs, key_value


# ----------------------------------------------------------------------------- layer


class XLMRobertaIntermediate(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class XLMRobertaOutput(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class XLMRobertaLayer(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.attention = XLMRobertaAttention(config, config.position_embedding_type)
        if config.add_cross_attention:
            # Encoder positions are unrelated to decoder positions: cross-attention has no relative term.
            self.crossattention = XLMRobertaAttention(config, "absolute")
        self.intermediate = XLMRobertaIntermediate(config)
        self.output = XLMRobertaOutput(config)

    def forward(
        self,
        hidden_states,
        attention_bias,
        head_mask,
        encoder_hidden_states,
        encoder_attention_bias,
        past_key_value,
        output_attentions,
        packing=None,
    ):
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
        hidden_states, self_probs, present = self.attention(
            hidden_states, attention_bias, head_mask, None, self_past, output_attentions, packing
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            hidden_states, cross_probs, cross_present = self.crossattention(
                hidden_states,
                encoder_attention_bias,
                head_mask,
                encoder_hidden_states,
                cross_past,
                output_attentions,
            )
            present = present + cross_present
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states)
        return hidden_states, self_probs, cross_probs, present


# ----------------------------------------------------------------------------- encoder


class XLMRobertaEncoder(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.layer = nn.ModuleList([XLMRobertaLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(
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
        packing=None,
    ):
        """`packing` given: `hidden_states` are the packed `[tokens, hidden]` rows (unpadded=True)."""
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer):
            args = (
                hidden_states,
                attention_bias,
                None if head_mask is None else head_mask[i],
                encoder_hidden_states,
                encoder_attention_bias,
                None if past_key_values is None else past_key_values[i],
                output_attentions,
                packing,
            )
            if self.gradient_checkpointing and self.training:
                hidden_states, probs, cross_probs, present = torch.utils.checkpoint.checkpoint(
                    layer, *args, use_reentrant=False
                )
            else:
                hidden_states, probs, cross_probs, present = layer(*args)
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
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        check_first_token(hidden_states.shape[1])
        return torch.tanh(self.dense(hidden_states[:, 0]))


# ----------------------------------------------------------------------------- heads


class XLMRobertaLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> vocabulary projection (weight usually tied to the embeddings)."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        # One tensor under two names (`lm_head.bias`, `lm_head.decoder.bias`), as in the reference.
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, features):
        return self.decoder(self.layer_norm(F.gelu(self.dense(features))))

    @contextlib.contextmanager
    def sparse_tied_lookup(self, embedding: nn.Embedding):
        """Inside it, a lookup in `embedding` gives its gradient as sparse rows when `decoder`
        shares that matrix (eager, gradients on).

        The head's own gradient of the shared matrix is dense, and autograd sums the two into
        one dense `.grad` (the same values to float32 rounding), so the lookup's dense
        `[vocab, hidden]` zeros and one full-size add are not materialised: at
        xlm-roberta-base size, 192M elements written twice less per step. Only a loss that
        never reaches this head's output would leave the matrix with a sparse gradient.
        """
        weight = embedding.weight
        use = (
            self.decoder.weight is weight
            and not embedding.sparse
            and weight.requires_grad
            and torch.is_grad_enabled()
            and not tracing()
            and type(weight.data) is torch.Tensor  # not a DTensor (FSDP2 shards)
        )
        if not use:
            yield
            return
        embedding.sparse = True
        try:
            yield
        finally:
            embedding.sparse = False


class XLMRobertaClassificationHead(nn.Module):
    """Sentence-level head on the first (`<s>`) token."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features):
        check_first_token(features.shape[1])
        x = self.dropout(features[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


def _classifier_dropout(config: XLMRobertaConfig) -> float:
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


# ----------------------------------------------------------------------------- base class


class XLMRobertaPreTrainedModel(CheckpointIO, nn.Module):
    """Weight init, weight tying and gradient checkpointing for every model (files: `CheckpointIO`)."""

    base_model_prefix = "roberta"

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        config.validate()
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True: cross-attention is a decoder part"
            )
        self.config = config
        # numpy / list inputs and the legacy tracer's tensor flags, fixed before `forward` runs.
        self.forward_argument_names = tuple(inspect.signature(type(self).forward).parameters)[1:]
        self.register_forward_pre_hook(normalise_call, with_kwargs=True)

    # -- weights
    def post_init(self) -> None:
        """Initialise every weight like the reference, then tie the LM head to the embeddings."""
        self.apply(self._init_weights)
        self.tie_weights()
        # A tied decoder is initialised as a Linear after the embedding: restore the zero pad rows.
        for module in self.modules():
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, std)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, XLMRobertaLMHead):
                module.bias.zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def get_output_embeddings(self) -> nn.Linear | None:
        lm_head = getattr(self, "lm_head", None)
        return None if lm_head is None else lm_head.decoder

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    def tie_weights(self) -> None:
        """Share the word-embedding matrix with the LM head's projection (`config.tie_word_embeddings`)."""
        output_embeddings = self.get_output_embeddings()
        if output_embeddings is not None and self.config.tie_word_embeddings:
            output_embeddings.weight = self.get_input_embeddings().weight
        lm_head = getattr(self, "lm_head", None)
        if lm_head is not None:
            lm_head.decoder.bias = lm_head.bias

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of distinct parameters (a tied matrix counts once)."""
        skip = set()
        if exclude_embeddings:
            skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(
            p.numel()
            for p in self.parameters()
            if id(p) not in skip and (p.requires_grad or not only_trainable)
        )

    # -- gradient checkpointing
    def gradient_checkpointing_enable(self) -> None:
        """Recompute each layer's activations in the backward pass (training only) to save memory."""
        for module in self.modules():
            if isinstance(module, XLMRobertaEncoder):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, XLMRobertaEncoder):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(m.gradient_checkpointing for m in self.modules() if isinstance(m, XLMRobertaEncoder))

    def _format_output(self, output, return_dict):
        use_dict = self.config.return_dict if return_dict is None else return_dict
        # torch.jit.trace takes tensors and tuples only: a traced model returns the tuple form.
        if return_dict is None and torch.jit.is_tracing():
            use_dict = False
        return output if use_dict else output.to_tuple()


# ----------------------------------------------------------------------------- the models


class XLMRobertaModel(EncodingMixin, XLMRobertaPreTrainedModel):
    """The bare encoder (or decoder, with `config.is_decoder`), with an optional pooler."""

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = XLMRobertaEmbeddings(config)
        self.encoder = XLMRobertaEncoder(config)
        self.pooler = XLMRobertaPooler(config) if add_pooling_layer else None
        self.post_init()

    def forward(
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
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        """`unpadded=True`: run on the real tokens only (`xlmr_core.unpadding`; see `PackedBatch`).

        Padded positions of `last_hidden_state` / `hidden_states` come back as zeros; the pooler
        reads position 0 as before. `token_budget` (optional) fixes the packed length; without it
        the packed length is the exact real-token count, since eager torch has no compiled program
        to reuse. Under a tracer, or without padding in the mask, this is the padded path.
        """
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        check_unpadded_arguments(unpadded, token_budget)
        if unpadded:
            # `use_cache` as the caller set it: a decoder config's default use_cache=True is not a request.
            check_unpadded_options(
                past_key_values=past_key_values,
                use_cache=use_cache,
                encoder_hidden_states=encoder_hidden_states,
                output_attentions=output_attentions,
                head_mask=head_mask,
            )

        input_ids, (batch_size, seq_length) = self._check_token_inputs(input_ids, inputs_embeds)
        device = (input_ids if input_ids is not None else inputs_embeds).device
        past_length = self._check_past(past_key_values, batch_size)
        check_length(config, past_length, seq_length)
        check_activation_size(config, batch_size, seq_length, past_length)
        packing = None
        if unpads(unpadded, attention_mask):
            packing = plan_unpadded(config, attention_mask.to(device), batch_size, seq_length, token_budget)
        use_cache = config.is_decoder and (config.use_cache if use_cache is None else use_cache)
        use_cache = use_cache and packing is None
        if use_cache and self.encoder.gradient_checkpointing and self.training:
            logger.warning("use_cache=True does not combine with gradient checkpointing; not caching")
            use_cache = False

        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=device)
        else:
            check_shape(token_type_ids, (batch_size, seq_length), "token_type_ids")
            token_type_ids = as_index(token_type_ids, config.type_vocab_size, "token_type_ids")
        if position_ids is None:
            if input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, config.pad_token_id, past_length)
            else:
                position_ids = position_ids_from_inputs_embeds(
                    inputs_embeds, config.pad_token_id, past_length
                )
        else:
            if tuple(position_ids.shape) not in ((batch_size, seq_length), (1, seq_length)):
                raise ValueError(
                    f"position_ids has shape {tuple(position_ids.shape)}; "
                    f"expected {(batch_size, seq_length)} or {(1, seq_length)}"
                )
            if config.position_embedding_type == "absolute":
                position_ids = as_index(position_ids, config.max_position_embeddings, "position_ids")
            else:  # unused by the relative kinds, but float ids are still the wrong input
                check_integer_dtype("position_ids", dtype_name(position_ids.dtype))

        if packing is None:
            embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
            dtype = embedding_output.dtype
            attention_bias = self._self_attention_bias(
                attention_mask, batch_size, seq_length, past_length, dtype
            )
        else:  # ids and positions gathered from the padded layout: the padded path's numbers
            embedding_output = self.embeddings(
                *(packing.pack(x) for x in (input_ids, token_type_ids, position_ids, inputs_embeds))
            )
            dtype = embedding_output.dtype
            attention_bias = None  # each sequence attends to itself only: no mask to build
        encoder_attention_bias = self._cross_attention_bias(
            encoder_hidden_states, encoder_attention_mask, batch_size, dtype
        )
        hidden_states, presents, all_hidden_states, attentions, cross_attentions = self.encoder(
            embedding_output,
            attention_bias,
            self._per_layer_head_mask(head_mask, dtype),
            encoder_hidden_states,
            encoder_attention_bias,
            past_key_values,
            use_cache,
            output_attentions,
            output_hidden_states,
            packing,
        )
        if packing is not None:
            hidden_states = packing.unpack(hidden_states)
            if all_hidden_states is not None:
                all_hidden_states = tuple(packing.unpack(h) for h in all_hidden_states)
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=attentions,
            cross_attentions=cross_attentions,
        )
        return self._format_output(output, return_dict)

    def _check_token_inputs(self, input_ids, inputs_embeds):
        """Check the token inputs; return `input_ids` in an index dtype and `(batch, sequence)`."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be [batch, sequence]; got shape {tuple(input_ids.shape)}")
            input_ids = as_index(input_ids, self.config.vocab_size, "input_ids")
            return input_ids, tuple(input_ids.shape)
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be [batch, sequence, {self.config.hidden_size}]; "
                f"got shape {tuple(inputs_embeds.shape)}"
            )
        return None, tuple(inputs_embeds.shape[:2])

    def _check_past(self, past_key_values, batch_size: int) -> int:
        """Validate the cache layout (see the module docstring) and return the cached length."""
        if past_key_values is None:
            return 0
        config = self.config
        if not config.is_decoder:
            raise ValueError("past_key_values needs a decoder (config.is_decoder=True)")
        if not isinstance(past_key_values, (tuple, list)) or len(past_key_values) != config.num_hidden_layers:
            raise ValueError(
                f"past_key_values must be a tuple with one entry per layer ({config.num_hidden_layers}), "
                "as returned by a previous call with use_cache=True"
            )
        length = None
        for i, entry in enumerate(past_key_values):
            if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 4):
                raise ValueError(
                    f"past_key_values[{i}] must be (key, value) or (key, value, cross_key, cross_value)"
                )
            key = entry[0]
            expected = (batch_size, config.num_attention_heads, key.shape[-2], config.head_dim)
            if key.dim() != 4 or tuple(key.shape) != expected:
                raise ValueError(
                    f"past_key_values[{i}] key has shape {tuple(key.shape)}; expected [batch, heads, length, "
                    f"head_dim] = {(batch_size, config.num_attention_heads, 'length', config.head_dim)}"
                )
            length = key.shape[-2] if length is None else length
            if key.shape[-2] != length:
                raise ValueError("past_key_values entries disagree on the cached length")
        return length

    def _self_attention_bias(self, attention_mask, batch_size, seq_length, past_length, dtype):
        """Additive bias `[batch or 1, 1, q, k]`: 0 where a query may look, the dtype's minimum elsewhere.

        None when nothing is hidden, which lets SDPA pick its fastest kernel.
        """
        device = self.embeddings.word_embeddings.weight.device
        total_length = past_length + seq_length
        keep = None
        if attention_mask is not None:
            check_shape(attention_mask, (batch_size, total_length), "attention_mask")
            # A traced graph must keep the mask: the example's mask is not every input's.
            if tracing() or not bool(attention_mask.all()):
                keep = attention_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
        # (For one new token the causal mask hides nothing; a tracer builds it for every length.)
        if self.config.is_decoder and (tracing() or seq_length > 1):
            causal = torch.ones(seq_length, total_length, dtype=torch.bool, device=device).tril(past_length)
            keep = causal[None, None] if keep is None else keep & causal
        if keep is None:
            return None
        return torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill(~keep, torch.finfo(dtype).min)

    def _cross_attention_bias(self, encoder_hidden_states, encoder_attention_mask, batch_size, dtype):
        if encoder_hidden_states is None:
            if encoder_attention_mask is not None:
                raise ValueError("encoder_attention_mask was given without encoder_hidden_states")
            return None
        if not self.config.add_cross_attention:
            raise ValueError(
                "encoder_hidden_states needs cross-attention layers: build the model with "
                "is_decoder=True and add_cross_attention=True"
            )
        if encoder_hidden_states.dim() != 3 or encoder_hidden_states.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"encoder_hidden_states must be [batch, encoder_sequence, {self.config.hidden_size}]; "
                f"got shape {tuple(encoder_hidden_states.shape)}"
            )
        if encoder_hidden_states.shape[0] != batch_size:
            raise ValueError(
                f"encoder_hidden_states has batch size {encoder_hidden_states.shape[0]}, not {batch_size}"
            )
        if encoder_attention_mask is None:
            return None
        check_shape(encoder_attention_mask, encoder_hidden_states.shape[:2], "encoder_attention_mask")
        if not tracing() and bool(encoder_attention_mask.all()):
            return None
        keep = encoder_attention_mask.to(torch.bool)[:, None, None, :]
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(
            ~keep, torch.finfo(dtype).min
        )

    def _per_layer_head_mask(self, head_mask, dtype):
        """`[heads]` (all layers) or `[layers, heads]` -> one `[1, heads, 1, 1]` multiplier per layer."""
        if head_mask is None:
            return None
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if tuple(head_mask.shape) == (heads,):
            head_mask = head_mask.expand(layers, heads)
        elif tuple(head_mask.shape) != (layers, heads):
            raise ValueError(
                f"head_mask has shape {tuple(head_mask.shape)}; expected ({heads},) or ({layers}, {heads})"
            )
        return [m.to(dtype).view(1, heads, 1, 1) for m in head_mask]


class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
    """Decoder with a language-model head; `labels` give the next-token loss (shifted inside)."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        if not config.is_decoder:
            logger.warning("XLMRobertaForCausalLM is meant to run with is_decoder=True")
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.lm_head = XLMRobertaLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        if labels is not None:
            use_cache = False
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            unpadded=unpadded,
            token_budget=token_budget,
        )
        sequence_output = outputs.last_hidden_state
        packing = head_packing(unpadded, attention_mask, sequence_output.device)
        logits = token_head(self.lm_head, sequence_output, packing)
        loss = None
        if labels is not None:
            check_label_shapes(labels, [logits.shape[:2]])
            labels = as_labels(labels, self.config.vocab_size, "labels", IGNORE_INDEX)
            # Position t predicts token t + 1.
            targets = labels[:, 1:].to(logits.device)
            if packing is not None:  # unpadded: no prediction from or of a padded position
                keep = packing.keep.view(logits.shape[:2])
                targets = targets.masked_fill(~(keep[:, :-1] & keep[:, 1:]), IGNORE_INDEX)
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        output = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return self._format_output(output, return_dict)


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
    """Encoder with a masked-language-model head.

    `labelled_positions_only=True` (needs `labels`) runs the LM head only where
    `labels != -100`: the loss is the same, `logits` is `[num_labelled, vocab]` and
    `masked_positions` holds those rows' flat indices into `[batch * sequence]`.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        if config.is_decoder:
            logger.warning("XLMRobertaForMaskedLM attends both ways; set is_decoder=False")
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.lm_head = XLMRobertaLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labelled_positions_only: bool = False,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        if labelled_positions_only and labels is None:
            raise ValueError("labelled_positions_only=True needs labels to know which positions are labelled")
        # The head's dense gradient of the tied matrix absorbs the lookup's rows (see there).
        with self.lm_head.sparse_tied_lookup(self.roberta.embeddings.word_embeddings):
            outputs = self.roberta(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                head_mask=head_mask,
                inputs_embeds=inputs_embeds,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                use_cache=False,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                unpadded=unpadded,
                token_budget=token_budget,
            )
        sequence_output = outputs.last_hidden_state
        packing = head_packing(unpadded, attention_mask, sequence_output.device)
        loss = masked_positions = None
        if labels is not None:
            check_label_shapes(labels, [sequence_output.shape[:2]])
            labels = as_labels(labels, self.config.vocab_size, "labels", IGNORE_INDEX)
            flat_labels = labels.reshape(-1).to(sequence_output.device)
            if packing is not None:  # unpadded: padded positions are not predicted
                flat_labels = packing.padding_to_ignore(flat_labels, IGNORE_INDEX)
        if labelled_positions_only:
            masked_positions = (flat_labels != IGNORE_INDEX).nonzero().squeeze(-1)
            features = sequence_output.reshape(-1, sequence_output.shape[-1]).index_select(
                0, masked_positions
            )
            logits = self.lm_head(features)
            loss = F.cross_entropy(logits.float(), flat_labels[masked_positions], ignore_index=IGNORE_INDEX)
        else:
            logits = token_head(self.lm_head, sequence_output, packing)
            if labels is not None:
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(), flat_labels, ignore_index=IGNORE_INDEX
                )
        output = MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            masked_positions=masked_positions,
        )
        return self._format_output(output, return_dict)


class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
    """Classification or regression from the `<s>` token.

    The loss follows `config.problem_type`; when unset it is regression for one label,
    single-label classification for integer labels and multi-label otherwise.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.classifier = XLMRobertaClassificationHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            unpadded=unpadded,
            token_budget=token_budget,
        )
        logits = self.classifier(outputs.last_hidden_state)
        loss = None if labels is None else self._loss(logits, labels.to(logits.device))
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._format_output(output, return_dict)

    def _loss(self, logits, labels):
        batch_size, num_labels = logits.shape
        # Decided per call, not written back into the config as the reference does.
        # int64 / int32 labels mean single-label classification, as in the reference; so do
        # labels of any other integer dtype with one label per row (a multi-hot uint8 or bool
        # tensor `[batch, num_labels]` stays multi-label).
        integer = labels.dtype in (torch.long, torch.int) or (
            labels.dim() == 1 and not labels.is_floating_point() and labels.dtype != torch.bool
        )
        problem_type = classification_problem_type(self.config, integer)
        if problem_type == "regression":
            if num_labels == 1:
                check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
                return F.mse_loss(logits.squeeze(-1).float(), labels.reshape(-1).float())
            check_label_shapes(labels, [(batch_size, num_labels)])
            return F.mse_loss(logits.float(), labels.float())
        if problem_type == "single_label_classification":
            check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
            labels = as_labels(labels, num_labels, "labels", IGNORE_INDEX)
            return F.cross_entropy(logits.float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        check_label_shapes(labels, [(batch_size, num_labels)])
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
    """Scores `[batch, num_choices, sequence]` inputs; logits are `[batch, num_choices]`."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.roberta = XLMRobertaModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        token_type_ids=None,
        attention_mask=None,
        labels=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            given, name, layout = input_ids, "input_ids", "[batch, num_choices, sequence]"
        else:
            given, name, layout = inputs_embeds, "inputs_embeds", "[batch, num_choices, sequence, hidden]"
        if given.dim() != layout.count(",") + 1:
            raise ValueError(f"{name} must be {layout}; got shape {tuple(given.shape)}")
        batch_size, num_choices, seq_length = given.shape[:3]

        def flatten(tensor, name):
            if tensor is None:
                return None
            check_shape(tensor, (batch_size, num_choices, seq_length), name)
            return tensor.reshape(batch_size * num_choices, seq_length)

        outputs = self.roberta(
            flatten(input_ids, "input_ids"),
            attention_mask=flatten(attention_mask, "attention_mask"),
            token_type_ids=flatten(token_type_ids, "token_type_ids"),
            position_ids=flatten(position_ids, "position_ids"),
            head_mask=head_mask,
            inputs_embeds=None
            if inputs_embeds is None
            else inputs_embeds.reshape(-1, *inputs_embeds.shape[2:]),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            unpadded=unpadded,
            token_budget=token_budget,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(batch_size, num_choices)
        loss = None
        if labels is not None:
            check_label_shapes(labels, [(batch_size,)])
            labels = as_labels(labels, num_choices, "labels", IGNORE_INDEX)
            loss = F.cross_entropy(logits.float(), labels.to(logits.device), ignore_index=IGNORE_INDEX)
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._format_output(output, return_dict)


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
    """One label per token (e.g. NER); label -100 marks tokens the loss skips."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            unpadded=unpadded,
            token_budget=token_budget,
        )
        packing = head_packing(unpadded, attention_mask, outputs.last_hidden_state.device)
        logits = token_head(
            lambda features: self.classifier(self.dropout(features)), outputs.last_hidden_state, packing
        )
        loss = None
        if labels is not None:
            check_label_shapes(labels, [logits.shape[:2]])
            labels = as_labels(labels, self.num_labels, "labels", IGNORE_INDEX)
            if packing is not None:  # unpadded: padded positions are not labelled
                labels = packing.padding_to_ignore(labels, IGNORE_INDEX)
            loss = F.cross_entropy(
                logits.reshape(-1, self.num_labels).float(),
                labels.reshape(-1).to(logits.device),
                ignore_index=IGNORE_INDEX,
            )
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._format_output(output, return_dict)


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
    """Extractive QA: start and end logits per token.

    Positions outside the sequence are clamped to `sequence_length` and ignored by the loss,
    which is the mean of the start and end cross-entropies.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded: bool = False,
        token_budget: int | None = None,
    ):
        if self.num_labels != 2:
            raise ValueError(
                f"question answering needs num_labels=2 (start, end); config has {self.num_labels}"
            )
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            unpadded=unpadded,
            token_budget=token_budget,
        )
        packing = head_packing(unpadded, attention_mask, outputs.last_hidden_state.device)
        start_end = token_head(self.qa_outputs, outputs.last_hidden_state, packing)
        start_logits, end_logits = start_end.unbind(dim=-1)
        start_logits, end_logits = start_logits.contiguous(), end_logits.contiguous()
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        if start_positions is not None:
            batch_size, seq_length = start_logits.shape
            losses = []
            for positions, logits, name in (
                (start_positions, start_logits, "start_positions"),
                (end_positions, end_logits, "end_positions"),
            ):
                check_label_shapes(positions, [(batch_size,), (batch_size, 1)], name)
                positions = as_positions(positions.reshape(-1), seq_length, name).to(logits.device)
                logits = logits.float()
                if packing is not None:
                    # unpadded: padded positions are no answer (out of the softmax) and no label
                    keep = packing.keep.view(batch_size, seq_length)
                    logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
                    at_padding = ~keep.gather(1, positions.clamp(max=seq_length - 1)[:, None])[:, 0]
                    positions = positions.masked_fill(at_padding, seq_length)
                losses.append(F.cross_entropy(logits, positions, ignore_index=seq_length))
            loss = (losses[0] + losses[1]) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return self._format_output(output, return_dict)
