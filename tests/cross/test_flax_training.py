"""Training in Flax gives the weights training in PyTorch gives, from the same checkpoint.

test_agreement.py covers one SGD step for two heads; here the other heads and position
kinds, and the shipped AdamW train step (schedule, weight-decay mask, clipping) against
`torch.optim.AdamW` with the usual no-decay parameter groups.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.cross.harness import OUTPUT_TOLERANCE, config_for, example_inputs, load_adapter, max_abs_diff

torch = pytest.importorskip("torch")
pytest.importorskip("jax")


def torch_checkpoint(tmp_path, head, **overrides):
    config = config_for(head, **overrides)
    load_adapter("torch").random_checkpoint(config, head, tmp_path)
    return config


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        ("ForTokenClassification", "relative_key"),
        ("ForQuestionAnswering", "relative_key_query"),
        ("ForCausalLM", "absolute"),
        ("ForMultipleChoice", "relative_key"),
    ],
)
def test_one_optax_sgd_step_equals_one_torch_sgd_step(head, kind, tmp_path):
    config = torch_checkpoint(tmp_path, head, position_embedding_type=kind)
    inputs = example_inputs(head, config)
    after = {}
    for framework in ("torch", "flax"):
        adapter = load_adapter(framework)
        after[framework] = adapter.sgd_step(adapter.load(tmp_path, head), inputs, learning_rate=0.5)
    assert sorted(after["torch"]) == sorted(after["flax"])
    diffs = max_abs_diff(after["torch"], after["flax"])
    assert max(diffs.values()) <= OUTPUT_TOLERANCE, max(diffs.items(), key=lambda kv: kv[1])


def test_the_shipped_adamw_step_equals_torch_adamw_and_lowers_the_loss(tmp_path):
    import jax

    import xlmr_flax
    import xlmr_torch
    from xlmr_flax.training import create_optimizer, create_train_state, make_train_step

    head = "ForSequenceClassification"
    # Dropout off so both frameworks take the same step; eps large enough that tiny gradient
    # differences (within the gradient tolerance) cannot swing Adam's first, sign-like step.
    config = torch_checkpoint(tmp_path, head, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    inputs = example_inputs(head, config)
    hyper = dict(weight_decay=0.1, b1=0.9, b2=0.999, eps=1e-3)
    learning_rate, max_grad_norm = 1e-2, 0.5

    torch_model = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path).train()
    no_decay = [p for n, p in torch_model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in torch_model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hyper["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(hyper["b1"], hyper["b2"]),
        eps=hyper["eps"],
    )
    torch_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}
    loss = torch_model(**torch_inputs).loss
    loss.backward()
    loss = loss.item()
    torch.nn.utils.clip_grad_norm_(torch_model.parameters(), max_grad_norm)
    optimizer.step()
    torch_after = {n: p.detach().double().numpy() for n, p in torch_model.named_parameters()}

    flax_model = xlmr_flax.FlaxXLMRobertaForSequenceClassification.from_pretrained(tmp_path)
    state = create_train_state(
        flax_model, create_optimizer(learning_rate, max_grad_norm=max_grad_norm, **hyper), seed=0
    )
    state, metrics = make_train_step(flax_model)(state, inputs)
    assert abs(float(metrics["loss"]) - loss) <= OUTPUT_TOLERANCE
    flax_after = {k: v.astype(np.float64) for k, v in flax_model.canonical_state(state.params).items()}

    assert sorted(torch_after) == sorted(flax_after)
    diffs = max_abs_diff(torch_after, flax_after)
    assert max(diffs.values()) <= OUTPUT_TOLERANCE, max(diffs.items(), key=lambda kv: kv[1])
    before = float(flax_model(**inputs).loss)
    assert float(flax_model(**inputs, params=jax.device_get(state.params)).loss) < before
