"""The size guard of model calls: a batch whose activations exceed `XLMR_MAX_ACTIVATION_BYTES` is
refused with the same one-line text naming the batch shape in torch, TF and Flax, before it runs;
a batch at the cap runs. Symbolic shapes are never checked.

The expected sizes are worked out by hand from `tiny_config` (hidden 32, intermediate 37, 4 heads,
absolute positions): a [4, 16] batch holds, per token, 2·4·16 attention scores and probabilities,
2·37 intermediate and 6·32 hidden-size values: 394 float32s, so 4 · 64 · 394 = 100864 bytes.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from tests.cross.harness import FRAMEWORKS, tiny_config
from xlmr_core import XLMRobertaConfig
from xlmr_core.call_limits import (
    DEFAULT_MAX_ACTIVATION_BYTES,
    ENV_VAR,
    InputTooLargeError,
    check_activation_size,
    max_activation_bytes,
)
from xlmr_core.configuration import ConfigError

CONFIG = tiny_config()
IDS = np.random.default_rng(0).integers(3, 99, size=(4, 16)).astype(np.int64)
IDS[:, 0] = 0
NEEDED = 100864


def _refusal(needed: int, limit: int, shape="[4, 16]", cached="") -> str:
    return (
        f"a batch of shape {shape}{cached} needs about {needed / 2**30:.3g} GiB of activations per layer, "
        f"over the limit of {limit / 2**30:.3g} GiB (XLMR_MAX_ACTIVATION_BYTES); "
        "split it into smaller batches or raise the limit"
    )


_MODELS: dict = {}


def _call(framework: str, ids: np.ndarray):
    name = {"torch": "torch", "tf": "tensorflow", "flax": "flax"}[framework]
    pytest.importorskip(name)
    module = importlib.import_module(f"xlmr_{framework}")
    if framework not in _MODELS:
        prefix = {"torch": "", "tf": "TF", "flax": "Flax"}[framework]
        model = getattr(module, f"{prefix}XLMRobertaModel")(CONFIG)
        _MODELS[framework] = model.eval() if framework == "torch" else model
    model = _MODELS[framework]
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(input_ids=torch.from_numpy(ids)).last_hidden_state
    if framework == "tf":
        return model({"input_ids": ids}, training=False).last_hidden_state
    return model(ids).last_hidden_state


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_batch_over_the_cap_is_refused_with_the_same_text_and_one_at_the_cap_runs(framework, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(NEEDED))
    assert np.asarray(_call(framework, IDS)).shape == (4, 16, 32)
    monkeypatch.setenv(ENV_VAR, str(NEEDED - 1))
    with pytest.raises(InputTooLargeError) as error:
        _call(framework, IDS)
    assert str(error.value) == _refusal(NEEDED, NEEDED - 1)
    # Half the batch needs half the memory and runs under the same cap.
    assert np.asarray(_call(framework, IDS[:2])).shape == (2, 16, 32)


def test_a_million_tokens_at_base_size_are_refused_by_default_and_readme_batches_run(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    base = XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514)  # xlm-roberta-base
    # 32 × 512 (the largest batch the README runs): 2·12·512 + 2·3072 + 6·768 = 23040 values per
    # token, 4 · 16384 · 23040 bytes = 1.41 GiB, under the default 16 GiB.
    check_activation_size(base, 32, 512)
    with pytest.raises(InputTooLargeError) as error:
        check_activation_size(base, 2000, 512)  # 1,024,000 tokens: 4 · 1024000 · 23040 bytes
    assert str(error.value) == _refusal(4 * 1024000 * 23040, DEFAULT_MAX_ACTIVATION_BYTES, "[2000, 512]")


def test_cached_positions_count_as_keys_and_are_named(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1000")
    # One new token over 15 cached: 2·4·16 + 74 + 192 = 394 values, 4 · 4 · 394 = 6304 bytes.
    with pytest.raises(InputTooLargeError) as error:
        check_activation_size(CONFIG, 4, 1, 15)
    assert str(error.value) == _refusal(6304, 1000, "[4, 1]", " with 15 cached positions")


def test_symbolic_sizes_are_not_checked(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")

    class Symbolic:  # stands for a torch SymInt / jax symbolic dimension / unknown TF dimension
        pass

    check_activation_size(CONFIG, Symbolic(), 16)
    check_activation_size(CONFIG, 4, Symbolic())
    with pytest.raises(InputTooLargeError):
        check_activation_size(CONFIG, 4, 16)


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ("", DEFAULT_MAX_ACTIVATION_BYTES),
        ("2048", 2048),
        ("16GiB", 16 * 2**30),
        ("2 GB", 2 * 10**9),
        ("0", None),
    ],
)
def test_the_cap_is_read_from_the_environment(monkeypatch, value, limit):
    monkeypatch.setenv(ENV_VAR, value)
    assert max_activation_bytes() == limit


def test_a_bad_cap_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "lots\nof memory")
    with pytest.raises(
        ConfigError, match=r"^XLMR_MAX_ACTIVATION_BYTES='lots\\nof memory' is not a size"
    ) as error:
        max_activation_bytes()
    assert "\n" not in str(error.value)
    monkeypatch.setenv(ENV_VAR, "0")
    check_activation_size(CONFIG, 10**6, 38)  # 0: no cap
