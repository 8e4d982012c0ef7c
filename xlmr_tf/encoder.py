"""The stack of layers, collecting per-layer hidden states, attentions and cache entries."""

from __future__ import annotations

from xlmr_core import XLMRobertaConfig

from .initialisation import Block
from .layer import XLMRobertaLayer


class XLMRobertaEncoder(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.layer = [XLMRobertaLayer(config, name=f"layer_._{i}") for i in range(config.num_hidden_layers)]

    def call(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_bias=None,
        past_key_values=None,
        use_cache=False,
        output_attentions=False,
        output_hidden_states=False,
        packing=None,
        training=False,
    ):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer):
            hidden_states, probs, cross_probs, present = layer(
                hidden_states,
                attention_bias=attention_bias,
                head_mask=None if head_mask is None else head_mask[i],
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_bias=encoder_attention_bias,
                past_key_value=None if past_key_values is None else past_key_values[i],
                output_attentions=output_attentions,
                packing=packing,
                training=training,
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
