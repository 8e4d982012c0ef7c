"""The shipped jitted training: optimizer pieces, train/eval steps, accumulation, data parallelism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from tests.flax.conftest import token_batch
from xlmr_flax.training import (
    create_learning_rate_schedule,
    create_optimizer,
    create_train_state,
    decay_mask,
    make_eval_step,
    make_train_step,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def classification_batch(config, batch=4, seed=0):
    ids, mask = token_batch(config, batch=batch, seed=seed)
    return {"input_ids": ids, "attention_mask": mask, "labels": np.arange(batch) % config.num_labels}


def test_decay_mask_skips_biases_and_layer_norms(make_model):
    mask = decay_mask(make_model("ForMaskedLM").params)
    layer = mask["roberta"]["encoder"]["layer"]["0"]
    assert layer["attention"]["self"]["query"] == {"kernel": True, "bias": False}
    assert layer["output"]["LayerNorm"] == {"scale": False, "bias": False}
    assert mask["lm_head"]["layer_norm"] == {"scale": False, "bias": False}
    assert mask["lm_head"]["bias"] is False
    assert mask["roberta"]["embeddings"]["word_embeddings"]["embedding"] is True


def test_schedule_warms_up_then_decays_to_zero():
    schedule = create_learning_rate_schedule(1.0, num_train_steps=10, num_warmup_steps=4)
    values = [float(schedule(step)) for step in (0, 2, 4, 7, 10)]
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="num_warmup_steps"):
        create_learning_rate_schedule(1.0, num_train_steps=3, num_warmup_steps=4)


@pytest.fixture(scope="module")
def classifier(make_model):
    """Dropout off, so steps can be compared with each other exactly."""
    return make_model("ForSequenceClassification", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def train_step(classifier):
    return make_train_step(classifier)


def test_train_step_lowers_the_loss_and_advances_the_state(make_model):
    model = make_model("ForSequenceClassification")  # dropout 0.1
    step = make_train_step(model)
    optimizer = create_optimizer(1e-3, num_train_steps=20)
    state = create_train_state(model, optimizer, seed=0)
    batch = classification_batch(model.config)
    losses = []
    for _ in range(4):
        previous_rng = state.dropout_rng
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        assert not np.array_equal(previous_rng, state.dropout_rng)
    assert int(state.step) == 4
    assert losses[-1] < losses[0]
    eval_out = make_eval_step(model)(state.params, batch)
    np.testing.assert_allclose(eval_out.loss, model(**batch, params=state.params).loss, rtol=1e-5)

    # Dropout masks come from the state's key: same seed, same step; another seed, another step.
    kernel = lambda s: np.asarray(s.params["classifier"]["out_proj"]["kernel"])  # noqa: E731
    a, _ = step(create_train_state(model, optimizer, seed=0), batch)
    b, _ = step(create_train_state(model, optimizer, seed=0), batch)
    c, _ = step(create_train_state(model, optimizer, seed=1), batch)
    np.testing.assert_array_equal(kernel(a), kernel(b))
    assert np.abs(kernel(a) - kernel(c)).max() > 0


def test_gradient_accumulation_matches_one_big_batch(classifier, train_step):
    optimizer = optax.sgd(0.1)
    batch = classification_batch(classifier.config)
    whole, _ = train_step(create_train_state(classifier, optimizer), batch)
    split, _ = make_train_step(classifier, accumulation_steps=2)(
        create_train_state(classifier, optimizer), batch
    )
    difference = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), whole.params, split.params)
    assert max(jax.tree_util.tree_leaves(difference)) < 1e-6
    with pytest.raises(ValueError, match="multiple of accumulation_steps"):
        make_train_step(classifier, accumulation_steps=3)(create_train_state(classifier, optimizer), batch)


def test_train_step_needs_labels(classifier, train_step):
    state = create_train_state(classifier, optax.sgd(0.1))
    batch = classification_batch(classifier.config)
    del batch["labels"]
    with pytest.raises(ValueError, match="no labels"):
        train_step(state, batch)


DATA_PARALLEL_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from tests.flax.conftest import tiny_config, token_batch
    from xlmr_flax import FlaxXLMRobertaForSequenceClassification
    from xlmr_flax.training import (create_optimizer, create_train_state, data_parallel_mesh,
                                    make_train_step, replicate, shard_batch)

    assert jax.device_count() == 4, jax.devices()
    model = FlaxXLMRobertaForSequenceClassification(tiny_config(), seed=0)  # dropout on
    ids, mask = token_batch(model.config, batch=8)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": np.arange(8) % 3}
    step = make_train_step(model, accumulation_steps=2)
    optimizer = create_optimizer(1e-3, num_train_steps=10, num_warmup_steps=1)

    single = create_train_state(model, optimizer, seed=0)
    single = jax.device_put(single, jax.devices()[0])
    mesh = data_parallel_mesh()
    parallel = replicate(create_train_state(model, optimizer, seed=0), mesh)
    losses = []
    for _ in range(2):
        single, m1 = step(single, jax.device_put(batch, jax.devices()[0]))
        parallel, m4 = step(parallel, shard_batch(batch, mesh))
        losses.append((float(m1["loss"]), float(m4["loss"])))
    sharded_over = len(parallel.params["classifier"]["out_proj"]["kernel"].sharding.device_set)
    diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
               for a, b in zip(jax.tree_util.tree_leaves(single.params),
                               jax.tree_util.tree_leaves(parallel.params)))
    print(json.dumps({"diff": diff, "losses": losses, "devices": sharded_over}))
    """
)


