"""Random initialisation of a model, as the reference initialises a fresh one."""

from __future__ import annotations

import torch
from torch import nn


def initialise_module(module: nn.Module, std: float) -> None:
    """Normal(0, std) weights, zero biases and pad rows, unit LayerNorm scales."""
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
        elif isinstance(getattr(module, "bias", None), nn.Parameter):
            module.bias.zero_()  # a head's own output bias (the LM head's, shared with its decoder)


def initialise_randomly(model: nn.Module, std: float) -> None:
    """Initialise every weight of `model`, then tie its weights (`model.tie_weights()`)."""
    model.apply(lambda module: initialise_module(module, std))
    model.tie_weights()
    # A tied decoder is initialised as a Linear after the embedding: restore the zero pad rows.
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
