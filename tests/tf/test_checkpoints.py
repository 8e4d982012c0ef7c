"""TF checkpoints: the shared safetensors format both ways, loading reports, clear failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from xlmr_core.checkpoint import load_checkpoint

from .conftest import HEADS, build, config_for, inputs_for, token_ids


@pytest.mark.parametrize("head", HEADS)
def test_save_then_load_gives_identical_outputs_and_reports_nothing(head, tmp_path):
    model = build(head, seed=3)
    model.save_pretrained(tmp_path)
    loaded, info = getattr(xlmr_tf, head).from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    inputs = inputs_for(head)
    before, after = model(inputs), loaded(inputs)
    assert before.keys() == after.keys()
    for x, y in zip(tf.nest.flatten(tuple(before.values())), tf.nest.flatten(tuple(after.values()))):
        np.testing.assert_array_equal(x, y)


def test_saved_names_and_layout_are_canonical(tmp_path):
    model = build("TFXLMRobertaForMaskedLM")
    model.save_pretrained(tmp_path)
    state = load_checkpoint(tmp_path)
    kernel = model.roberta.encoder.layer[0].intermediate.dense.kernel.numpy()  # [out, in], as on file
    assert kernel.shape == (model.config.intermediate_size, model.config.hidden_size)
    np.testing.assert_array_equal(state["roberta.encoder.layer.0.intermediate.dense.weight"], kernel)
    assert "lm_head.bias" in state and "lm_head.decoder.weight" not in state  # tied: saved once
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForMaskedLM"]


def test_a_base_checkpoint_loads_into_a_head_which_reports_its_new_weights(tmp_path):
    build("TFXLMRobertaModel").save_pretrained(tmp_path)
    model, info = xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, output_loading_info=True
    )
    assert sorted(info["missing_keys"]) == sorted(
        f"classifier.{m}.{p}" for m in ("dense", "out_proj") for p in ("weight", "bias")
    )
    assert info["unexpected_keys"] == ["pooler.dense.weight", "pooler.dense.bias"]
    assert model.config.num_labels == 3


def test_a_head_checkpoint_loads_into_the_base_model_with_the_head_unexpected(tmp_path):
    head = build("TFXLMRobertaForMaskedLM")
    head.save_pretrained(tmp_path)
    base, info = xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == ["pooler.dense.weight", "pooler.dense.bias"]
    assert {k.split(".")[0] for k in info["unexpected_keys"]} == {"lm_head"}
    ids = token_ids()
    np.testing.assert_array_equal(base(ids).last_hidden_state, head.roberta(input_ids=ids).last_hidden_state)


def test_a_shape_mismatch_names_the_key(tmp_path):
    build("TFXLMRobertaForSequenceClassification").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="classifier.out_proj.weight.*num_labels"):
        xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=5)


def test_an_untied_lm_head_saves_and_loads_its_own_matrix(tmp_path):
    model = build(
        "TFXLMRobertaForMaskedLM", config=config_for("TFXLMRobertaForMaskedLM", tie_word_embeddings=False)
    )
    model.save_pretrained(tmp_path)
    assert "lm_head.decoder.weight" in load_checkpoint(tmp_path)
    loaded = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded(token_ids()).logits, model(token_ids()).logits)


def test_sharded_save_loads_back(tmp_path):
    model = build("TFXLMRobertaModel")
    model.save_pretrained(tmp_path, max_shard_size=20_000)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    loaded = xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded(token_ids()).pooler_output, model(token_ids()).pooler_output)


def test_a_corrupt_tf_h5_is_a_clear_error(tmp_path):
    from xlmr_core.checkpoint import CheckpointError

    build("TFXLMRobertaModel").config.save_pretrained(tmp_path)
    (tmp_path / "tf_model.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(CheckpointError, match="tf_model.h5"):
        xlmr_tf.TFXLMRobertaModel.from_pretrained(tmp_path)


_LOAD_BIN_WITHOUT_TORCH = """
import sys
import numpy as np
import xlmr_tf
model = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(sys.argv[1])
np.save(sys.argv[2], np.asarray(model({"input_ids": np.load(sys.argv[3])}, training=False).logits))
assert "torch" not in sys.modules, "reading pytorch_model.bin imported torch"
"""


def test_a_pytorch_bin_loads_without_torch(tmp_path):
    import subprocess
    import sys

    from xlmr_core.checkpoint import write_weights

    model = build("TFXLMRobertaForMaskedLM", seed=4)
    model.save_pretrained(tmp_path / "saved")
    (tmp_path / "bin").mkdir()
    model.config.copy(architectures=["XLMRobertaForMaskedLM"]).save_pretrained(tmp_path / "bin")
    write_weights(tmp_path / "bin", load_checkpoint(tmp_path / "saved"), "torch")
    np.save(tmp_path / "ids.npy", token_ids())
    args = [tmp_path / "bin", tmp_path / "logits.npy", tmp_path / "ids.npy"]
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_BIN_WITHOUT_TORCH, *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = model({"input_ids": np.load(tmp_path / "ids.npy")}, training=False).logits
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), np.asarray(expected))


def test_weights_the_checkpoint_lacks_start_random_and_the_rest_exactly_loaded(tmp_path):
    base = build("TFXLMRobertaModel", seed=5)
    base.save_pretrained(tmp_path)
    head, info = xlmr_tf.TFXLMRobertaForSequenceClassification.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert "classifier.dense.weight" in info["missing_keys"]
    kernel = np.asarray(head.classifier.dense.kernel)
    assert 0.5 * head.config.initializer_range < kernel.std() < 1.5 * head.config.initializer_range
    assert not np.any(np.asarray(head.classifier.dense.bias))
    loaded = load_checkpoint(tmp_path)
    ours = head.canonical_state()
    name = "embeddings.word_embeddings.weight"
    np.testing.assert_array_equal(ours[f"roberta.{name}"], loaded[name])


def test_large_tables_are_assigned_in_row_blocks_with_the_same_result(tmp_path, monkeypatch):
    from xlmr_tf import checkpoint_io

    model = build("TFXLMRobertaForMaskedLM", seed=6)
    model.save_pretrained(tmp_path)
    monkeypatch.setattr(checkpoint_io, "ASSIGN_BLOCK_BYTES", 1000)  # every table goes in blocks
    loaded = xlmr_tf.TFXLMRobertaForMaskedLM.from_pretrained(tmp_path)
    for name, array in model.canonical_state().items():
        np.testing.assert_array_equal(loaded.canonical_state()[name], array, err_msg=name)
