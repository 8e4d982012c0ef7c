"""`XLMRobertaPreTrainedModel`: the base class of the seven public models (files: `CheckpointIO`)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from xlmr_core import XLMRobertaConfig

from .checkpoint_io import CheckpointIO
from .encoder import XLMRobertaEncoder
from .initialisation import initialise_randomly
from .inputs import normalise_call


class XLMRobertaPreTrainedModel(CheckpointIO, nn.Module):
    """Weight init, weight tying and gradient checkpointing for every model (files: `CheckpointIO`)."""

    base_model_prefix = "roberta"

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        config.validate()
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True: cross-attention is a decoder part"
            )
        self.config = config
        # numpy / list inputs and the legacy tracer's tensor flags, fixed before `forward` runs.
        self.forward_argument_names = tuple(inspect.signature(type(self).forward).parameters)[1:]
        self.register_forward_pre_hook(normalise_call, with_kwargs=True)

    # -- weights
    def post_init(self) -> None:
        """Initialise every weight like the reference, then tie the LM head to the embeddings."""
        initialise_randomly(self, self.config.initializer_range)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def get_output_embeddings(self) -> nn.Linear | None:
        lm_head = getattr(self, "lm_head", None)
        return None if lm_head is None else lm_head.decoder

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    def tie_weights(self) -> None:
        """Share the word-embedding matrix with the LM head's projection (`config.tie_word_embeddings`)."""
        output_embeddings = self.get_output_embeddings()
        if output_embeddings is not None and self.config.tie_word_embeddings:
            output_embeddings.weight = self.get_input_embeddings().weight
        lm_head = getattr(self, "lm_head", None)
        if lm_head is not None:
            lm_head.decoder.bias = lm_head.bias

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of distinct parameters (a tied matrix counts once)."""
        skip = set()
        if exclude_embeddings:
            skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(
            p.numel()
            for p in self.parameters()
            if id(p) not in skip and (p.requires_grad or not only_trainable)
        )

    # -- gradient checkpointing
    def gradient_checkpointing_enable(self) -> None:
        """Recompute each layer's activations in the backward pass (training only) to save memory."""
        for module in self.modules():
            if isinstance(module, XLMRobertaEncoder):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, XLMRobertaEncoder):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(m.gradient_checkpointing for m in self.modules() if isinstance(m, XLMRobertaEncoder))

    def _format_output(self, output, return_dict):
        use_dict = self.config.return_dict if return_dict is None else return_dict
        # torch.jit.trace takes tensors and tuples only: a traced model returns the tuple form.
        if return_dict is None and torch.jit.is_tracing():
            use_dict = False
        return output if use_dict else output.to_tuple()
