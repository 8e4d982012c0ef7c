"""One transformer layer: attention, optional cross-attention, then the feed-forward block."""

from __future__ import annotations

from .activations import ACTIVATIONS
from .attention import XLMRobertaAttention, XLMRobertaSelfOutput
from .initialisation import Block, dense


class XLMRobertaIntermediate(Block):
    def setup(self):
        self.dense = dense(self.config, self.config.intermediate_size, self.dtype, self.param_dtype)
        self.activation = ACTIVATIONS[self.config.hidden_act]

    def __call__(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class XLMRobertaOutput(XLMRobertaSelfOutput):
    """The feed-forward block's dense -> dropout -> residual -> LayerNorm (the same parts as
    attention's output; a class of its own so parameter paths read `output/dense/...`)."""


class XLMRobertaLayer(Block):
    def setup(self):
        config = self.config
        self.attention = XLMRobertaAttention(
            config, self.dtype, self.param_dtype, position_embedding_type=config.position_embedding_type
        )
        if config.add_cross_attention:
            # Encoder positions are unrelated to decoder positions: cross-attention has no relative term.
            self.crossattention = XLMRobertaAttention(config, self.dtype, self.param_dtype)
        self.intermediate = XLMRobertaIntermediate(config, self.dtype, self.param_dtype)
        self.output = XLMRobertaOutput(config, self.dtype, self.param_dtype)

    def __call__(self, hidden_states, inputs, head_mask=None, past_key_value=None, deterministic=True):
        """`(hidden_states, self_probs, cross_probs, present)`; `present` is this layer's cache entry."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
        hidden_states, self_probs, present = self.attention(
            hidden_states, inputs, head_mask, self_past, deterministic=deterministic
        )
        cross_probs = None
        if inputs.encoder_hidden_states is not None:
            hidden_states, cross_probs, cross_present = self.crossattention(
                hidden_states, inputs, head_mask, cross_past, cross=True, deterministic=deterministic
            )
            present = present + cross_present
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states, deterministic)
        return hidden_states, self_probs, cross_probs, present
