"""The unpadded and cache arguments are checked alike everywhere: the same exception type and the
same one-line text in torch, TF and Flax, taken from the core rules every framework calls
(`xlmr_core.unpadding`, `xlmr_core.caching`)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from tests.cross.harness import tiny_config
from xlmr_core.caching import check_past_key_values
from xlmr_core.unpadding import (
    attention_pairs,
    check_budget_fits,
    check_pairs_fit,
    check_unpadded_arguments,
    conflict_message,
)

FRAMEWORKS = ("torch", "tf", "flax")
IDS = np.array([[0, 5, 6, 7, 8, 2], [0, 9, 10, 11, 1, 1]], dtype=np.int32)
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=np.int32)
ENCODER = tiny_config()
DECODER = tiny_config(is_decoder=True)  # 2 layers, 4 heads of 8


def _error(check, *args, **kwargs) -> tuple[type, str]:
    with pytest.raises((TypeError, ValueError)) as error:
        check(*args, **kwargs)
    return error.type, str(error.value)


_MODELS: dict = {}


def _model(framework: str, config):
    key = (framework, config.is_decoder)
    if key not in _MODELS:
        name = {"torch": "torch", "tf": "tensorflow", "flax": "jax"}[framework]
        pytest.importorskip(name, reason=f"{name} is not installed")
        module = importlib.import_module(f"xlmr_{framework}")
        prefix = {"torch": "", "tf": "TF", "flax": "Flax"}[framework]
        head = "ForCausalLM" if config.is_decoder else "Model"
        model = getattr(module, f"{prefix}XLMRoberta{head}")(config)
        _MODELS[key] = model.eval() if framework == "torch" else model
    return _MODELS[key]


def _tensor(framework: str, array: np.ndarray):
    if framework == "torch":
        import torch

        return torch.from_numpy(array)
    if framework == "tf":
        import tensorflow as tf

        return tf.constant(array)
    return array


def _cache(framework: str, shapes) -> tuple:
    """`past_key_values` of zeros: one entry per item of `shapes`, each a tuple of tensor shapes."""
    return tuple(tuple(_tensor(framework, np.zeros(s, np.float32)) for s in entry) for entry in shapes)


def _call(framework: str, config, **options):
    model = _model(framework, config)
    ids, mask = _tensor(framework, IDS), _tensor(framework, MASK)
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, **options)
    if framework == "tf":
        return model(input_ids=ids, attention_mask=mask, training=False, **options)
    return model(ids, mask, **options)


GOOD = ((2, 4, 3, 8), (2, 4, 3, 8))
CACHE_CASES = {
    # name: (the cache's shapes, config)
    "a cache on an encoder": ((GOOD, GOOD), ENCODER),
    "one entry for two layers": ((GOOD,), DECODER),
    "an entry of three tensors": (((GOOD[0],) * 3, GOOD), DECODER),
    "a key of another head width": ((((2, 4, 3, 7), (2, 4, 3, 7)), GOOD), DECODER),
    "a cache of another batch": ((((1, 4, 3, 8), (1, 4, 3, 8)), ((1, 4, 3, 8), (1, 4, 3, 8))), DECODER),
    "layers with different lengths": ((GOOD, ((2, 4, 5, 8), (2, 4, 5, 8))), DECODER),
}
UNPADDED_CASES = {
    # name: (options, the core check's error)
    "a zero budget": ({"unpadded": True, "token_budget": 0}, _error(check_unpadded_arguments, True, 0)),
    "a fractional budget": (
        {"unpadded": True, "token_budget": 2.5},
        _error(check_unpadded_arguments, True, 2.5),
    ),
    "a budget as text": (
        {"unpadded": True, "token_budget": "64"},
        _error(check_unpadded_arguments, True, "64"),
    ),
    "a budget without unpadded": ({"token_budget": 64}, _error(check_unpadded_arguments, False, 64)),
    "unpadded as text": ({"unpadded": "yes"}, _error(check_unpadded_arguments, "yes", None)),
    "a budget below the real tokens": (
        {"unpadded": True, "token_budget": 3},
        _error(check_budget_fits, 3, int(MASK.sum())),
    ),
    "a zero pair budget": (
        {"unpadded": True, "pair_budget": 0},
        _error(check_unpadded_arguments, True, None, 0),
    ),
    "a pair budget without unpadded": ({"pair_budget": 4}, _error(check_unpadded_arguments, False, None, 4)),
    "a pair budget below the pairs": (
        {"unpadded": True, "pair_budget": 1},
        _error(check_pairs_fit, 1, attention_pairs(MASK)),
    ),
    **{
        f"unpadded with {option}": ({"unpadded": True, option: value}, (ValueError, conflict_message(option)))
        for option, value in (("output_attentions", True), ("use_cache", True))
    },
}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", UNPADDED_CASES)
def test_a_bad_unpadded_argument_gives_the_same_error_everywhere(case, framework):
    options, (kind, text) = UNPADDED_CASES[case]
    config = DECODER if "use_cache" in options else ENCODER
    with pytest.raises((TypeError, ValueError)) as error:
        _call(framework, config, **options)
    assert (error.type, str(error.value)) == (kind, text)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", CACHE_CASES)
def test_a_bad_cache_gives_the_same_error_everywhere(case, framework):
    shapes, config = CACHE_CASES[case]
    kind, text = _error(check_past_key_values, config, _cache("numpy", shapes), len(IDS))
    with pytest.raises((TypeError, ValueError)) as error:
        _call(framework, config, past_key_values=_cache(framework, shapes))
    assert (error.type, str(error.value)) == (kind, text)
