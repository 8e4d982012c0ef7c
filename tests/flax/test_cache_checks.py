"""The key/value cache checks of the Flax models: `xlmr_core.caching`'s rules and texts, also
for the symbolic shapes of `jax.export`."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from tests.flax.conftest import token_batch


def _cache(batch=2, heads=4, length=3, head_dim=8, layers=2):
    entry = (np.zeros((batch, heads, length, head_dim), np.float32),) * 2
    return (entry,) * layers


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        (
            _cache(layers=1),
            "past_key_values must be a tuple with one entry per layer (2), "
            "as returned by a previous call with use_cache=True",
        ),
        (
            _cache(head_dim=5),
            "past_key_values[0] holds shape (2, 4, 3, 5); expected "
            "[batch, heads, length, head_dim] = (2, 4, 'length', 8)",
        ),
        (
            (_cache()[0], _cache(length=4)[0]),
            "past_key_values entries disagree on the cached length",
        ),
    ],
    ids=["layers", "head_dim", "lengths"],
)
def test_a_bad_cache_is_refused_with_the_shared_text(make_model, cache, message):
    model = make_model("ForCausalLM", is_decoder=True)
    input_ids, _ = token_batch(model.config, length=2)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        model(input_ids, past_key_values=cache)


def test_a_cache_with_symbolic_batch_and_length_exports(make_model):
    """The core check sees symbolic sizes as unknown; the exported step equals the eager one."""
    model = make_model("ForCausalLM", is_decoder=True)
    config = model.config
    input_ids, _ = token_batch(config, length=4)
    first = model(input_ids[:, :3], use_cache=True)

    def step(params, ids, past):
        return model(ids, past_key_values=past, params=params).logits

    b, p = export.symbolic_shape("b, p", constraints=[f"p <= {config.max_sequence_length - 1}"])
    entry = jax.ShapeDtypeStruct((b, config.num_attention_heads, p, config.head_dim), jnp.float32)
    past_spec = ((entry, entry),) * config.num_hidden_layers
    params_spec = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), model.params)
    ids_spec = jax.ShapeDtypeStruct((b, 1), jnp.int32)
    exported = export.export(jax.jit(step))(params_spec, ids_spec, past_spec)
    eager = model(input_ids[:, 3:], past_key_values=first.past_key_values).logits
    served = exported.call(model.params, jnp.asarray(input_ids[:, 3:]), first.past_key_values)
    np.testing.assert_allclose(np.asarray(served), np.asarray(eager), atol=1e-5)
