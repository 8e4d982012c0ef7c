"""Our TF models against the reference implementation (transformers 4.57.6).

The reference TF port needs Keras 2 (`tf_keras`), which must never reach our Keras 3
code, so every reference model runs in one subprocess with `TF_USE_LEGACY_KERAS=1`. It
writes checkpoints (the reference's own `tf_model.h5`, and safetensors of reference
PyTorch models) and the outputs it computed; the tests load those here with `xlmr_tf`.

Where the reference TF port has the feature (absolute positions, every head) our TF
models read its `tf_model.h5` and give its numbers. Where it lacks one (relative position
embeddings: silently ignored; `head_mask`: NotImplementedError) our TF models match the
reference PyTorch models instead, which have it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tf_keras")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("torch")

import xlmr_tf  # noqa: E402
from tests.cross.harness import HEADS, OUTPUT_TOLERANCE, max_abs_diff  # noqa: E402

CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    type_vocab_size=2,
    layer_norm_eps=1e-5,
    num_labels=3,
)
RELATIVE_KINDS = ("relative_key", "relative_key_query")

# Runs with TF_USE_LEGACY_KERAS=1: the reference TF and PyTorch models, never ours.
REFERENCE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import torch
    import transformers
    from xlmr_core.checkpoint import save_checkpoint
    from xlmr_core import XLMRobertaConfig

    out, base = Path(sys.argv[1]), json.loads(sys.argv[2])
    rng = np.random.default_rng(0)

    def flat(result):
        arrays = {}
        for key, value in result.items():
            if key == "past_key_values" or value is None:
                continue
            if isinstance(value, (tuple, list)):
                arrays.update({f"{key}.{i}": np.asarray(v) for i, v in enumerate(value)})
            else:
                arrays[key] = np.asarray(value)
        return arrays

    def inputs_for(head):
        batch, length, choices = 2, 6, 3
        shape = (batch, choices, length) if head == "ForMultipleChoice" else (batch, length)
        ids = rng.integers(3, base["vocab_size"], shape)
        mask = np.ones_like(ids)
        ids[1, ..., -2:], mask[1, ..., -2:] = 1, 0  # the second row is padded
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": rng.integers(0, 2, shape)}
        if head in ("ForMaskedLM", "ForCausalLM"):
            inputs["labels"] = np.where(mask == 1, rng.integers(0, base["vocab_size"], shape), -100)
        elif head in ("ForSequenceClassification", "ForMultipleChoice"):
            inputs["labels"] = np.array([0, 2])
        elif head == "ForTokenClassification":
            inputs["labels"] = np.where(mask == 1, rng.integers(0, 3, shape), -100)
        elif head == "ForQuestionAnswering":
            inputs["start_positions"], inputs["end_positions"] = np.array([1, 0]), np.array([3, 2])
        if head == "ForCausalLM":
            encoder_states = rng.standard_normal((batch, 4, base["hidden_size"]))
            inputs["encoder_hidden_states"] = encoder_states.astype("f4")
            inputs["encoder_attention_mask"] = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
        return inputs

    def config_for(head, **extra):
        values = dict(base, **extra)
        if head == "ForCausalLM":
            values.update(is_decoder=True, add_cross_attention=True)
        if head == "ForQuestionAnswering":
            values["num_labels"] = 2
        return values

    facts = {}
    # 1. Every reference TF head: random weights, outputs, and its own tf_model.h5.
    for head in sys.argv[3].split(","):
        config = transformers.XLMRobertaConfig(**config_for(head))
        model = getattr(transformers, f"TFXLMRoberta{head}")(config)
        inputs = inputs_for(head)
        model(inputs)
        for variable in model.weights:
            variable.assign(variable + 0.05 * rng.standard_normal(variable.shape).astype("f4"))
        options = {"use_cache": False} if head == "ForCausalLM" else {}
        result = model(inputs, output_attentions=True, output_hidden_states=True, **options)
        model.save_pretrained(out / head)
        np.savez(out / head / "inputs.npz", **inputs)
        np.savez(out / head / "outputs.npz", **flat(result))

    # 2. Relative positions and head_mask, which only the reference PyTorch port has.
    def torch_model(kind):
        torch.manual_seed(0)
        model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**config_for("Model",
            position_embedding_type=kind, attn_implementation="eager"))).eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        return model

    inputs = inputs_for("Model")
    head_mask = np.array([[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 1.0]], dtype="f4")
    np.savez(out / "torch_inputs.npz", head_mask=head_mask, **inputs)
    torch_inputs = {key: torch.from_numpy(value) for key, value in inputs.items()}
    for kind in ("absolute",) + tuple(sys.argv[4].split(",")):
        model = torch_model(kind)
        state = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
        config = XLMRobertaConfig(**config_for("Model", position_embedding_type=kind))
        save_checkpoint(out / f"torch-{kind}", state, config)
        with torch.no_grad():
            result = model(**torch_inputs, output_attentions=True, output_hidden_states=True)
            masked = model(**torch_inputs, head_mask=torch.from_numpy(head_mask), output_attentions=True)
        np.savez(out / f"torch-{kind}" / "outputs.npz", **flat(result))
        np.savez(out / f"torch-{kind}" / "head_mask_outputs.npz", **flat(masked))
        # What the reference TF port makes of the same checkpoint.
        model.save_pretrained(out / f"torch-{kind}-reference")
        reference_tf = transformers.TFXLMRobertaModel.from_pretrained(
            out / f"torch-{kind}-reference", from_pt=True)
        ref_result = reference_tf(inputs, output_attentions=True, output_hidden_states=True)
        facts[f"reference_tf_{kind}_diff"] = float(
            np.abs(ref_result.last_hidden_state.numpy() - result.last_hidden_state.numpy()).max())
        try:
            reference_tf(inputs, head_mask=head_mask)
            facts["reference_tf_head_mask"] = "ran"
        except NotImplementedError:
            facts["reference_tf_head_mask"] = "NotImplementedError"
    (out / "facts.json").write_text(json.dumps(facts))
    """
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Run the reference once for the whole module; returns the folder it wrote."""
    out = tmp_path_factory.mktemp("reference")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", TRANSFORMERS_VERBOSITY="error")
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    args = [sys.executable, "-c", REFERENCE_SCRIPT, str(out), json.dumps(CONFIG), ",".join(HEADS)]
    done = subprocess.run([*args, ",".join(RELATIVE_KINDS)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"reference subprocess failed:\n{done.stderr[-4000:]}")
    return out


def _load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _ours(model, inputs, **options) -> dict[str, np.ndarray]:
    result = model({k: tf.constant(v) for k, v in inputs.items()}, return_dict=True, **options)
    arrays = {}
    for key, value in result.items():
        if isinstance(value, tuple):
            arrays.update({f"{key}.{i}": np.asarray(v) for i, v in enumerate(value)})
        else:
            arrays[key] = np.asarray(value)
    return arrays


def _assert_close(ours: dict, theirs: dict) -> None:
    # The reference TF returns its loss with shape (1,), or per example for some heads
    # ((batch,), unreduced); ours is the mean, a scalar.
    theirs = {k: (v.mean(dtype=np.float64) if k == "loss" else v) for k, v in theirs.items()}
    # Compare what the reference returned (its multiple-choice head drops hidden states and
    # attentions even when asked); ours must return at least that.
    assert theirs.keys() <= ours.keys(), (sorted(theirs), sorted(ours))
    diffs = max_abs_diff({k: ours[k] for k in theirs}, theirs)
    assert max(diffs.values()) <= OUTPUT_TOLERANCE, diffs


@pytest.mark.parametrize("head", HEADS)
def test_reads_reference_tf_h5_and_matches_its_outputs(reference, head):
    directory = reference / head
    assert (directory / "tf_model.h5").is_file() and not (directory / "model.safetensors").exists()
    model, info = getattr(xlmr_tf, f"TFXLMRoberta{head}").from_pretrained(directory, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    options = {"use_cache": False} if head == "ForCausalLM" else {}
    ours = _ours(
        model,
        _load_npz(directory / "inputs.npz"),
        output_attentions=True,
        output_hidden_states=True,
        **options,
    )
    _assert_close(ours, _load_npz(directory / "outputs.npz"))


@pytest.mark.parametrize("kind", RELATIVE_KINDS)
def test_relative_positions_match_reference_torch_where_reference_tf_ignores_them(reference, kind):
    facts = json.loads((reference / "facts.json").read_text())
    assert facts[f"reference_tf_{kind}_diff"] > 1e-2, (
        "the reference TF port is expected to ignore relative positions"
    )
    assert facts["reference_tf_absolute_diff"] <= OUTPUT_TOLERANCE  # the comparison itself is sound
    model = xlmr_tf.TFXLMRobertaModel.from_pretrained(reference / f"torch-{kind}")
    inputs = _load_npz(reference / "torch_inputs.npz")
    inputs.pop("head_mask")
    ours = _ours(model, inputs, output_attentions=True, output_hidden_states=True)
    _assert_close(ours, _load_npz(reference / f"torch-{kind}" / "outputs.npz"))


@pytest.mark.parametrize("kind", ("absolute", *RELATIVE_KINDS))
def test_head_mask_matches_reference_torch_where_reference_tf_refuses_it(reference, kind):
    facts = json.loads((reference / "facts.json").read_text())
    assert facts["reference_tf_head_mask"] == "NotImplementedError"
    model = xlmr_tf.TFXLMRobertaModel.from_pretrained(reference / f"torch-{kind}")
    inputs = _load_npz(reference / "torch_inputs.npz")
    head_mask = tf.constant(inputs.pop("head_mask"))
    ours = _ours(model, inputs, head_mask=head_mask, output_attentions=True)
    _assert_close(ours, _load_npz(reference / f"torch-{kind}" / "head_mask_outputs.npz"))