def test_data_parallel_over_four_devices_matches_one_device():
    # The device count is fixed when JAX starts, so this runs in a fresh interpreter.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL_SCRIPT], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    for single, parallel in report["losses"]:
        assert abs(single - parallel) < 1e-5
    assert report["diff"] < 1e-5


def _bad_targets(head, config):
    """A batch for `head` whose targets the eager call refuses (QA: positions it clamps)."""
    choices = 3 if head == "ForMultipleChoice" else None
    ids, mask = token_batch(config, choices=choices)
    batch = {"input_ids": ids, "attention_mask": mask}
    if head in ("ForMaskedLM", "ForCausalLM"):
        batch["labels"] = np.where(mask == 1, config.vocab_size, -100)  # one past the vocabulary
    elif head == "ForTokenClassification":
        batch["labels"] = np.where(mask == 1, 1, -100)
        batch["labels"][0, 2] = config.num_labels
    elif head == "ForMultipleChoice":
        batch["labels"] = np.array([0, 3])  # three choices
    elif head == "ForQuestionAnswering":
        batch["start_positions"], batch["end_positions"] = np.array([-4, 1]), np.array([2, 99])
    else:  # a 27-label dataset on a 3-label head: the forgotten num_labels=27
        batch["labels"] = np.array([26, 0])
    return batch


@pytest.mark.parametrize(
    "head",
    [
        "ForSequenceClassification",
        "ForTokenClassification",
        "ForMultipleChoice",
        "ForMaskedLM",
        "ForCausalLM",
        "ForQuestionAnswering",
    ],
)
def test_jitted_steps_check_targets_as_the_eager_call_does(make_model, head):
    model = make_model(head, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = _bad_targets(head, model.config)
    state = create_train_state(model, optax.sgd(0.1), seed=0)
    if head == "ForQuestionAnswering":
        # Out-of-range positions are clamped (and ignored at the sequence end), as in the reference.
        eager = float(model(**batch).loss)
        _, metrics = make_train_step(model)(state, batch)
        np.testing.assert_allclose(float(metrics["loss"]), eager, rtol=1e-5)
        np.testing.assert_allclose(float(make_eval_step(model)(model.params, batch).loss), eager, rtol=1e-5)
        return
    with pytest.raises(ValueError) as eager:
        model(**batch)
    with pytest.raises(ValueError) as jitted:
        make_train_step(model)(state, batch)
    assert str(jitted.value) == str(eager.value)
    assert "\n" not in str(jitted.value) and len(str(jitted.value)) <= 300
    with pytest.raises(ValueError, match="labels must be in"):
        make_eval_step(model)(model.params, batch)
