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
        inputs,
        head_mask=None,
        past_key_values=None,
        use_cache=False,
        output_hidden_states=False,
        training=False,
    ):
        """`(hidden_states, presents, all_hidden_states, attentions, cross_attentions)`.

        `inputs` is the call's `attention.AttentionInputs`; with `inputs.packing`, `hidden_states`
        are the packed `[budget, hidden]` rows (unpadded=True).
        """
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if inputs.output_attentions else None
        cross = inputs.output_attentions and inputs.encoder_hidden_states is not None
        all_cross_attentions = () if cross else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer):
            hidden_states, probs, cross_probs, present = layer(
                hidden_states,
                inputs=inputs,
                head_mask=None if head_mask is None else head_mask[i],
                past_key_value=None if past_key_values is None else past_key_values[i],
                training=training,
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if inputs.output_attentions:
                all_attentions += (probs,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_probs,)
            if use_cache:
                presents += (present,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross_attentions
