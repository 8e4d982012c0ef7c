"""One harness, every framework: adapters that speak numpy.

Each framework has an adapter module `tests/cross/adapter_<name>.py` defining a class
`Adapter` with the methods below. Inputs and outputs are numpy, so a test compares any
two frameworks without knowing either. A test asks for `available_adapters()` and is
parametrized over the frameworks installed; a framework that is not installed is
skipped with the reason.

Adapter protocol (every method takes/returns numpy; `head` is one of `HEADS`):

    name: str                                   # "torch", "tf", "flax"
    load(directory, head, **config_overrides) -> model
    save(model, directory) -> None
    forward(model, inputs: dict[str, np.ndarray], **options) -> dict
        options: output_attentions, output_hidden_states, use_cache,
                 past_key_values (nested tuples of arrays, the torch layout
                 [batch, heads, seq, head_dim]), labels / start_positions / end_positions,
                 encoder_hidden_states, encoder_attention_mask.
        returns {field: array or tuple of arrays (or tuple of tuples)}; dropout off.
    loss_and_grads(model, inputs, **options) -> (float loss, {canonical name: gradient array})
        inputs carry the labels; gradients in canonical names and canonical layout;
        options are call flags (e.g. unpadded=True).
    sgd_step(model, inputs, learning_rate) -> {canonical name: weight array after one step}
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from xlmr_core.architecture import HEADS  # noqa: F401 - re-exported: the tests take the heads from here

FRAMEWORKS = ("torch", "tf", "flax")
POSITION_KINDS = ("absolute", "relative_key", "relative_key_query")

# Agreement bounds from DESIGN.md (float32, CPU).
OUTPUT_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4


def load_adapter(framework: str):
    """The adapter for `framework`, or skip when the framework is not installed."""
    try:
        module = importlib.import_module(f"tests.cross.adapter_{framework}")
    except ImportError as error:
        pytest.skip(f"{framework} is not available here: {error}")
    return module.Adapter()


def tiny_config(**overrides):
    """A small config whose every dimension differs, so a transposed weight cannot pass."""
    from xlmr_core import XLMRobertaConfig

    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=40,
        type_vocab_size=2,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-5,
        num_labels=3,
    )
    values.update(overrides)
    return XLMRobertaConfig(**values)


def config_for(head: str, **overrides):
    """`tiny_config` for `head`: question answering predicts exactly two labels (start, end)."""
    if head == "ForQuestionAnswering":
        overrides.setdefault("num_labels", 2)
    return tiny_config(**overrides)


def flatten(value, prefix="") -> dict[str, np.ndarray]:
    """Nested tuples of arrays -> {"hidden_states.0": array, ...} for comparison."""
    if isinstance(value, (tuple, list)):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: np.asarray(value, dtype=np.float64)}


def max_abs_diff(a: dict, b: dict) -> dict[str, float]:
    """Largest |a - b| per output field; both must have the same fields and shapes."""
    names_a = {k: v for name, value in a.items() for k, v in flatten(value, name).items()}
    names_b = {k: v for name, value in b.items() for k, v in flatten(value, name).items()}
    assert names_a.keys() == names_b.keys(), (sorted(names_a), sorted(names_b))
    out = {}
    for name in names_a:
        assert names_a[name].shape == names_b[name].shape, (name, names_a[name].shape, names_b[name].shape)
        out[name] = float(np.max(np.abs(names_a[name] - names_b[name]))) if names_a[name].size else 0.0
    return out


def example_inputs(head: str, config, *, batch: int = 2, length: int = 7, choices: int = 3, seed: int = 0):
    """A padded batch (second row padded) with the labels `head` trains on, as numpy."""
    rng = np.random.default_rng(seed)
    shape = (batch, choices, length) if head == "ForMultipleChoice" else (batch, length)
    input_ids = rng.integers(3, config.vocab_size, size=shape)
    input_ids[..., 0] = 0  # <s>
    attention_mask = np.ones(shape, dtype=np.int64)
    attention_mask[1, ..., length - 3 :] = 0
    input_ids[attention_mask == 0] = config.pad_token_id
    inputs = {
        "input_ids": input_ids.astype(np.int64),
        "attention_mask": attention_mask,
        "token_type_ids": rng.integers(0, config.type_vocab_size, size=shape).astype(np.int64),
    }
    if head in ("ForCausalLM", "ForTokenClassification", "ForMaskedLM"):
        high = config.vocab_size if head != "ForTokenClassification" else config.num_labels
        labels = rng.integers(0, high, size=shape)
        labels[attention_mask == 0] = -100
        if head == "ForMaskedLM":
            labels[:, 1::3] = -100  # only some positions are labelled
        inputs["labels"] = labels.astype(np.int64)
    elif head == "ForSequenceClassification":
        inputs["labels"] = rng.integers(0, config.num_labels, size=batch).astype(np.int64)
    elif head == "ForMultipleChoice":
        inputs["labels"] = rng.integers(0, choices, size=batch).astype(np.int64)
    elif head == "ForQuestionAnswering":
        # The second start position lies beyond the sequence: clamped and ignored.
        inputs["start_positions"] = np.array([1, 100][:batch] + [2] * (batch - 2), dtype=np.int64)
        inputs["end_positions"] = np.array([3, 2][:batch] + [4] * (batch - 2), dtype=np.int64)
    return inputs


def without_labels(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k not in ("labels", "start_positions", "end_positions")}


def decoder_inputs(config) -> tuple[dict, dict, dict]:
    """(prefix, step, encoder) for a decoder with cross-attention and a cache: the first four
    tokens, then one more token with the mask of all five, and padded encoder states."""
    rng = np.random.default_rng(2)
    inputs = without_labels(example_inputs("ForCausalLM", config))
    encoder = {
        "encoder_hidden_states": rng.standard_normal((2, 5, config.hidden_size)).astype(np.float32),
        "encoder_attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    }
    prefix = {key: value[:, :4] for key, value in inputs.items()}
    step = {key: value[:, 4:5] for key, value in inputs.items()}
    step["attention_mask"] = inputs["attention_mask"][:, :5]
    return prefix, step, encoder
