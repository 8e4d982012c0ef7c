"""Parameter names, pooler placement, weight tying and initialisation."""

from __future__ import annotations

import pytest
import torch

import xlmr_torch

from .conftest import HEADS, POSITION_KINDS, build, tiny_config


def _reference_keys(head: str, config) -> list[str]:
    transformers = pytest.importorskip("transformers")
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    return list(getattr(transformers, head)(reference_config).state_dict())


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_state_dict_names_are_the_reference_names(head, position_kind):
    is_decoder = head == "XLMRobertaForCausalLM"
    config = tiny_config(
        position_embedding_type=position_kind, is_decoder=is_decoder, add_cross_attention=is_decoder
    )
    ours = list(build(head, config).state_dict())
    assert ours == _reference_keys(head, config)


@pytest.mark.parametrize("head", HEADS)
def test_only_the_base_model_and_multiple_choice_have_a_pooler(head):
    has_pooler = any(name.startswith(("pooler.", "roberta.pooler.")) for name in build(head).state_dict())
    assert has_pooler == (head in ("XLMRobertaModel", "XLMRobertaForMultipleChoice"))


def test_position_ids_are_not_part_of_the_state():
    assert not [name for name in build("XLMRobertaModel").state_dict() if "position_ids" in name]


@pytest.mark.parametrize("head", ["XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"])
def test_lm_head_shares_the_word_embedding_matrix(head):
    model = build(head)
    assert model.lm_head.decoder.weight is model.roberta.embeddings.word_embeddings.weight
    assert model.lm_head.decoder.bias is model.lm_head.bias


def test_untied_lm_head_has_its_own_matrix():
    model = build("XLMRobertaForMaskedLM", tie_word_embeddings=False)
    assert model.lm_head.decoder.weight is not model.roberta.embeddings.word_embeddings.weight


def test_num_parameters_counts_a_tied_matrix_once():
    tied = build("XLMRobertaForMaskedLM")
    untied = build("XLMRobertaForMaskedLM", tie_word_embeddings=False)
    vocab_matrix = tied.config.vocab_size * tied.config.hidden_size
    assert untied.num_parameters() - tied.num_parameters() == vocab_matrix
    assert tied.num_parameters() == sum(p.numel() for p in set(tied.parameters()))
    embedding_weights = sum(m.weight.numel() for m in tied.modules() if isinstance(m, torch.nn.Embedding))
    assert tied.num_parameters(exclude_embeddings=True) == tied.num_parameters() - embedding_weights


def test_initialisation_follows_the_reference_scheme():
    config = tiny_config(initializer_range=0.02, vocab_size=2000, hidden_size=64)
    model = build("XLMRobertaForMaskedLM", config)
    embeddings = model.roberta.embeddings
    for table in (embeddings.word_embeddings, embeddings.position_embeddings):
        assert torch.all(table.weight[config.pad_token_id] == 0)
    query = model.roberta.encoder.layer[0].attention.self.query
    assert abs(query.weight.std().item() - 0.02) < 0.004
    assert torch.all(query.bias == 0)
    layer_norm = model.roberta.encoder.layer[0].output.LayerNorm
    assert torch.all(layer_norm.weight == 1) and torch.all(layer_norm.bias == 0)
    assert torch.all(model.lm_head.bias == 0)


def test_cross_attention_without_decoder_is_rejected():
    with pytest.raises(ValueError, match="is_decoder"):
        xlmr_torch.XLMRobertaModel(tiny_config(add_cross_attention=True))


def test_config_must_be_an_xlmr_config():
    with pytest.raises(TypeError, match="XLMRobertaConfig"):
        xlmr_torch.XLMRobertaModel({"hidden_size": 32})
