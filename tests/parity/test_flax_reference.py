"""xlmr_flax against the reference Flax models (transformers 4.57.6).

Where the reference has the feature, a checkpoint it saves (`flax_model.msgpack`) loads
here and gives the same outputs (max |diff| <= 1e-5, float32, CPU). Where the reference
falls short, a test shows that we do not:

- its base model loads a head checkpoint with silently random weights (the prefix is
  not matched); ours loads the encoder weights and reports the head weights unexpected;
- it computes no losses and takes no `inputs_embeds`; ours does both, equal to xlmr_torch.
"""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import xlmr_flax  # noqa: E402
from tests.cross.harness import (  # noqa: E402
    HEADS,
    OUTPUT_TOLERANCE,
    config_for,
    example_inputs,
    max_abs_diff,
    without_labels,
)

LOSS_HEADS = [head for head in HEADS if head != "Model"]


def reference_checkpoint(head, config, directory, seed=0):
    """Save a reference Flax model of `head` with every weight perturbed; return the model."""
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    model = getattr(transformers, f"FlaxXLMRoberta{head}")(reference_config, seed=seed)
    leaves, tree = jax.tree_util.tree_flatten(model.params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    noisy = [leaf + 0.05 * jax.random.normal(key, leaf.shape, leaf.dtype) for leaf, key in zip(leaves, keys)]
    model.params = jax.tree_util.tree_unflatten(tree, noisy)
    model.save_pretrained(directory)
    return model


def numpy_outputs(outputs) -> dict:
    def convert(value):
        if isinstance(value, (tuple, list)):
            return tuple(convert(v) for v in value)
        return np.asarray(value, np.float64)

    return {k: convert(v) for k, v in outputs.items() if v is not None and k != "past_key_values"}


def assert_same(ours, reference, what):
    ours, reference = numpy_outputs(ours), numpy_outputs(reference)
    ours = {k: v for k, v in ours.items() if k in reference}
    diffs = max_abs_diff(ours, reference)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= OUTPUT_TOLERANCE, f"{what}: {worst} differs by {diffs[worst]:.3g}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """`checkpoints(head, **overrides)` -> (directory, config, reference model), made once each."""
    made = {}

    def make(head, **overrides):
        key = (head, tuple(sorted(overrides.items())))
        if key not in made:
            config = config_for(head, **overrides)
            directory = tmp_path_factory.mktemp(f"reference-{head}")
            made[key] = (directory, config, reference_checkpoint(head, config, directory))
        return made[key]

    return make


@pytest.mark.parametrize("head", HEADS)
def test_a_reference_msgpack_checkpoint_gives_the_reference_outputs(head, checkpoints):
    overrides = {"is_decoder": True} if head == "ForCausalLM" else {}
    directory, config, reference = checkpoints(head, **overrides)
    assert (directory / "flax_model.msgpack").is_file()
    ours, info = getattr(xlmr_flax, f"FlaxXLMRoberta{head}").from_pretrained(
        directory, output_loading_info=True
    )
    assert info == {"missing_keys": [], "unexpected_keys": []}
    inputs = without_labels(example_inputs(head, config))
    options = {"output_hidden_states": True, "output_attentions": True}
    assert_same(ours(**inputs, **options), reference(**inputs, **options), head)


def test_head_mask_matches_the_reference(checkpoints):
    directory, config, reference = checkpoints("ForMaskedLM")
    ours = xlmr_flax.FlaxXLMRobertaForMaskedLM.from_pretrained(directory)
    inputs = without_labels(example_inputs("ForMaskedLM", config))
    # 0/1 only: the reference casts head_mask to int32, which turns a 0.5 into 0.
    head_mask = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], np.float32)
    assert_same(
        ours(**inputs, head_mask=head_mask, output_attentions=True),
        reference(**inputs, head_mask=head_mask, output_attentions=True),
        "head_mask",
    )


# ----------------------------------------------------------------------------- the reference's traps
def test_the_base_model_loads_a_head_checkpoint_with_its_weights_unlike_the_reference(checkpoints):
    directory, config, head_model = checkpoints("ForMaskedLM")
    inputs = without_labels(example_inputs("ForMaskedLM", config))
    trained = np.asarray(head_model(**inputs, output_hidden_states=True).hidden_states[-1])

    reference_base = transformers.FlaxXLMRobertaModel.from_pretrained(directory)
    reference_hidden = np.asarray(reference_base(**inputs).last_hidden_state)
    assert np.abs(reference_hidden - trained).max() > 0.1  # the reference's trap: random encoder

    ours, info = xlmr_flax.FlaxXLMRobertaModel.from_pretrained(directory, output_loading_info=True)
    assert "lm_head.bias" in info["unexpected_keys"]
    assert sorted(info["missing_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    np.testing.assert_allclose(ours(**inputs).last_hidden_state, trained, atol=OUTPUT_TOLERANCE)


@pytest.fixture(scope="module")
def torch_pair(checkpoints, tmp_path_factory):
    """`torch_pair(head)` -> (our Flax model, xlmr_torch model, config) on the same weights."""
    torch = pytest.importorskip("torch")
    import xlmr_torch

    made = {}

    def make(head):
        if head not in made:
            directory, config, _ = checkpoints(head)
            ours = getattr(xlmr_flax, f"FlaxXLMRoberta{head}").from_pretrained(directory)
            saved = tmp_path_factory.mktemp(f"ours-{head}")
            ours.save_pretrained(saved)
            theirs = getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(saved).eval()
            made[head] = (ours, theirs, config, torch)
        return made[head]

    return make


@pytest.mark.parametrize("head", LOSS_HEADS)
def test_losses_the_reference_lacks_equal_torch(head, checkpoints, torch_pair):
    directory, config, reference = checkpoints(head)
    inputs = example_inputs(head, config)
    labels = {k: v for k, v in inputs.items() if k not in without_labels(inputs)}
    with pytest.raises(TypeError):
        reference(**inputs)  # the reference Flax models take no labels

    ours, theirs, _, torch = torch_pair(head)
    with torch.no_grad():
        expected = float(theirs(**{k: torch.from_numpy(v) for k, v in inputs.items()}).loss)
    assert labels and abs(float(ours(**inputs).loss) - expected) <= OUTPUT_TOLERANCE


def test_inputs_embeds_the_reference_lacks_equal_torch(checkpoints, torch_pair):
    directory, config, reference = checkpoints("ForTokenClassification")
    ours, theirs, _, torch = torch_pair("ForTokenClassification")
    embeds = np.random.default_rng(0).standard_normal((2, 6, config.hidden_size)).astype(np.float32)
    with pytest.raises(TypeError):
        reference(inputs_embeds=embeds)
    with torch.no_grad():
        expected = theirs(inputs_embeds=torch.from_numpy(embeds)).logits.double().numpy()
    np.testing.assert_allclose(ours(inputs_embeds=embeds).logits, expected, atol=OUTPUT_TOLERANCE)
