"""The assembled encoder, `XLMRobertaModel`: embeddings -> layers -> pooler, with its input
checks, attention masks, key/value cache and packing.

Key/value cache (decoders only): `past_key_values` is a tuple with one entry per layer.
Each entry is `(self_key, self_value)`, or `(self_key, self_value, cross_key, cross_value)`
when cross-attention ran; every tensor is `[batch, heads, length, head_dim]`
(`xlmr_core.caching`). Pass back what the previous call returned, together with an
`attention_mask` that covers the past and the new tokens when there is padding. The encoder
side is computed once and reused; `encoder_hidden_states` must still be passed for
cross-attention to run.

Unpadded execution (`unpadded=True`): the batch is packed once from the mask (`Packing`);
the embeddings and every layer run on the packed rows and attention runs per sequence. The
public `forward` unpacks once; the task heads take the packed rows from `forward_rows`, run
on them and unpack their own outputs once.
"""

from __future__ import annotations

import inspect
import logging
from typing import NamedTuple

import torch

from xlmr_core import BaseModelOutputWithPoolingAndCrossAttentions, XLMRobertaConfig
from xlmr_core.caching import check_past_key_values
from xlmr_core.call_limits import check_activation_size
from xlmr_core.modeling_utils import check_integer_dtype
from xlmr_core.unpadding import check_mask_fits, check_unpadded_arguments, check_unpadded_options

from . import outputs as _outputs  # noqa: F401 - registers the output classes as torch pytrees
from .attention import AttentionInputs
from .embeddings import XLMRobertaEmbeddings, position_ids_from_input_ids, position_ids_from_inputs_embeds
from .encoder import XLMRobertaEncoder
from .encoding import EncodingMixin
from .inputs import as_index, check_length, check_shape, dtype_name, tracing
from .packing import Packing, unpads
from .pooler import XLMRobertaPooler
from .pretrained import XLMRobertaPreTrainedModel

# The models' warnings share one logger name, whichever module raises them.
logger = logging.getLogger("xlmr_torch.modeling")


class BackboneRows(NamedTuple):
    """What the encoder hands a task head: its token rows, packed (`packing` set) or padded."""

    rows: torch.Tensor  # [budget, hidden] packed, or [batch, seq, hidden]
    packing: Packing | None
    pooler_output: torch.Tensor | None
    past_key_values: tuple | None
    hidden_states: tuple | None  # in the padded layout
    attentions: tuple | None
    cross_attentions: tuple | None

    def first_tokens(self) -> torch.Tensor:
        """Rows whose position 0 is each sequence's first token, for the sentence-level heads."""
        return self.rows if self.packing is None else self.packing.first_tokens(self.rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """A token-level output of `rows` in the padded `[batch, seq, ...]` layout."""
        return x if self.packing is None else self.packing.unpack(x)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """`(batch, seq)` of the padded layout."""
        if self.packing is None:
            return tuple(self.rows.shape[:2])
        return (self.packing.batch_size, self.packing.seq_length)

    def pack_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`[batch, seq]` labels lined up with `rows` (flattened when packed)."""
        return labels if self.packing is None else self.packing.pack_labels(labels)


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
        pair_budget: int | None = None,
    ):
        """`unpadded=True`: run on the real tokens only (`xlmr_core.unpadding`; see `Packing`).

        Padded positions of `last_hidden_state` / `hidden_states` come back as zeros; the pooler
        reads position 0 as before. `token_budget` (optional) fixes the packed length; without it
        the packed length is the exact real-token count, since eager torch has no compiled program
        to reuse. `pair_budget` is checked to hold the mask's attention block pairs, as in TF and
        Flax, where it sizes the compiled attention; torch attends per sequence whatever it is.
        Under a tracer, or without padding in the mask, this is the padded path.
        """
        out = self.forward_rows(**backbone_arguments(locals()))
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=out.unpack(out.rows),
            pooler_output=out.pooler_output,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cross_attentions=out.cross_attentions,
        )
        return self._format_output(output, return_dict)

    def forward_rows(
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
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ) -> BackboneRows:
        """`forward`'s work, leaving the token rows packed when the call packs (for the heads)."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        check_unpadded_arguments(unpadded, token_budget, pair_budget)
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
        past_length = check_past_key_values(config, past_key_values, batch_size)
        check_length(config, past_length, seq_length)
        check_activation_size(config, batch_size, seq_length, past_length)
        if unpadded and attention_mask is not None and not tracing():
            check_mask_fits(
                attention_mask.detach().cpu().numpy(), token_budget, pair_budget, config.is_decoder
            )
        packing = None
        if unpads(unpadded, attention_mask):
            check_shape(attention_mask, (batch_size, seq_length), "attention_mask")
            packing = Packing.from_mask(attention_mask.to(device), token_budget)
        use_cache = config.is_decoder and (config.use_cache if use_cache is None else use_cache)
        use_cache = use_cache and packing is None
        if use_cache and self.encoder.gradient_checkpointing and self.training:
            logger.warning("use_cache=True does not combine with gradient checkpointing; not caching")
            use_cache = False
        token_type_ids, position_ids = self._ids(
            input_ids, inputs_embeds, token_type_ids, position_ids, past_length
        )

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
        inputs = AttentionInputs(
            attention_bias, encoder_hidden_states, encoder_attention_bias, output_attentions, packing
        )
        rows, presents, all_hidden_states, attentions, cross_attentions = self.encoder(
            embedding_output,
            inputs,
            self._per_layer_head_mask(head_mask, dtype),
            past_key_values,
            use_cache,
            output_hidden_states,
        )
        if packing is not None and all_hidden_states is not None:
            all_hidden_states = tuple(packing.unpack(h) for h in all_hidden_states)
        first_tokens = rows if packing is None else packing.first_tokens(rows)
        return BackboneRows(
            rows=rows,
            packing=packing,
            pooler_output=self.pooler(first_tokens) if self.pooler is not None else None,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=attentions,
            cross_attentions=cross_attentions,
        )

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

    def _ids(self, input_ids, inputs_embeds, token_type_ids, position_ids, past_length):
        """Checked `token_type_ids` and `position_ids`, the defaults filled in."""
        config = self.config
        reference = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = reference.shape[:2]
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=reference.device)
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
        return token_type_ids, position_ids

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


# The arguments of the encoder, which every public model passes through by name.
_BACKBONE_ARGUMENTS = tuple(inspect.signature(XLMRobertaModel.forward_rows).parameters)[1:]


def backbone_arguments(arguments: dict, **overrides) -> dict:
    """The arguments of `XLMRobertaModel.forward_rows` among `arguments`, then `overrides`.

    A public model's `forward` passes `locals()`: its signature is spelled out (the reference's
    order, and what tracers and exporters read), the pass-through to the encoder is written once.
    """
    picked = {name: arguments[name] for name in _BACKBONE_ARGUMENTS if name in arguments}
    picked.update(overrides)
    return picked
