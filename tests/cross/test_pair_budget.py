"""`pair_budget`: the attention block pairs of a compiled `unpadded=True` call, promised by the caller.

Under `jax.jit` / `jit_compile=True` the mask is traced, so without a promise the packed
attention pays the worst case of pairs any mask within the token budget reaches. With the
budgets of `xlmr_core.unpadding.static_budgets` (computed from the concrete mask beforehand)
it computes just the pairs the batch has, and still gives the padded path's numbers; a batch
that needs more pairs than promised gives NaN there, as one with too many tokens does.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from tests.block_batches import block_batch
from tests.cross.harness import tiny_config
from xlmr_core import unpadding

FRAMEWORKS = ("torch", "tf", "flax")
TOLERANCE = 1e-5


def _model(framework: str, config):
    """The bare model, or the causal LM for a decoder config, of `framework`."""
    name = {"torch": "torch", "tf": "tensorflow", "flax": "jax"}[framework]
    pytest.importorskip(name, reason=f"{name} is not installed")
    module = importlib.import_module(f"xlmr_{framework}")
    prefix = {"torch": "", "tf": "TF", "flax": "Flax"}[framework]
    model = getattr(module, f"{prefix}XLMRoberta{'ForCausalLM' if config.is_decoder else 'Model'}")(config)
    return model.eval() if framework == "torch" else model


def _compiled(framework: str, model, field: str, budgets: dict):
    """`forward(ids, mask)`: the model unpadded with `budgets`, the mask traced where it can be."""
    if framework == "torch":  # eager: the mask is concrete and the budgets are checked
        import torch

        def forward(ids, mask):
            with torch.no_grad():
                out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **budgets)
            return out[field].numpy()

        return forward
    if framework == "tf":
        import tensorflow as tf

        compiled = tf.function(
            lambda ids, mask: model(input_ids=ids, attention_mask=mask, **budgets)[field], jit_compile=True
        )
        return lambda ids, mask: np.asarray(compiled(ids, mask))
    import jax

    compiled = jax.jit(lambda ids, mask: model(ids, mask, **budgets)[field])
    return lambda ids, mask: np.asarray(compiled(ids, mask))


def _padded(framework: str, model, field: str, ids, mask) -> np.ndarray:
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[
                field
            ].numpy()
    if framework == "tf":
        return np.asarray(model(input_ids=ids, attention_mask=mask)[field])
    return np.asarray(model(ids, mask)[field])


def test_static_budgets_are_the_bucketed_token_count_and_the_exact_pairs(small_blocks):
    _, mask = block_batch(tiny_config())  # lengths 11, 4, 1, 8, 7, 0 in blocks of 4
    # 9 + 1 + 1 + 4 + 4 = 19 pairs, bucketed at four significant bits like the token budget
    assert unpadding.static_budgets(mask) == {"token_budget": 64, "pair_budget": 20}
    assert unpadding.static_budgets(mask, causal=True)["pair_budget"] == 6 + 1 + 1 + 3 + 3


def test_a_promised_pair_budget_shrinks_the_traced_worst_case():
    blocks, pairs = unpadding.traced_attention_budgets(2816, 32, 430, 64, False)
    promised = unpadding.traced_attention_budgets(2816, 32, 430, 64, False, pair_budget=160)
    assert promised == (min(blocks, 160), 160) and pairs > 2 * 160


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_static_budgets_give_the_padded_numbers(small_blocks, framework, decoder):
    config = tiny_config(is_decoder=decoder, position_embedding_type="relative_key")
    model = _model(framework, config)
    ids, mask = block_batch(config)
    field = "logits" if decoder else "last_hidden_state"
    budgets = {"unpadded": True, **unpadding.static_budgets(mask, causal=decoder)}
    got = _compiled(framework, model, field, budgets)(ids, mask)
    want, real = _padded(framework, model, field, ids, mask), mask.astype(bool)
    scale = max(1.0, float(np.abs(want[real]).max()))
    np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE * scale)
    assert not got[~real].any()


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_under_compilation_too_few_pairs_give_nan_not_a_wrong_number(small_blocks, framework):
    config = tiny_config()
    ids, mask = block_batch(config)
    budgets = {"unpadded": True, "token_budget": 64, "pair_budget": 9}  # the batch has 19 pairs
    got = _compiled(framework, _model(framework, config), "last_hidden_state", budgets)(ids, mask)
    assert np.isnan(got[mask.astype(bool)]).all()


def test_the_compiled_layouts_have_the_promised_pairs(small_blocks):
    """Flax under `jit` and TF under XLA build their block layouts with `pair_budget` pairs."""
    pytest.importorskip("jax", reason="jax is not installed")
    pytest.importorskip("tensorflow", reason="tensorflow is not installed")
    import jax
    import tensorflow as tf

    from xlmr_flax.packing import Packing as FlaxPacking
    from xlmr_tf.packing import Packing as TFPacking

    _, mask = block_batch(tiny_config())
    seen = {}

    def flax_layout(m):
        seen["flax"] = FlaxPacking.from_mask(m, 64, pair_budget=19).layout.pairs
        return m

    jax.jit(flax_layout)(mask)

    @tf.function(jit_compile=True)
    def tf_layout(m):
        seen["tf"] = TFPacking.from_mask(m, 64, pair_budget=19).block_layout(False).query_block.shape[0]
        return m

    tf_layout(tf.constant(mask))
    assert seen == {"flax": 19, "tf": 19}
