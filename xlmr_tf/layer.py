"""One transformer layer: attention (and cross-attention in a decoder), then the feed-forward."""

from __future__ import annotations

from xlmr_core import XLMRobertaConfig

from .activations import ACTIVATIONS
from .attention import XLMRobertaAttention, XLMRobertaSelfOutput
from .initialisation import Block, dense


class XLMRobertaIntermediate(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense(config, config.intermediate_size, "dense")
        self.activation = ACTIVATIONS[config.hidden_act]

    def call(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class XLMRobertaOutput(XLMRobertaSelfOutput):
    """The feed-forward's output block: dense -> dropout -> residual -> LayerNorm, as after attention."""


class XLMRobertaLayer(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.attention = XLMRobertaAttention(config, config.position_embedding_type, name="attention")
        if config.add_cross_attention:
            # Encoder positions are unrelated to decoder positions: cross-attention has no relative term.
            self.crossattention = XLMRobertaAttention(config, "absolute", name="crossattention")
        self.intermediate = XLMRobertaIntermediate(config, name="intermediate")
        self.output_layer = XLMRobertaOutput(config, name="output")

    def call(self, hidden_states, inputs, head_mask=None, past_key_value=None, training=False):
        """`(hidden_states, self_probs, cross_probs, present)`; `present` is this layer's cache entry."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
        hidden_states, self_probs, present = self.attention(
            hidden_states, inputs=inputs, head_mask=head_mask, past_key_value=self_past, training=training
        )
        cross_probs = None
        if inputs.encoder_hidden_states is not None:
            hidden_states, cross_probs, cross_present = self.crossattention(
                hidden_states,
                inputs=inputs,
                head_mask=head_mask,
                past_key_value=cross_past,
                cross=True,
                training=training,
            )
            present = present + cross_present
        hidden_states = self.output_layer(self.intermediate(hidden_states), hidden_states, training=training)
        return hidden_states, self_probs, cross_probs, present
