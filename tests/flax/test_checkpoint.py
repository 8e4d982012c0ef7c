"""Checkpoint IO of the Flax models: the shared format, the reference msgpack, loading reports."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from tests.flax.conftest import model_class, token_batch
from xlmr_core.checkpoint import CheckpointError, load_checkpoint


def outputs_equal(a, b, ids, mask):
    for x, y in zip(jax.tree_util.tree_leaves(a(ids, mask)), jax.tree_util.tree_leaves(b(ids, mask))):
        np.testing.assert_array_equal(x, y)


def test_save_then_load_gives_the_same_model(make_model, tmp_path):
    model = make_model("ForMaskedLM", position_embedding_type="relative_key")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForMaskedLM"]
    assert "roberta.encoder.layer.0.attention.self.query.weight" in load_checkpoint(tmp_path)
    loaded, info = model_class("ForMaskedLM").from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    outputs_equal(model, loaded, *token_batch(model.config))


def test_linear_weights_are_saved_in_the_canonical_out_in_layout(make_model, tmp_path):
    model = make_model("ForSequenceClassification")
    model.save_pretrained(tmp_path)
    state = load_checkpoint(tmp_path)
    kernel = np.asarray(model.params["roberta"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"])
    assert kernel.shape == (32, 37)
    np.testing.assert_array_equal(state["roberta.encoder.layer.0.intermediate.dense.weight"], kernel.T)


def test_a_base_checkpoint_loads_into_a_head_reporting_the_head_missing(make_model, tmp_path):
    base = make_model("Model")
    base.save_pretrained(tmp_path)
    head, info = model_class("ForTokenClassification").from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert sorted(info["unexpected_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    np.testing.assert_array_equal(
        head.params["roberta"]["encoder"]["layer"]["1"]["output"]["dense"]["kernel"],
        base.params["encoder"]["layer"]["1"]["output"]["dense"]["kernel"],
    )


def test_a_head_checkpoint_loads_into_the_base_model_with_its_weights(make_model, tmp_path):
    head = make_model("ForMaskedLM")
    head.save_pretrained(tmp_path)
    base, info = model_class("Model").from_pretrained(tmp_path, output_loading_info=True)
    assert "lm_head.bias" in info["unexpected_keys"] and "pooler.dense.weight" in info["missing_keys"]
    ids, mask = token_batch(head.config)
    np.testing.assert_allclose(
        base(ids, mask).last_hidden_state,
        head(ids, mask, output_hidden_states=True).hidden_states[-1],
        atol=1e-6,
    )


def test_a_shape_mismatch_fails_naming_the_key(make_model, tmp_path):
    make_model("ForSequenceClassification").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"classifier\.out_proj\.weight.*num_labels"):
        model_class("ForSequenceClassification").from_pretrained(tmp_path, num_labels=5)


def test_bfloat16_parameters_load_and_save_as_bfloat16(make_model, tmp_path):
    model = make_model("ForQuestionAnswering")
    model.save_pretrained(tmp_path / "f32")
    low = model_class("ForQuestionAnswering").from_pretrained(
        tmp_path / "f32", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16
    )
    assert {x.dtype for x in jax.tree_util.tree_leaves(low.params)} == {jnp.dtype(jnp.bfloat16)}
    low.save_pretrained(tmp_path / "bf16")
    state = load_checkpoint(tmp_path / "bf16")
    assert str(state["qa_outputs.weight"].dtype) == "bfloat16"


def write_msgpack(model, directory):
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    (directory / "flax_model.msgpack").write_bytes(serialization.to_bytes(model.params))


def test_reads_a_flax_msgpack_when_there_is_no_safetensors_file(make_model, tmp_path):
    model = make_model("ForMultipleChoice")
    write_msgpack(model, tmp_path)
    loaded, info = model_class("ForMultipleChoice").from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    outputs_equal(model, loaded, *token_batch(model.config, choices=2))


def test_safetensors_wins_over_msgpack(make_model, tmp_path):
    write_msgpack(make_model("ForTokenClassification", seed=1), tmp_path)
    model = make_model("ForTokenClassification")
    model.save_pretrained(tmp_path)
    outputs_equal(
        model, model_class("ForTokenClassification").from_pretrained(tmp_path), *token_batch(model.config)
    )


def test_a_corrupt_msgpack_is_a_clear_error(make_model, tmp_path):
    write_msgpack(make_model("Model"), tmp_path)
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="flax_model.msgpack"):
        model_class("Model").from_pretrained(tmp_path)


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_class("Model").from_pretrained(tmp_path / "nowhere")


_LOAD_BIN_WITHOUT_TORCH = """
import sys
import numpy as np
import xlmr_flax
model = xlmr_flax.FlaxXLMRobertaForMaskedLM.from_pretrained(sys.argv[1])
np.save(sys.argv[2], np.asarray(model(np.load(sys.argv[3]), np.load(sys.argv[4])).logits))
assert "torch" not in sys.modules, "reading pytorch_model.bin imported torch"
"""


def test_a_pytorch_bin_loads_without_torch(make_model, tmp_path):
    import subprocess
    import sys

    from xlmr_core.checkpoint import write_weights

    model = make_model("ForMaskedLM")
    (tmp_path / "bin").mkdir()
    model.config.copy(architectures=["XLMRobertaForMaskedLM"]).save_pretrained(tmp_path / "bin")
    write_weights(tmp_path / "bin", model.canonical_state(), "torch")
    ids, mask = token_batch(model.config)
    np.save(tmp_path / "ids.npy", np.asarray(ids))
    np.save(tmp_path / "mask.npy", np.asarray(mask))
    args = [tmp_path / "bin", tmp_path / "logits.npy", tmp_path / "ids.npy", tmp_path / "mask.npy"]
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_BIN_WITHOUT_TORCH, *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), np.asarray(model(ids, mask).logits))
