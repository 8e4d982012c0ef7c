"""Gradient checkpointing and the labelled-positions masked-LM path train like the plain paths."""

from __future__ import annotations

import pytest
import torch

from .conftest import HEADS, POSITION_KINDS, VOCAB, build, inputs_for, tiny_config, token_ids


def _labels_for(head, inputs):
    ids = inputs["input_ids"]
    if head in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM", "XLMRobertaForTokenClassification"):
        return {"labels": ids % 2}
    if head == "XLMRobertaForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}
    if head == "XLMRobertaModel":
        return {}
    return {"labels": torch.tensor([0, 1])}


def _loss_and_grads(model, inputs, seed):
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(**inputs)
    loss = out["loss"] if "loss" in out else out.last_hidden_state.pow(2).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head", HEADS)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(head):
    dropout = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    model = build(head, **dropout).train()
    inputs = inputs_for(head)
    inputs.update(_labels_for(head, inputs))
    plain_loss, plain_grads = _loss_and_grads(model, inputs, seed=5)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model, inputs, seed=5)
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    assert checkpointed_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(checkpointed_grads[name], plain_grads[name], msg=name)


def test_gradient_checkpointing_recomputes_layers_in_the_backward_pass():
    model = build("XLMRobertaForMaskedLM").train()
    calls = []
    model.roberta.encoder.layer[0].register_forward_pre_hook(lambda *args: calls.append(1))
    ids = token_ids()
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 1
    calls.clear()
    model.gradient_checkpointing_enable()
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 2
    calls.clear()
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 1


def test_gradient_checkpointing_is_off_in_eval_mode():
    model = build("XLMRobertaForMaskedLM")
    model.gradient_checkpointing_enable()
    calls = []
    model.roberta.encoder.layer[0].register_forward_pre_hook(lambda *args: calls.append(1))
    ids = token_ids()
    model(input_ids=ids, labels=ids).loss.backward()
    assert len(calls) == 1


def test_gradient_checkpointing_turns_the_cache_off_in_training():
    model = build("XLMRobertaForCausalLM").train()
    model.gradient_checkpointing_enable()
    assert "past_key_values" not in model(input_ids=token_ids(), use_cache=True)


def _mlm_batch():
    ids = token_ids(3, 10)
    generator = torch.Generator().manual_seed(7)
    chosen = torch.rand(ids.shape, generator=generator) < 0.3
    chosen[0, 0] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = ids.masked_fill(chosen, VOCAB - 1)
    return inputs, labels


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_labelled_positions_path_gives_the_full_path_loss_and_gradients(position_kind):
    model = build("XLMRobertaForMaskedLM", position_embedding_type=position_kind)
    inputs, labels = _mlm_batch()
    full = model(input_ids=inputs, labels=labels)
    full.loss.backward()
    full_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    sparse = model(input_ids=inputs, labels=labels, labelled_positions_only=True)
    sparse.loss.backward()
    torch.testing.assert_close(sparse.loss, full.loss)
    sparse_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert sparse_grads.keys() == full_grads.keys()
    for name, grad in sparse_grads.items():
        torch.testing.assert_close(grad, full_grads[name], msg=name)


def test_labelled_positions_path_returns_only_the_labelled_rows():
    model = build("XLMRobertaForMaskedLM")
    inputs, labels = _mlm_batch()
    with torch.no_grad():
        full = model(input_ids=inputs, labels=labels)
        sparse = model(input_ids=inputs, labels=labels, labelled_positions_only=True)
    positions = torch.nonzero(labels.reshape(-1) != -100).squeeze(-1)
    assert torch.equal(sparse.masked_positions, positions)
    assert sparse.logits.shape == (positions.numel(), VOCAB)
    torch.testing.assert_close(sparse.logits, full.logits.reshape(-1, VOCAB)[positions])
    assert list(sparse) == ["loss", "logits", "masked_positions"]


def test_labelled_positions_path_in_tuple_form_ends_with_the_positions():
    model = build("XLMRobertaForMaskedLM")
    inputs, labels = _mlm_batch()
    loss, logits, positions = model(
        input_ids=inputs, labels=labels, labelled_positions_only=True, return_dict=False
    )
    assert positions.shape == (logits.shape[0],)


def test_labelled_positions_path_needs_labels():
    model = build("XLMRobertaForMaskedLM")
    with pytest.raises(ValueError, match="labelled_positions_only"):
        model(input_ids=token_ids(), labelled_positions_only=True)


def test_a_training_step_lowers_the_loss():
    model = build("XLMRobertaForSequenceClassification", tiny_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, labels = token_ids(4, 6), torch.tensor([0, 1, 1, 0])
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
