"""The stack of layers, with gradient checkpointing and the per-layer outputs a caller asks for."""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn

from xlmr_core import XLMRobertaConfig

from .layer import XLMRobertaLayer


class XLMRobertaEncoder(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.layer = nn.ModuleList([XLMRobertaLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states,
        inputs,
        head_mask=None,
        past_key_values=None,
        use_cache=False,
        output_hidden_states=False,
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
            args = (
                hidden_states,
                inputs,
                None if head_mask is None else head_mask[i],
                None if past_key_values is None else past_key_values[i],
            )
            if self.gradient_checkpointing and self.training:
                hidden_states, probs, cross_probs, present = torch.utils.checkpoint.checkpoint(
                    layer, *args, use_reentrant=False
                )
            else:
                hidden_states, probs, cross_probs, present = layer(*args)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if inputs.output_attentions:
                all_attentions += (probs,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_probs,)
            if use_cache:
                presents += (present,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross_attentions
