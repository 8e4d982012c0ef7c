"""The pooler: a tanh dense layer on the first (`<s>`) token."""

from __future__ import annotations

from xlmr_core import XLMRobertaConfig

from .initialisation import Block, dense


class XLMRobertaPooler(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense(config, config.hidden_size, "dense", activation="tanh")

    def call(self, hidden_states):
        """`[batch, seq, hidden]` or a packing's `first_tokens` `[batch, 1, hidden]` -> `[batch, hidden]`."""
        return self.dense(hidden_states[:, 0])
