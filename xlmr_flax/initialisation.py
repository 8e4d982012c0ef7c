"""Weight initialisers and the dense / LayerNorm builders every layer uses.

Fresh parameters follow the reference: normal(`initializer_range`) kernels and embeddings
(padding row zeroed), zero biases, LayerNorm at one / zero. A model's random initialisation
itself is `FlaxXLMRobertaPreTrainedModel.init_weights` (Linen's `init` over these).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xlmr_core import XLMRobertaConfig

Dtype = Any


class Block(nn.Module):
    """Base of every layer: the config, the computation dtype and the parameters' dtype."""

    config: XLMRobertaConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32


def normal(config: XLMRobertaConfig):
    """The reference's kernel and embedding initialiser."""
    return jax.nn.initializers.normal(stddev=config.initializer_range)


def embedding_init(std: float, padding_idx: int | None):
    """Normal init with the padding row zeroed, as the reference initialises it."""

    def init(key, shape, dtype=jnp.float32):
        table = jax.random.normal(key, shape, dtype) * std
        if padding_idx is not None and padding_idx < shape[0]:
            table = table.at[padding_idx].set(0)
        return table

    return init


def dense(config, features, dtype, param_dtype, name=None, use_bias=True) -> nn.Dense:
    """A `nn.Dense` initialised like the reference."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=normal(config),
        name=name,
    )


def layer_norm(config, dtype, param_dtype) -> nn.LayerNorm:
    """A `nn.LayerNorm` with the config's epsilon."""
    # The exact two-pass variance: the fast E[x^2] - E[x]^2 form drifts from PyTorch by ~1e-5.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, use_fast_variance=False
    )
