"""Masks, the fused (SDPA) path against the explicit path, head masks, causality."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from .conftest import HIDDEN, PAD, POSITION_KINDS, build, decoder_config, tiny_config, token_ids


def _hidden(model, **inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_padding_does_not_change_the_real_tokens(position_kind):
    model = build("XLMRobertaModel", position_embedding_type=position_kind)
    ids = token_ids(1, 5)
    padded = torch.cat([ids, torch.full((1, 3), PAD)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    alone = _hidden(model, input_ids=ids)
    in_batch = _hidden(model, input_ids=padded, attention_mask=mask)
    torch.testing.assert_close(in_batch[:, :5], alone, atol=1e-5, rtol=1e-5)


def test_masked_keys_are_not_attended():
    model = build("XLMRobertaModel")
    ids = token_ids(1, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    for attention in out.attentions:
        assert torch.all(attention[..., 4:] == 0)


def test_the_padding_mask_matters():
    model = build("XLMRobertaModel")
    ids = token_ids(1, 6)
    full = _hidden(model, input_ids=ids)
    masked = _hidden(model, input_ids=ids, attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0]]))
    assert not torch.allclose(full[:, :4], masked[:, :4], atol=1e-4)


def _explicit_and_fused(model, **inputs):
    """Outputs of the fused path, and of the explicit path (forced by asking for attentions)."""
    with torch.no_grad():
        fused = model(**inputs)
        explicit = model(**inputs, output_attentions=True)
    return fused, explicit


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_fused_path_equals_explicit_path_for_the_encoder(position_kind):
    model = build("XLMRobertaModel", position_embedding_type=position_kind)
    ids = token_ids(2, 9)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    fused, explicit = _explicit_and_fused(model, input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(fused.last_hidden_state, explicit.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.pooler_output, explicit.pooler_output, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_fused_path_equals_explicit_path_for_the_decoder(position_kind):
    model = build("XLMRobertaForCausalLM", decoder_config(position_embedding_type=position_kind))
    ids = token_ids(2, 9)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    encoder_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    fused, explicit = _explicit_and_fused(
        model,
        input_ids=ids,
        attention_mask=mask,
        encoder_hidden_states=torch.randn(2, 5, HIDDEN),
        encoder_attention_mask=encoder_mask,
    )
    torch.testing.assert_close(fused.logits, explicit.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_relative_positions_keep_the_fused_kernel(position_kind, monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = build("XLMRobertaModel", position_embedding_type=position_kind)
    ids = token_ids(2, 6)
    with torch.no_grad():
        model(input_ids=ids)
    assert len(calls) == model.config.num_hidden_layers
    if position_kind != "absolute":
        # The relative scores travel as a float bias, one per head.
        assert all(bias is not None and bias.shape == (2, 4, 6, 6) for bias in calls)
    calls.clear()
    with torch.no_grad():
        model(input_ids=ids, output_attentions=True)
    assert calls == []


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_relative_kinds_use_the_distance_table(position_kind):
    """Relative kinds ignore the absolute table and depend on distance embeddings."""
    model = build("XLMRobertaModel", position_embedding_type=position_kind)
    ids = token_ids(1, 6)
    before = _hidden(model, input_ids=ids)
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.add_(1.0)
    changed_by_absolute = not torch.allclose(before, _hidden(model, input_ids=ids))
    assert changed_by_absolute == (position_kind == "absolute")
    if position_kind != "absolute":
        with torch.no_grad():
            model.encoder.layer[0].attention.self.distance_embedding.weight.mul_(3.0)
        assert not torch.allclose(before, _hidden(model, input_ids=ids))


def test_head_mask_zeroes_the_masked_heads_attention():
    model = build("XLMRobertaModel")
    head_mask = torch.ones(2, 4)
    head_mask[0, 1] = 0
    head_mask[1, 3] = 0
    with torch.no_grad():
        out = model(input_ids=token_ids(), head_mask=head_mask, output_attentions=True)
    assert torch.all(out.attentions[0][:, 1] == 0) and torch.all(out.attentions[1][:, 3] == 0)
    assert torch.all(out.attentions[0][:, 0].sum(-1) > 0.99)


def test_masking_a_head_equals_silencing_its_value_projection():
    model = build("XLMRobertaModel")
    ids = token_ids()
    head_mask = torch.ones(2, 4)
    head_mask[1, 2] = 0
    masked = _hidden(model, input_ids=ids, head_mask=head_mask)
    head_dim = HIDDEN // 4
    with torch.no_grad():
        value = model.encoder.layer[1].attention.self.value
        value.weight[2 * head_dim : 3 * head_dim] = 0
        value.bias[2 * head_dim : 3 * head_dim] = 0
    torch.testing.assert_close(masked, _hidden(model, input_ids=ids), atol=1e-5, rtol=0)


def test_a_one_dimensional_head_mask_applies_to_every_layer():
    model = build("XLMRobertaModel")
    ids = token_ids()
    per_head = torch.tensor([1.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(
        _hidden(model, input_ids=ids, head_mask=per_head),
        _hidden(model, input_ids=ids, head_mask=per_head.expand(2, 4)),
    )


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_the_decoder_does_not_look_ahead(position_kind):
    model = build(
        "XLMRobertaModel", decoder_config(position_embedding_type=position_kind, add_cross_attention=False)
    )
    ids = token_ids(1, 8)
    changed = ids.clone()
    changed[0, 5:] = (changed[0, 5:] + 7) % 90 + 3
    before, after = _hidden(model, input_ids=ids), _hidden(model, input_ids=changed)
    torch.testing.assert_close(before[:, :5], after[:, :5], atol=1e-5, rtol=0)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_the_encoder_looks_both_ways():
    model = build("XLMRobertaModel", tiny_config())
    ids = token_ids(1, 8)
    changed = ids.clone()
    changed[0, 7] = (changed[0, 7] + 7) % 90 + 3
    assert not torch.allclose(_hidden(model, input_ids=ids)[:, 0], _hidden(model, input_ids=changed)[:, 0])


def test_masked_encoder_positions_do_not_reach_the_decoder():
    model = build("XLMRobertaForCausalLM")
    ids = token_ids(1, 4)
    encoder_states = torch.randn(1, 6, HIDDEN)
    altered = encoder_states.clone()
    altered[:, 4:] = torch.randn(1, 2, HIDDEN)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        a = model(input_ids=ids, encoder_hidden_states=encoder_states, encoder_attention_mask=mask).logits
        b = model(input_ids=ids, encoder_hidden_states=altered, encoder_attention_mask=mask).logits
        c = model(input_ids=ids, encoder_hidden_states=altered).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not torch.allclose(a, c)
