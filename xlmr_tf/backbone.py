"""The assembled encoder (named `roberta` inside every model): embeddings -> encoder -> pooler.

It also holds the checks of the body's inputs (`check_inputs`, run by the models' `__call__`
before Keras's call wrapper; the single checks are in `inputs.py`) and builds the attention
masks. Unpadded, it runs on a `Packing`'s rows (see `packing.py`).
"""

from __future__ import annotations

import tensorflow as tf

from xlmr_core import BaseModelOutputWithPoolingAndCrossAttentions, XLMRobertaConfig, unpadding
from xlmr_core.caching import check_past_key_values
from xlmr_core.call_limits import check_activation_size
from xlmr_core.modeling_utils import check_first_token

from .attention import AttentionInputs
from .embeddings import XLMRobertaEmbeddings, position_ids_from_input_ids, position_ids_from_inputs_embeds
from .encoder import XLMRobertaEncoder
from .initialisation import Block
from .inputs import check_integer, check_length, check_range, check_shape, dim
from .pooler import XLMRobertaPooler


class XLMRobertaMainLayer(Block):
    """The encoder (or decoder) body shared by every model; named `roberta` inside the heads."""

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embeddings = XLMRobertaEmbeddings(config, name="embeddings")
        self.encoder = XLMRobertaEncoder(config, name="encoder")
        self.pooler = XLMRobertaPooler(config, name="pooler") if add_pooling_layer else None

    def call(
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
        output_attentions=False,
        output_hidden_states=False,
        packing=None,
        keep_packed=False,
        training=False,
    ):
        """The body; with a `Packing` it runs on the real tokens only.

        Packed, the hidden states come back in the padded layout, except `last_hidden_state`
        with `keep_packed=True` (`[budget, hidden]`, for a head to run on the packed rows).
        """
        # The inputs were checked by `check_inputs` (the models' `__call__`, before Keras's wrapper).
        config = self.config
        tokens = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = dim(tokens, 0), dim(tokens, 1)
        past_length = 0 if past_key_values is None else dim(past_key_values[0][0], 2)
        use_cache = config.is_decoder and (config.use_cache if use_cache is None else use_cache)
        use_cache = use_cache and packing is None  # a packed call keeps no cache

        shape = (batch_size, seq_length)
        if token_type_ids is None:
            token_type_ids = tf.zeros(tf.stack(shape) if not _static(shape) else shape, tf.int32)
        if position_ids is None:
            if input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, config.pad_token_id, past_length)
            else:
                position_ids = position_ids_from_inputs_embeds(
                    inputs_embeds, config.pad_token_id, past_length
                )
        if packing is not None:
            # Ids gathered from the padded layout, so positions and types are the padded path's.
            position_ids = tf.broadcast_to(position_ids, tf.shape(token_type_ids))
            input_ids, token_type_ids, position_ids, inputs_embeds = (
                None if t is None else packing.pack(t)
                for t in (input_ids, token_type_ids, position_ids, inputs_embeds)
            )

        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            training=training,
        )
        if packing is not None:  # a budget the tokens overflowed (XLA) makes every output NaN
            embedding_output = packing.guard(embedding_output)
        attention_bias = self._self_attention_bias(attention_mask, past_length, past_length + seq_length)
        encoder_attention_bias = self._cross_attention_bias(encoder_attention_mask)
        if encoder_hidden_states is not None:
            encoder_hidden_states = tf.cast(encoder_hidden_states, embedding_output.dtype)
        inputs = AttentionInputs(
            attention_bias, encoder_hidden_states, encoder_attention_bias, output_attentions, packing
        )
        hidden_states, presents, all_hidden_states, attentions, cross_attentions = self.encoder(
            embedding_output,
            inputs=inputs,
            head_mask=self._per_layer_head_mask(head_mask),
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(hidden_states if packing is None else packing.first_tokens(hidden_states))
        if packing is not None:
            if all_hidden_states is not None:
                all_hidden_states = tuple(packing.unpack(h) for h in all_hidden_states)
            if not keep_packed:
                hidden_states = packing.unpack_output(hidden_states)
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=attentions,
            cross_attentions=cross_attentions,
        )

    def check_inputs(self, values: dict) -> dict:
        """Every check of the body's inputs (token shape `[batch, sequence]`); see `inputs.py`.

        Returns `values` with the ids guarded by their range checks when in a graph.
        """
        config, values = self.config, dict(values)
        input_ids = values.get("input_ids")
        batch_size, seq_length = self._check_token_inputs(input_ids, values.get("inputs_embeds"))
        if input_ids is not None:
            values["input_ids"] = check_range(input_ids, config.vocab_size, "input_ids")
        past_length = self._past_length(values.get("past_key_values"), batch_size)
        check_length(config, past_length, seq_length)
        check_activation_size(config, batch_size, seq_length, past_length)
        if self.pooler is not None:  # it reads the first token
            check_first_token(seq_length)
        shape = (batch_size, seq_length)
        if values.get("token_type_ids") is not None:
            check_shape(values["token_type_ids"], shape, "token_type_ids")
            values["token_type_ids"] = check_range(
                values["token_type_ids"], config.type_vocab_size, "token_type_ids"
            )
        position_ids = values.get("position_ids")
        if position_ids is not None:
            try:
                check_shape(position_ids, shape, "position_ids")
            except ValueError:
                check_shape(position_ids, (1, seq_length), "position_ids")
            if config.position_embedding_type == "absolute":
                values["position_ids"] = check_range(
                    position_ids, config.max_position_embeddings, "position_ids"
                )
        if values.get("attention_mask") is not None:
            check_shape(values["attention_mask"], (batch_size, past_length + seq_length), "attention_mask")
        self._check_encoder_inputs(
            values.get("encoder_hidden_states"), values.get("encoder_attention_mask"), batch_size
        )
        self._check_head_mask(values.get("head_mask"))
        unpadded = False if values.get("unpadded") is None else values["unpadded"]
        unpadding.check_unpadded_arguments(unpadded, values.get("token_budget"), values.get("pair_budget"))
        if unpadded:
            self._check_unpadded(values)
        return values

    def _check_unpadded(self, values: dict) -> None:
        """The checks of `unpadded=True`: options it cannot combine with, the mask's rows, the budget."""
        output_attentions = values.get("output_attentions")
        unpadding.check_unpadded_options(
            past_key_values=values.get("past_key_values"),
            use_cache=values.get("use_cache"),
            encoder_hidden_states=values.get("encoder_hidden_states"),
            output_attentions=self.config.output_attentions
            if output_attentions is None
            else output_attentions,
            head_mask=values.get("head_mask"),
        )
        mask = values.get("attention_mask")
        concrete = None if mask is None else tf.get_static_value(mask)
        if concrete is None:
            return  # traced: trusted (a graph asserts the budget, XLA cannot)
        unpadding.check_contiguous_rows(concrete)
        unpadding.check_mask_fits(
            concrete, values.get("token_budget"), values.get("pair_budget"), self.config.is_decoder
        )

    def _check_token_inputs(self, input_ids, inputs_embeds):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.shape.rank != 2:
                raise ValueError(f"input_ids must be [batch, sequence]; got shape {tuple(input_ids.shape)}")
            check_integer(input_ids, "input_ids")
            return dim(input_ids, 0), dim(input_ids, 1)
        if inputs_embeds.shape.rank != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be [batch, sequence, {self.config.hidden_size}]; "
                f"got shape {tuple(inputs_embeds.shape)}"
            )
        return dim(inputs_embeds, 0), dim(inputs_embeds, 1)

    def _past_length(self, past_key_values, batch_size):
        """The cache's length after `xlmr_core.caching`'s checks: an int, or a tensor when traced."""
        known_batch = batch_size if isinstance(batch_size, int) else None
        length = check_past_key_values(self.config, past_key_values, known_batch)
        return length if length is not None else dim(past_key_values[0][0], 2)

    def _self_attention_bias(self, attention_mask, past_length, total_length):
        """Where a query may look, `[batch or 1, 1, q, k]` bool (the attention adds a float32 bias).

        A float32 bias given to the layers would be autocast to float16 under mixed precision,
        where -huge is -inf (a NaN for a row with nothing to attend to).
        """
        keep = None
        if attention_mask is not None:
            keep = _keep_mask(attention_mask)
        if self.config.is_decoder:
            query_positions = tf.range(past_length, total_length)[:, None]
            causal = tf.reshape(tf.range(total_length)[None, :] <= query_positions, [1, 1, -1, total_length])
            keep = causal if keep is None else tf.logical_and(keep, causal)
        return keep

    def _check_encoder_inputs(self, encoder_hidden_states, encoder_attention_mask, batch_size) -> None:
        if encoder_hidden_states is None:
            if encoder_attention_mask is not None:
                raise ValueError("encoder_attention_mask was given without encoder_hidden_states")
            return
        if not self.config.add_cross_attention:
            raise ValueError(
                "encoder_hidden_states needs cross-attention layers: build the model with "
                "is_decoder=True and add_cross_attention=True"
            )
        hidden = self.config.hidden_size
        if encoder_hidden_states.shape.rank != 3 or encoder_hidden_states.shape[-1] != hidden:
            raise ValueError(
                f"encoder_hidden_states must be [batch, encoder_sequence, {hidden}]; "
                f"got shape {tuple(encoder_hidden_states.shape)}"
            )
        check_shape(encoder_hidden_states, (batch_size, None, hidden), "encoder_hidden_states")
        if encoder_attention_mask is not None:
            check_shape(
                encoder_attention_mask, tuple(encoder_hidden_states.shape[:2]), "encoder_attention_mask"
            )

    @staticmethod
    def _cross_attention_bias(encoder_attention_mask):
        if encoder_attention_mask is None:
            return None
        return _keep_mask(encoder_attention_mask)

    def _check_head_mask(self, head_mask) -> None:
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if head_mask is not None and tuple(head_mask.shape) not in ((heads,), (layers, heads)):
            raise ValueError(
                f"head_mask has shape {tuple(head_mask.shape)}; expected ({heads},) or ({layers}, {heads})"
            )

    def _per_layer_head_mask(self, head_mask):
        """`[heads]` (all layers) or `[layers, heads]` -> one `[1, heads, 1, 1]` multiplier per layer."""
        if head_mask is None:
            return None
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if tuple(head_mask.shape) == (heads,):
            head_mask = tf.broadcast_to(head_mask[None], (layers, heads))
        return [tf.reshape(head_mask[i], (1, heads, 1, 1)) for i in range(layers)]


def _keep_mask(attention_mask):
    """`[batch, k]` mask -> `[batch, 1, 1, k]` bool (expand_dims: TFLite slices no bool tensors)."""
    return tf.expand_dims(tf.expand_dims(tf.cast(attention_mask, tf.bool), 1), 1)


def _static(shape) -> bool:
    """Whether every dimension of `shape` is a Python int."""
    return all(isinstance(d, int) for d in shape)
