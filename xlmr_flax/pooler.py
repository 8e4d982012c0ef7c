"""The pooler: tanh(dense) of the first (`<s>`) token."""

from __future__ import annotations

import jax.numpy as jnp

from xlmr_core.modeling_utils import check_first_token

from .initialisation import Block, dense


class XLMRobertaPooler(Block):
    def setup(self):
        self.dense = dense(self.config, self.config.hidden_size, self.dtype, self.param_dtype)

    def __call__(self, hidden_states):
        check_first_token(hidden_states.shape[1])
        return jnp.tanh(self.dense(hidden_states[:, 0]))
