"""The masked-LM training step's speed path: the tied matrix's lookup gradient taken as sparse
rows (summed by autograd into the head's dense gradient) and the fused AdamW of
`xlmr_torch.training.adamw`. Both must give the plain path's numbers to float32 rounding."""

from __future__ import annotations

import copy

import pytest

from tests.torch.conftest import POSITION_KINDS, VOCAB, build, tiny_config, token_ids

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from xlmr_torch.training import adamw  # noqa: E402

MLM = "XLMRobertaForMaskedLM"


def _batch(seed: int = 3):
    ids = token_ids(3, 9, seed=seed)
    ids[2, 6:] = 1  # padding at the end of one row
    mask = (ids != 1).long()
    labels = ids.clone()
    labels[torch.rand(ids.shape, generator=torch.Generator().manual_seed(seed)) > 0.4] = -100
    labels[mask == 0] = -100
    labels[0, 1] = ids[0, 1]  # at least one labelled position
    return ids, mask, labels


def _plain_loss(model, ids, mask, labels):
    """The same loss composed from the parts, outside `ForMaskedLM.forward`: a dense lookup gradient."""
    hidden = model.roberta(ids, attention_mask=mask).last_hidden_state
    logits = model.lm_head(hidden)
    return F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("labelled_positions_only", [True, False])
@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_loss_and_gradients_equal_the_composed_dense_path(position_kind, labelled_positions_only):
    model = build(MLM, position_embedding_type=position_kind).train()
    ids, mask, labels = _batch()
    call = {"labelled_positions_only": labelled_positions_only}
    loss = model(ids, attention_mask=mask, labels=labels, **call).loss
    loss.backward()
    fast = _grads(model)
    model.zero_grad(set_to_none=True)
    expected = _plain_loss(model, ids, mask, labels)
    expected.backward()
    plain = _grads(model)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    assert fast.keys() == plain.keys()
    for name, grad in fast.items():
        torch.testing.assert_close(grad, plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_the_tied_matrix_gets_one_dense_gradient():
    model = build(MLM).train()
    ids, mask, labels = _batch()
    model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True).loss.backward()
    weight = model.get_input_embeddings().weight
    assert model.lm_head.decoder.weight is weight
    assert weight.grad.layout == torch.strided


def _lookup_kinds(model, **call):
    """`sparse` of the word-embedding lookup as each forward saw it."""
    seen = []
    embedding = model.get_input_embeddings()
    handle = embedding.register_forward_pre_hook(lambda module, args: seen.append(module.sparse))
    ids, mask, labels = _batch()
    model(ids, attention_mask=mask, labels=labels, **call)
    handle.remove()
    return seen


@pytest.mark.parametrize("labelled_positions_only", [True, False])
def test_the_lookup_runs_sparse_when_gradients_are_on(labelled_positions_only):
    model = build(MLM).train()
    assert _lookup_kinds(model, labelled_positions_only=labelled_positions_only) == [True]


def test_the_lookup_stays_dense_without_gradients():
    model = build(MLM)
    with torch.no_grad():
        assert _lookup_kinds(model, labelled_positions_only=True) == [False]


def test_the_lookup_is_dense_again_after_the_call():
    model = build(MLM).train()
    ids, mask, labels = _batch()
    model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True)
    assert model.get_input_embeddings().sparse is False


def test_the_lookup_is_dense_again_after_a_failed_call():
    model = build(MLM).train()
    ids, mask, labels = _batch()
    ids[0, 0] = VOCAB + 5  # out of the vocabulary: the encoder raises
    with pytest.raises(ValueError):
        model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True)
    assert model.get_input_embeddings().sparse is False


def test_an_untied_model_keeps_its_dense_lookup_gradient():
    model = build(MLM, tiny_config(tie_word_embeddings=False)).train()
    ids, mask, labels = _batch()
    assert model.lm_head.decoder.weight is not model.get_input_embeddings().weight
    model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True).loss.backward()
    assert model.get_input_embeddings().weight.grad.layout == torch.strided


def test_bfloat16_gradients_equal_the_composed_dense_path():
    model = build(MLM).train().to(torch.bfloat16)
    ids, mask, labels = _batch()
    model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True).loss.backward()
    fast = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad(set_to_none=True)
    _plain_loss(model, ids, mask, labels).backward()
    plain = model.get_input_embeddings().weight.grad
    assert fast.layout == torch.strided and fast.dtype == torch.bfloat16
    # the same terms summed in another order, each addition rounding at bf16's 2^-8: a few
    # units in the last place of the largest entry
    torch.testing.assert_close(fast, plain, rtol=0, atol=float(plain.abs().max()) * 2**-6)


def test_the_reference_gives_the_same_loss_and_gradients():
    transformers = pytest.importorskip("transformers")
    model = build(MLM).train()
    reference_config = transformers.XLMRobertaConfig(**model.config.to_dict())
    reference_config._attn_implementation = "eager"
    reference = transformers.XLMRobertaForMaskedLM(reference_config).train()
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not [k for k in missing if "position_ids" not in k] and not unexpected
    ids, mask, labels = _batch()
    loss = model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True).loss
    loss.backward()
    expected = reference(input_ids=ids, attention_mask=mask, labels=labels).loss
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    theirs = dict(reference.named_parameters())
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, theirs[name].grad, rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- the optimizer


def _steps(model, optimizer, steps: int = 3):
    ids, mask, labels = _batch()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model(ids, attention_mask=mask, labels=labels, labelled_positions_only=True).loss.backward()
        optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_adamw_uses_the_fused_kernel_for_plain_cpu_parameters():
    optimizer = adamw(build(MLM), lr=1e-3)
    assert all(group["fused"] for group in optimizer.param_groups)


def test_adamw_fused_false_is_kept():
    optimizer = adamw(build(MLM).parameters(), lr=1e-3, fused=False)
    assert not any(group["fused"] for group in optimizer.param_groups)


def test_adamw_on_a_model_decays_matrices_only():
    model = build(MLM)
    groups = adamw(model, lr=1e-3, weight_decay=0.1).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    for name, parameter in model.named_parameters():
        matrix = parameter.ndim == 2 and "LayerNorm" not in name and "layer_norm" not in name
        assert (id(parameter) in decayed) == matrix, name


@pytest.mark.parametrize("given", ["model", "parameters"])
def test_adamw_steps_equal_the_default_torch_adamw(given):
    model = build(MLM).train()
    other = copy.deepcopy(model)
    ours = adamw(
        model if given == "model" else model.parameters(), lr=1e-2, weight_decay=0.1, max_grad_norm=None
    )
    if given == "model":
        from xlmr_torch.training import decay_parameter_groups

        groups = decay_parameter_groups(other, 0.1)
    else:
        groups = other.parameters()
    expected = _steps(other, torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.1, foreach=False))
    got = _steps(model, ours)
    for name, value in got.items():
        if name.endswith("attention.self.key.bias"):
            # softmax ignores a key bias: its gradient is rounding noise, which Adam's
            # normalised step turns into lr-sized moves in either implementation
            continue
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
