"""save_pretrained / from_pretrained in the shared checkpoint format."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import xlmr_torch
from xlmr_core.checkpoint import load_checkpoint, save_checkpoint

from .conftest import HEADS, build, inputs_for, tiny_config, token_ids


def _randomise(model):
    """Perturb every weight so that a tensor left at its initial value would show."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _outputs(model, head):
    with torch.no_grad():
        out = model(**inputs_for(head), return_dict=True)
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("head", HEADS)
def test_save_then_load_gives_the_same_model(head, tmp_path):
    model = _randomise(build(head))
    model.save_pretrained(tmp_path)
    loaded, info = getattr(xlmr_torch, head).from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    expected = _outputs(model, head)
    for name, value in _outputs(loaded, head).items():
        torch.testing.assert_close(value, expected[name])


def test_saved_files_use_the_canonical_names_once(tmp_path):
    model = build("XLMRobertaForMaskedLM")
    model.save_pretrained(tmp_path)
    saved = load_checkpoint(tmp_path)
    assert "lm_head.bias" in saved and "roberta.embeddings.word_embeddings.weight" in saved
    assert "lm_head.decoder.weight" not in saved and "lm_head.decoder.bias" not in saved
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForMaskedLM"]
    assert config["hidden_size"] == model.config.hidden_size


def test_an_untied_lm_head_saves_and_loads_its_own_matrix(tmp_path):
    model = _randomise(build("XLMRobertaForMaskedLM", tie_word_embeddings=False))
    model.save_pretrained(tmp_path)
    assert "lm_head.decoder.weight" in load_checkpoint(tmp_path)
    loaded = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    assert torch.equal(loaded.lm_head.decoder.weight, model.lm_head.decoder.weight)
    assert loaded.lm_head.decoder.weight is not loaded.roberta.embeddings.word_embeddings.weight


def test_loading_keeps_the_lm_head_tied(tmp_path):
    _randomise(build("XLMRobertaForMaskedLM")).save_pretrained(tmp_path)
    loaded = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    assert loaded.lm_head.decoder.weight is loaded.roberta.embeddings.word_embeddings.weight


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_from_pretrained_casts_to_the_requested_dtype(dtype, tmp_path):
    model = _randomise(build("XLMRobertaForSequenceClassification"))
    model.save_pretrained(tmp_path)
    loaded = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, dtype=dtype)
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.to(dtype)), name
    with torch.no_grad():
        assert loaded(**inputs_for("XLMRobertaForSequenceClassification")).logits.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_save_and_load_exactly(dtype, tmp_path):
    model = _randomise(build("XLMRobertaForMaskedLM")).to(dtype)
    model.save_pretrained(tmp_path)
    assert {a.dtype.name for a in load_checkpoint(tmp_path).values()} == {str(dtype).split(".")[-1]}
    loaded = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, dtype=dtype)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_half_precision_checkpoint_loads_as_float32_by_default(tmp_path):
    model = _randomise(build("XLMRobertaModel")).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    loaded = xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.float()), name


