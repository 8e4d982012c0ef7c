"""Every pair of installed frameworks gives the same numbers on the same checkpoint.

Checkpoints are written by xlmr_torch with every weight perturbed, loaded by each
framework through the shared format, and compared output by output (DESIGN.md:
max |diff| <= 1e-5 in float32 on CPU; gradients <= 1e-4).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.cross.harness import (
    FRAMEWORKS,
    GRADIENT_TOLERANCE,
    HEADS,
    OUTPUT_TOLERANCE,
    POSITION_KINDS,
    decoder_inputs,
    example_inputs,
    load_adapter,
    max_abs_diff,
)

PAIRS = list(itertools.combinations(FRAMEWORKS, 2))
PAIR_IDS = [f"{a}-{b}" for a, b in PAIRS]


@pytest.fixture(scope="session")
def loaded():
    """`loaded(framework, directory, head)` -> (adapter, model), cached: forward passes
    and gradients leave a model as it was, so one load serves many tests."""
    cache = {}

    def load(framework, directory, head):
        key = (framework, str(directory), head)
        if key not in cache:
            adapter = load_adapter(framework)
            cache[key] = (adapter, adapter.load(directory, head))
        return cache[key]

    return load


def assert_close(out_a, out_b, tolerance, what):
    diffs = max_abs_diff(out_a, out_b)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= tolerance, f"{what}: {worst} differs by {diffs[worst]:.3g} (> {tolerance})"


# -------------------------------------------------------------------- forward
@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_outputs_agree(pair, head, kind, checkpoint, loaded):
    directory, config = checkpoint(head, position_embedding_type=kind)
    inputs = example_inputs(head, config)
    (a, model_a), (b, model_b) = (loaded(fw, directory, head) for fw in pair)
    # The fused-attention path, then the explicit path that also returns every layer.
    for options in ({}, {"output_hidden_states": True, "output_attentions": True}):
        assert_close(
            a.forward(model_a, inputs, **options),
            b.forward(model_b, inputs, **options),
            OUTPUT_TOLERANCE,
            f"{pair} {head} {kind} {options}",
        )


@pytest.mark.parametrize("problem_type", ["regression", "multi_label_classification"])
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_classification_problem_types_agree(pair, problem_type, checkpoint, loaded):
    num_labels = 1 if problem_type == "regression" else 3
    directory, config = checkpoint("ForSequenceClassification", num_labels=num_labels)
    inputs = example_inputs("ForSequenceClassification", config)
    rng = np.random.default_rng(1)
    inputs["labels"] = (
        rng.standard_normal(2).astype(np.float32)
        if problem_type == "regression"
        else rng.integers(0, 2, size=(2, num_labels)).astype(np.float32)
    )
    (a, model_a), (b, model_b) = (loaded(fw, directory, "ForSequenceClassification") for fw in pair)
    out_a, out_b = a.forward(model_a, inputs), b.forward(model_b, inputs)
    assert "loss" in out_a
    assert_close(out_a, out_b, OUTPUT_TOLERANCE, f"{pair} {problem_type}")


# ------------------------------------------------------ decoder and its cache
@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_decoder_with_cross_attention_and_cache_agrees(pair, kind, checkpoint, loaded):
    directory, config = checkpoint(
        "ForCausalLM", position_embedding_type=kind, is_decoder=True, add_cross_attention=True
    )
    prefix, step, encoder = decoder_inputs(config)

    results = []
    for framework in pair:
        adapter, model = loaded(framework, directory, "ForCausalLM")
        first = adapter.forward(model, {**prefix, **encoder}, use_cache=True)
        second = adapter.forward(
            model, {**step, **encoder}, use_cache=True, past_key_values=first["past_key_values"]
        )
        results.append((first, second))
    (first_a, second_a), (first_b, second_b) = results
    assert_close(first_a, first_b, OUTPUT_TOLERANCE, f"{pair} {kind} prefix")
    assert_close(second_a, second_b, OUTPUT_TOLERANCE, f"{pair} {kind} cached step")


# ------------------------------------------------------------------ training
GRADIENT_CASES = [(head, "absolute") for head in HEADS if head != "Model"] + [
    ("ForMaskedLM", "relative_key"),
    ("ForTokenClassification", "relative_key_query"),
]


@pytest.mark.parametrize(("head", "kind"), GRADIENT_CASES)
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_gradients_agree(pair, head, kind, checkpoint, loaded):
    directory, config = checkpoint(head, position_embedding_type=kind)
    inputs = example_inputs(head, config)
    (a, model_a), (b, model_b) = (loaded(fw, directory, head) for fw in pair)
    loss_a, grads_a = a.loss_and_grads(model_a, inputs)
    loss_b, grads_b = b.loss_and_grads(model_b, inputs)
    assert abs(loss_a - loss_b) <= OUTPUT_TOLERANCE
    assert sorted(grads_a) == sorted(grads_b)
    assert any(np.abs(g).max() > 0 for g in grads_a.values())
    assert_close(grads_a, grads_b, GRADIENT_TOLERANCE, f"{pair} {head} {kind} gradients")


@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForMaskedLM"])
@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_one_sgd_step_gives_the_same_weights(pair, head, checkpoint):
    directory, config = checkpoint(head)
    inputs = example_inputs(head, config)
    weights = []
    for framework in pair:
        adapter = load_adapter(framework)
        weights.append(adapter.sgd_step(adapter.load(directory, head), inputs, learning_rate=0.5))
    assert sorted(weights[0]) == sorted(weights[1])
    assert_close(weights[0], weights[1], OUTPUT_TOLERANCE, f"{pair} {head} weights after one step")


# --------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("head", ["ForMaskedLM", "ForQuestionAnswering", "ForMultipleChoice"])
@pytest.mark.parametrize(
    "pair", PAIRS + [(b, a) for a, b in PAIRS], ids=lambda p: f"{p[0]}-saves-{p[1]}-loads"
)
def test_a_checkpoint_saved_by_one_framework_loads_in_another(pair, head, checkpoint, loaded, tmp_path):
    directory, config = checkpoint(head)
    inputs = example_inputs(head, config)
    saver, model = loaded(pair[0], directory, head)
    saver.save(model, tmp_path)
    reader = load_adapter(pair[1])
    assert_close(
        saver.forward(model, inputs),
        reader.forward(reader.load(tmp_path, head), inputs),
        OUTPUT_TOLERANCE,
        f"saved by {pair[0]}, loaded by {pair[1]}",
    )
