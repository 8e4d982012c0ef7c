"""Keras training against PyTorch: `fit` learns, and one SGD step through `fit` moves the
weights exactly as one `torch.optim.SGD` step does on the same checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cross.harness import GRADIENT_TOLERANCE, HEADS, load_adapter, tiny_config

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

LEARNING_RATE = 0.5  # large, so a wrong gradient moves a weight visibly
TRAINABLE_HEADS = [head for head in HEADS if head != "Model"]


def _config(head, **overrides):
    values = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fit runs in training mode
    if head == "ForCausalLM":
        values.update(is_decoder=True)
    if head == "ForQuestionAnswering":
        values.update(num_labels=2)
    return tiny_config(**values, **overrides)


def _batch(head, batch=2, length=6, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, 3, length) if head == "ForMultipleChoice" else (batch, length)
    ids = rng.integers(3, 99, shape).astype(np.int32)
    mask = np.ones_like(ids)
    ids[-1, ..., -2:], mask[-1, ..., -2:] = 1, 0  # padding in the last row
    features = {"input_ids": ids, "attention_mask": mask}
    if head in ("ForCausalLM", "ForMaskedLM"):
        targets = {"labels": np.where(mask == 1, rng.integers(0, 99, shape), -100).astype(np.int32)}
    elif head == "ForTokenClassification":
        targets = {"labels": np.where(mask == 1, rng.integers(0, 3, shape), -100).astype(np.int32)}
    elif head == "ForQuestionAnswering":
        targets = {"start_positions": np.array([1, 0], np.int32), "end_positions": np.array([3, 2], np.int32)}
    else:
        targets = {"labels": np.array([2, 0], np.int32)}
    return features, targets


def _torch_step(torch_adapter, directory, head, features, targets):
    model = torch_adapter.load(directory, head)
    inputs = {k: v.astype(np.int64) for k, v in {**features, **targets}.items()}
    return torch_adapter.sgd_step(model, inputs, LEARNING_RATE)


def _assert_same_weights(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys(), sorted(set(ours) ^ set(theirs))
    worst = max((float(np.max(np.abs(ours[k] - theirs[k]))), k) for k in ours)
    assert worst[0] <= GRADIENT_TOLERANCE * LEARNING_RATE, worst


@pytest.mark.parametrize(
    "head, kind",
    [(head, "absolute") for head in TRAINABLE_HEADS]
    + [("ForMaskedLM", "relative_key"), ("ForCausalLM", "relative_key_query")],
)
def test_one_sgd_step_of_fit_matches_torch(head, kind, tmp_path):
    torch_adapter, tf_adapter = load_adapter("torch"), load_adapter("tf")
    torch_adapter.random_checkpoint(_config(head, position_embedding_type=kind), head, tmp_path)
    features, targets = _batch(head)

    model = tf_adapter.load(tmp_path, head)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    model.fit(tf.data.Dataset.from_tensors({**features, **targets}), epochs=1, shuffle=False, verbose=0)

    _assert_same_weights(
        model.canonical_state(), _torch_step(torch_adapter, tmp_path, head, features, targets)
    )


def test_fit_with_a_keras_loss_matches_torchs_step_with_the_models_loss(tmp_path):
    head = "ForSequenceClassification"
    torch_adapter, tf_adapter = load_adapter("torch"), load_adapter("tf")
    torch_adapter.random_checkpoint(_config(head), head, tmp_path)
    features, targets = _batch(head)

    model = tf_adapter.load(tmp_path, head)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(features, targets["labels"], batch_size=2, epochs=1, shuffle=False, verbose=0)

    _assert_same_weights(
        model.canonical_state(), _torch_step(torch_adapter, tmp_path, head, features, targets)
    )


def test_fit_lowers_the_loss_on_a_small_synthetic_task():
    """Label = is the second token in the upper half of the vocabulary."""
    import xlmr_tf

    keras.utils.set_random_seed(0)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(tiny_config(num_labels=2))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 99, (32, 8)).astype(np.int32)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"input_ids": ids, "labels": (ids[:, 1] >= 51).astype(np.int32)}
    )
    dataset = dataset.batch(8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(dataset, verbose=0)
    model.fit(dataset, epochs=5, shuffle=False, verbose=0)
    assert model.evaluate(dataset, verbose=0) < 0.8 * before
