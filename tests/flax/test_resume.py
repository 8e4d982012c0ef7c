"""A Flax run stopped after step k and resumed from an orbax checkpoint ends with the weights
of an uninterrupted run (dropout on: the dropout key is part of the state)."""

from __future__ import annotations

import os

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("orbax.checkpoint")

from xlmr_flax.training import (  # noqa: E402
    create_optimizer,
    create_train_state,
    make_train_step,
    restore_train_state,
    save_train_state,
)

from .conftest import token_batch  # noqa: E402

STEPS, STOP = 6, 3
TOLERANCE = 1e-6


def _batch(config, step):
    # The data position is the step: batch `step` is a function of it alone.
    input_ids, attention_mask = token_batch(config, batch=4, length=9, seed=step)
    labels = np.random.default_rng(100 + step).integers(0, config.num_labels, 4).astype(np.int32)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# One optimizer object: it is a static part of the state, and a new one would recompile the step.
OPTIMIZER = create_optimizer(1e-3, num_train_steps=STEPS, num_warmup_steps=2)


def _fresh_state(model):
    return create_train_state(model, OPTIMIZER, seed=3)


def _train(state, step_fn, config, until):
    while int(state.step) < until:
        state, _ = step_fn(state, _batch(config, int(state.step)))
    return state


@pytest.fixture(scope="module")
def setup(make_model):
    model = make_model("ForSequenceClassification")  # the shared tiny config has dropout 0.1
    return model, make_train_step(model)


def _max_diff(a, b):
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max())
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_resumed_run_matches_uninterrupted(setup, tmp_path):
    model, step_fn = setup
    straight = _train(_fresh_state(model), step_fn, model.config, STEPS)
    save_train_state(tmp_path, _train(_fresh_state(model), step_fn, model.config, STOP))
    restored = restore_train_state(tmp_path, _fresh_state(model))
    assert int(restored.step) == STOP
    resumed = _train(restored, step_fn, model.config, STEPS)
    assert _max_diff(resumed.params, straight.params) <= TOLERANCE
    assert _max_diff(resumed.opt_state, straight.opt_state) <= TOLERANCE


@pytest.mark.skipif(os.environ.get("XLMR_HEAVY") != "1", reason="slow: set XLMR_HEAVY=1 (nox -s distributed)")
def test_restore_picks_the_latest_step(setup, tmp_path):
    model, step_fn = setup
    state = _fresh_state(model)
    for until in (1, 2):
        state = _train(state, step_fn, model.config, until)
        save_train_state(tmp_path, state)
    assert int(restore_train_state(tmp_path, _fresh_state(model)).step) == 2
    assert int(restore_train_state(tmp_path, _fresh_state(model), step=1).step) == 1


def test_restore_without_a_checkpoint_gives_none(setup, tmp_path):
    model, _ = setup
    assert restore_train_state(tmp_path / "nothing", _fresh_state(model)) is None
