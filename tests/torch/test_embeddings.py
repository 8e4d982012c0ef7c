"""Position ids, token types and the inputs_embeds path."""

from __future__ import annotations

import pytest
import torch

from xlmr_torch.embeddings import position_ids_from_input_ids, position_ids_from_inputs_embeds

from .conftest import PAD, POSITION_KINDS, build, token_ids


def test_positions_count_real_tokens_from_pad_plus_one_and_pads_keep_the_pad_index():
    ids = torch.tensor([[0, 7, 8, 2, PAD, PAD], [PAD, PAD, 0, 9, 2, 5]])
    expected = torch.tensor([[2, 3, 4, 5, 1, 1], [1, 1, 2, 3, 4, 5]])
    assert torch.equal(position_ids_from_input_ids(ids, PAD), expected)


def test_positions_continue_after_the_cached_length():
    ids = torch.tensor([[7, 8, PAD]])
    assert torch.equal(position_ids_from_input_ids(ids, PAD, past_length=4), torch.tensor([[6, 7, 1]]))


def test_positions_for_inputs_embeds_are_sequential_from_pad_plus_one():
    embeds = torch.zeros(2, 4, 8)
    assert torch.equal(position_ids_from_inputs_embeds(embeds, PAD), torch.tensor([[2, 3, 4, 5]] * 2))
    assert torch.equal(
        position_ids_from_inputs_embeds(embeds, PAD, past_length=3)[0], torch.tensor([5, 6, 7, 8])
    )


def _hidden(model, **inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def test_derived_positions_equal_explicit_ones():
    model = build("XLMRobertaModel")
    ids = torch.cat([token_ids(2, 5), torch.full((2, 2), PAD)], dim=1)
    mask = (ids != PAD).long()
    explicit = position_ids_from_input_ids(ids, PAD)
    torch.testing.assert_close(
        _hidden(model, input_ids=ids, attention_mask=mask),
        _hidden(model, input_ids=ids, attention_mask=mask, position_ids=explicit),
    )
    shifted = _hidden(model, input_ids=ids, attention_mask=mask, position_ids=explicit + 1)
    assert not torch.allclose(shifted, _hidden(model, input_ids=ids, attention_mask=mask))


def test_position_ids_broadcast_over_the_batch():
    model = build("XLMRobertaModel")
    ids = token_ids(2, 5)
    positions = torch.arange(2, 7)
    torch.testing.assert_close(
        _hidden(model, input_ids=ids, position_ids=positions[None]),
        _hidden(model, input_ids=ids, position_ids=positions.expand(2, 5)),
    )


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_inputs_embeds_give_the_same_result_as_input_ids(position_kind):
    model = build("XLMRobertaForMaskedLM", position_embedding_type=position_kind)
    ids = token_ids(2, 6)
    embeds = model.roberta.embeddings.word_embeddings(ids).detach()
    with torch.no_grad():
        from_ids = model(input_ids=ids).logits
        from_embeds = model(inputs_embeds=embeds).logits
    torch.testing.assert_close(from_embeds, from_ids)


def test_token_type_ids_default_to_zeros():
    model = build("XLMRobertaModel")
    ids = token_ids()
    torch.testing.assert_close(
        _hidden(model, input_ids=ids), _hidden(model, input_ids=ids, token_type_ids=torch.zeros_like(ids))
    )
    assert not torch.allclose(
        _hidden(model, input_ids=ids), _hidden(model, input_ids=ids, token_type_ids=torch.ones_like(ids))
    )


def test_int32_ids_and_boolean_masks_are_accepted():
    model = build("XLMRobertaModel")
    ids = token_ids(2, 6)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    torch.testing.assert_close(
        _hidden(model, input_ids=ids.int(), attention_mask=mask.bool()),
        _hidden(model, input_ids=ids, attention_mask=mask),
    )
