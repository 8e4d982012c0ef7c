"""The stack of layers, with the per-layer outputs a call asks for."""

from __future__ import annotations

from .initialisation import Block
from .layer import XLMRobertaLayer


class XLMRobertaLayerList(Block):
    """Holds the layers under the names `0`, `1`, ... so parameters read `encoder/layer/3/...`."""

    def setup(self):
        self.layers = [
            XLMRobertaLayer(self.config, self.dtype, self.param_dtype, name=str(i))
            for i in range(self.config.num_hidden_layers)
        ]


class XLMRobertaEncoder(Block):
    def setup(self):
        self.layer = XLMRobertaLayerList(self.config, self.dtype, self.param_dtype)

    def __call__(
        self,
        hidden_states,
        inputs,
        head_mask=None,
        past_key_values=None,
        use_cache=False,
        output_hidden_states=False,
        deterministic=True,
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
        for i, layer in enumerate(self.layer.layers):
            hidden_states, probs, cross_probs, present = layer(
                hidden_states,
                inputs,
                None if head_mask is None else head_mask[i],
                None if past_key_values is None else past_key_values[i],
                deterministic,
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
