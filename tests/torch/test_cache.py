"""The key/value cache gives the same logits as recomputing the whole sequence."""

from __future__ import annotations

import pytest
import torch

from .conftest import HIDDEN, LAYERS, POSITION_KINDS, build, decoder_config, token_ids


def _decoder(position_kind, cross_attention):
    config = decoder_config(position_embedding_type=position_kind, add_cross_attention=cross_attention)
    return build("XLMRobertaForCausalLM", config)


def _cross_inputs(cross_attention):
    if not cross_attention:
        return {}
    return {
        "encoder_hidden_states": torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(3)),
        "encoder_attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    }


@pytest.mark.parametrize("cross_attention", [False, True], ids=["self-only", "cross"])
@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_token_by_token_decoding_matches_full_recompute(position_kind, cross_attention):
    model = _decoder(position_kind, cross_attention)
    ids = token_ids(2, 8)
    extra = _cross_inputs(cross_attention)
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False, **extra).logits
        out = model(input_ids=ids[:, :3], use_cache=True, **extra)
        steps = [out.logits]
        for t in range(3, 8):
            out = model(input_ids=ids[:, t : t + 1], past_key_values=out.past_key_values, **extra)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_several_new_tokens_after_a_cache_match_full_recompute(position_kind):
    model = _decoder(position_kind, cross_attention=True)
    ids = token_ids(2, 9)
    extra = _cross_inputs(True)
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False, **extra).logits
        first = model(input_ids=ids[:, :4], **extra)
        rest = model(input_ids=ids[:, 4:], past_key_values=first.past_key_values, **extra)
    torch.testing.assert_close(rest.logits, full[:, 4:], atol=1e-5, rtol=0)


def test_cache_with_an_attention_mask_over_past_and_new_tokens():
    model = _decoder("absolute", cross_attention=False)
    ids = token_ids(2, 6)
    mask = torch.ones_like(ids)
    mask[0, 1] = 0  # a hole the cached steps must keep hiding
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        first = model(input_ids=ids[:, :4], attention_mask=mask[:, :4])
        rest = model(input_ids=ids[:, 4:], attention_mask=mask, past_key_values=first.past_key_values)
    torch.testing.assert_close(rest.logits, full[:, 4:], atol=1e-5, rtol=0)


def test_the_cache_grows_by_the_new_tokens_and_keeps_the_encoder_side():
    model = _decoder("absolute", cross_attention=True)
    ids = token_ids(2, 5)
    extra = _cross_inputs(True)
    with torch.no_grad():
        first = model(input_ids=ids[:, :3], **extra)
        second = model(input_ids=ids[:, 3:], past_key_values=first.past_key_values, **extra)
    assert len(second.past_key_values) == LAYERS
    for before, after in zip(first.past_key_values, second.past_key_values):
        assert before[0].shape[2] == 3 and after[0].shape[2] == 5
        assert after[2] is before[2] and after[3] is before[3]
        torch.testing.assert_close(after[0][:, :, :3], before[0])


def test_use_cache_false_returns_no_cache():
    model = _decoder("absolute", cross_attention=False)
    with torch.no_grad():
        assert "past_key_values" not in model(input_ids=token_ids(), use_cache=False)


def test_labels_switch_the_cache_off():
    model = _decoder("absolute", cross_attention=False)
    ids = token_ids()
    assert "past_key_values" not in model(input_ids=ids, labels=ids)


def test_the_base_model_decodes_with_a_cache_too():
    model = build("XLMRobertaModel", decoder_config(add_cross_attention=False))
    ids = token_ids(1, 5)
    with torch.no_grad():
        full = model(input_ids=ids).last_hidden_state
        first = model(input_ids=ids[:, :2])
        rest = model(input_ids=ids[:, 2:], past_key_values=first.past_key_values)
    torch.testing.assert_close(rest.last_hidden_state, full[:, 2:], atol=1e-5, rtol=0)
