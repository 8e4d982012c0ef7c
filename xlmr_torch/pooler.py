"""The pooler: tanh(dense) of the first (`<s>`) token."""

from __future__ import annotations

import torch
from torch import nn

from xlmr_core import XLMRobertaConfig
from xlmr_core.modeling_utils import check_first_token


class XLMRobertaPooler(nn.Module):
    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        """`[batch, seq, hidden]` (or `Packing.first_tokens`' `[batch, 1, hidden]`) -> `[batch, hidden]`."""
        check_first_token(hidden_states.shape[1])
        return torch.tanh(self.dense(hidden_states[:, 0]))