def test_sharded_save_round_trips(tmp_path):
    model = _randomise(build("XLMRobertaForMaskedLM"))
    model.save_pretrained(tmp_path, max_shard_size=20_000)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    loaded, info = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_base_checkpoint_loads_into_a_head_and_reports_the_head_missing(tmp_path, caplog):
    base = _randomise(build("XLMRobertaModel"))
    base.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="xlmr_torch.modeling"):
        head, info = xlmr_torch.XLMRobertaForTokenClassification.from_pretrained(
            tmp_path, output_loading_info=True
        )
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert sorted(info["unexpected_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert "classifier.weight" in caplog.text and "pooler.dense.weight" in caplog.text
    for name, tensor in base.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(head.roberta.state_dict()[name], tensor), name


def test_a_head_checkpoint_loads_into_the_base_model_and_reports_the_head_unexpected(tmp_path, caplog):
    head = _randomise(build("XLMRobertaForMaskedLM"))
    head.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="xlmr_torch.modeling"):
        base, info = xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert all(key.startswith("lm_head.") for key in info["unexpected_keys"])
    assert len(info["unexpected_keys"]) == 5  # dense w/b, layer_norm w/b, bias
    assert "lm_head.dense.weight" in caplog.text
    for name, tensor in head.roberta.state_dict().items():
        assert torch.equal(base.state_dict()[name], tensor), name


def test_a_reference_style_checkpoint_with_aliases_and_buffers_loads_cleanly(tmp_path):
    """Published `pytorch_model.bin` files repeat the tied tensors and carry position_ids."""
    model = _randomise(build("XLMRobertaForMaskedLM"))
    state = dict(model.state_dict())  # includes lm_head.decoder.weight / .bias
    state["roberta.embeddings.position_ids"] = torch.arange(40)[None]
    torch.save({k: v.clone() for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path)
    loaded, info = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_decoder_matrix_that_disagrees_with_the_tied_embeddings_is_reported(tmp_path):
    model = _randomise(build("XLMRobertaForMaskedLM"))
    state = dict(model.canonical_state())
    state["lm_head.decoder.weight"] = np.zeros_like(state["roberta.embeddings.word_embeddings.weight"])
    save_checkpoint(tmp_path, state, model.config)
    _, info = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == ["lm_head.decoder.weight"]


def test_a_shape_mismatch_names_the_key(tmp_path):
    build("XLMRobertaForSequenceClassification", num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"classifier\.out_proj\.weight.*\(3, 32\).*\(5, 32\)"):
        xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=5)


def test_config_overrides_and_an_explicit_config_reach_the_model(tmp_path):
    build("XLMRobertaForSequenceClassification").save_pretrained(tmp_path)
    model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, hidden_dropout_prob=0.3)
    assert model.config.hidden_dropout_prob == 0.3
    config = tiny_config(output_hidden_states=True)
    model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, config=config)
    with torch.no_grad():
        assert "hidden_states" in model(input_ids=token_ids())


def test_an_unsupported_dtype_is_rejected(tmp_path):
    build("XLMRobertaModel").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path, dtype=torch.int8)


def test_a_directory_without_weights_fails_clearly(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=str(tmp_path.name)):
        xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path)


def test_the_reference_spelling_torch_dtype_is_accepted(tmp_path):
    build("XLMRobertaModel").save_pretrained(tmp_path)
    model = xlmr_torch.XLMRobertaModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not hasattr(model.config, "torch_dtype")


@pytest.mark.parametrize("head", ["XLMRobertaForSequenceClassification", "XLMRobertaForMaskedLM"])
def test_weights_missing_from_the_checkpoint_get_the_reference_initialisation(head, tmp_path):
    # Loading skips random initialisation of what the checkpoint holds; what it lacks must
    # still be initialised (normal(0, initializer_range) weights, zero biases), not left as
    # whatever the fresh memory held.
    _randomise(build("XLMRobertaModel")).save_pretrained(tmp_path)
    loaded, info = getattr(xlmr_torch, head).from_pretrained(tmp_path, output_loading_info=True)
    params = dict(loaded.named_parameters(remove_duplicate=False))
    assert info["missing_keys"]
    for name in info["missing_keys"]:
        value = params[name]
        if name.endswith("bias"):
            assert torch.count_nonzero(value) == 0, name
        elif "layer_norm" in name:
            assert torch.all(value == 1), name
        else:
            assert value.std().item() == pytest.approx(loaded.config.initializer_range, rel=0.3), name


def test_training_a_loaded_model_never_writes_to_the_checkpoint_file(tmp_path):
    _randomise(build("XLMRobertaForMaskedLM")).save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    ids = token_ids()
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    assert (tmp_path / "model.safetensors").read_bytes() == before
    reloaded = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path)
    assert not torch.equal(reloaded.lm_head.dense.weight, model.lm_head.dense.weight)
