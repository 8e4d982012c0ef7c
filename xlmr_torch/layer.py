"""One transformer layer: self-attention, optional cross-attention, then the feed-forward."""

from __future__ import annotations

from torch import nn

from xlmr_core import XLMRobertaConfig

from .activations import ACTIVATIONS
from .attention import XLMRobertaAttention, XLMRobertaSelfOutput


class XLMRobertaIntermediate(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class XLMRobertaOutput(XLMRobertaSelfOutput):
    """The feed-forward's end: attention's output block, from the intermediate width."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config, config.intermediate_size)


class XLMRobertaLayer(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.attention = XLMRobertaAttention(config, config.position_embedding_type)
        if config.add_cross_attention:
            # Encoder positions are unrelated to decoder positions: cross-attention has no relative term.
            self.crossattention = XLMRobertaAttention(config, "absolute")
        self.intermediate = XLMRobertaIntermediate(config)
        self.output = XLMRobertaOutput(config)

    def forward(self, hidden_states, inputs, head_mask=None, past_key_value=None):
        """`(hidden_states, self_probs, cross_probs, present)`; `present` is this layer's cache entry."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
        hidden_states, self_probs, present = self.attention(hidden_states, inputs, head_mask, self_past)
        cross_probs = None
        if inputs.encoder_hidden_states is not None:
            hidden_states, cross_probs, cross_present = self.crossattention(
                hidden_states, inputs, head_mask, cross_past, cross=True
            )
            present = present + cross_present
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states)
        return hidden_states, self_probs, cross_probs, present
