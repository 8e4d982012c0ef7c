"""xlmr_torch against the reference implementation (transformers 4.57.6), both ways.

Tiny random checkpoints saved by the reference load here and give the same outputs
(logits, hidden states, attentions, loss: max |diff| <= 1e-5, float32, CPU); checkpoints
saved here load in the reference with the same outputs. Where the reference is wrong
(sequences past the position table, relative positions with a cache) a test shows
that we are not.
"""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import xlmr_torch  # noqa: E402
from tests.cross.harness import (  # noqa: E402
    HEADS,
    OUTPUT_TOLERANCE,
    POSITION_KINDS,
    config_for,
    example_inputs,
    max_abs_diff,
    tiny_config,
    without_labels,
)


def reference_model(head, config, seed=0):
    """A reference model of `head` with every weight perturbed away from its init."""
    torch.manual_seed(seed)
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    model = getattr(transformers, f"XLMRoberta{head}")(reference_config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def run(model, inputs, **options):
    with torch.no_grad():
        out = model(**{k: torch.as_tensor(v) for k, v in inputs.items()}, **options, return_dict=True)
    return {k: v for k, v in out.items() if k != "past_key_values"}


def to_numpy(outputs):
    def convert(value):
        if isinstance(value, (tuple, list)):
            return tuple(convert(v) for v in value)
        return value.detach().double().numpy()

    return {k: convert(v) for k, v in outputs.items()}


def assert_same_outputs(ours, reference, what=""):
    diffs = max_abs_diff(to_numpy(ours), to_numpy(reference))
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= OUTPUT_TOLERANCE, f"{what}: {worst} differs by {diffs[worst]:.3g}"


OPTIONS = [{}, {"output_hidden_states": True, "output_attentions": True}]


@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_reference_checkpoint_loads_and_gives_the_same_outputs(head, kind, tmp_path):
    config = config_for(head, position_embedding_type=kind)
    reference = reference_model(head, config)
    reference.save_pretrained(tmp_path)
    ours, info = getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    inputs = example_inputs(head, config)
    for options in OPTIONS:
        assert_same_outputs(
            run(ours.eval(), inputs, **options), run(reference, inputs, **options), f"{options}"
        )


@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_our_checkpoint_loads_in_the_reference_with_the_same_outputs(head, kind, tmp_path):
    config = config_for(head, position_embedding_type=kind)
    torch.manual_seed(1)
    ours = getattr(xlmr_torch, f"XLMRoberta{head}")(config)
    with torch.no_grad():
        for parameter in ours.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    ours.save_pretrained(tmp_path)
    reference, info = getattr(transformers, f"XLMRoberta{head}").from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    inputs = example_inputs(head, config)
    for options in OPTIONS:
        assert_same_outputs(run(ours.eval(), inputs, **options), run(reference.eval(), inputs, **options))


@pytest.mark.parametrize("head", ["ForMaskedLM", "ForSequenceClassification"])
def test_reference_pytorch_bin_files_load(head, tmp_path):
    config = config_for(head)
    reference = reference_model(head, config)
    reference.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "pytorch_model.bin").is_file()
    ours = getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(tmp_path)
    inputs = example_inputs(head, config)
    assert_same_outputs(run(ours.eval(), inputs), run(reference, inputs))


@pytest.mark.parametrize(
    "problem_type", ["regression", "single_label_classification", "multi_label_classification"]
)
def test_sequence_classification_losses_match_for_each_problem_type(problem_type, tmp_path):
    num_labels = 1 if problem_type == "regression" else 3
    config = tiny_config(num_labels=num_labels)
    reference = reference_model("ForSequenceClassification", config)
    reference.save_pretrained(tmp_path)
    ours = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path).eval()
    inputs = example_inputs("ForSequenceClassification", config)
    rng = np.random.default_rng(3)
    if problem_type == "regression":
        inputs["labels"] = rng.standard_normal(2).astype(np.float32)
    elif problem_type == "multi_label_classification":
        inputs["labels"] = rng.integers(0, 2, size=(2, num_labels)).astype(np.float32)
    ours_out, reference_out = run(ours, inputs), run(reference, inputs)
    assert reference.config.problem_type == problem_type  # the reference infers it on first use
    assert_same_outputs(ours_out, reference_out, problem_type)


def test_decoder_cache_matches_the_reference_step_by_step(tmp_path):
    config = tiny_config(is_decoder=True, add_cross_attention=True)
    reference = reference_model("ForCausalLM", config)
    reference.save_pretrained(tmp_path)
    ours = xlmr_torch.XLMRobertaForCausalLM.from_pretrained(tmp_path).eval()
    inputs = {k: torch.as_tensor(v) for k, v in without_labels(example_inputs("ForCausalLM", config)).items()}
    encoder_states = torch.randn(2, 5, config.hidden_size)
    outputs = []
    for model in (ours, reference):
        with torch.no_grad():
            first = model(
                **{k: v[:, :4] for k, v in inputs.items()},
                encoder_hidden_states=encoder_states,
                use_cache=True,
            )
            second = model(
                input_ids=inputs["input_ids"][:, 4:5],
                attention_mask=inputs["attention_mask"][:, :5],
                encoder_hidden_states=encoder_states,
                past_key_values=first.past_key_values,
                use_cache=True,
            )
        outputs.append((first.logits, second.logits))
    for ours_logits, reference_logits in zip(*outputs):
        assert torch.max(torch.abs(ours_logits - reference_logits)) <= OUTPUT_TOLERANCE


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_relative_positions_with_a_cache_equal_a_full_recompute_unlike_the_reference(kind, tmp_path):
    # The reference puts every query of a cached call at the last position, so a
    # multi-token prompt run with use_cache=True gets wrong relative distances.
    config = tiny_config(is_decoder=True, position_embedding_type=kind)
    reference = reference_model("ForCausalLM", config)
    reference.save_pretrained(tmp_path)
    ours = xlmr_torch.XLMRobertaForCausalLM.from_pretrained(tmp_path).eval()
    input_ids = torch.as_tensor(example_inputs("ForCausalLM", config)["input_ids"][:1])
    with torch.no_grad():
        full = reference(input_ids=input_ids, use_cache=False).logits
        ours_cached = ours(input_ids=input_ids, use_cache=True).logits
        reference_cached = reference(input_ids=input_ids, use_cache=True).logits
    assert torch.max(torch.abs(ours_cached - full)) <= OUTPUT_TOLERANCE
    assert torch.max(torch.abs(reference_cached - full)) > 1e-3


def test_too_long_input_is_a_clear_error_where_the_reference_raises_a_bare_index_error(tmp_path):
    config = tiny_config()
    reference = reference_model("ForMaskedLM", config)
    reference.save_pretrained(tmp_path)
    ours = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    too_long = torch.full((1, config.max_sequence_length + 1), 5)
    with pytest.raises(IndexError):
        reference(input_ids=too_long)
    with pytest.raises(ValueError, match="longer than the position table"):
        ours(input_ids=too_long)
    ours(input_ids=too_long[:, :-1])  # the longest input that fits runs
