"""Keras serialisation: `get_config` / `from_config`, `.keras` files, `clone_model`, deepcopy, pickle."""

from __future__ import annotations

import copy
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from xlmr_core import XLMRobertaConfig

from .conftest import build, heads_or, inputs_for, labels_for


def _outputs(model, head):
    out = model(inputs_for(head), training=False)
    return {key: np.asarray(value) for key, value in out.items() if tf.is_tensor(value)}


def _assert_same_outputs(model, other, head):
    expected, got = _outputs(model, head), _outputs(other, head)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("head", heads_or("TFXLMRobertaModel", "TFXLMRobertaForMultipleChoice"))
def test_every_head_saves_to_a_keras_file_and_loads_with_identical_outputs(head, tmp_path):
    model = build(head, position_embedding_type="relative_key")
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(model) and loaded.config == model.config
    _assert_same_outputs(model, loaded, head)


def test_the_config_names_the_registered_class_and_carries_the_model_config():
    model = xlmr_tf.TFXLMRobertaModel(build("TFXLMRobertaModel").config, add_pooling_layer=False)
    assert keras.saving.get_registered_name(type(model)) == "xlmr_tf>TFXLMRobertaModel"
    config = model.get_config()
    assert XLMRobertaConfig.from_dict(config["config"]) == model.config
    rebuilt = xlmr_tf.TFXLMRobertaModel.from_config(config)
    assert rebuilt.roberta.pooler is None and rebuilt.name == model.name


def test_a_compiled_model_keeps_its_optimizer_state_and_trains_on_identically(tmp_path):
    head = "TFXLMRobertaForTokenClassification"
    data = tf.data.Dataset.from_tensor_slices({**inputs_for(head, batch=4), **labels_for(head, batch=4)})
    model = build(head)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), run_eagerly=True)  # no step tracing: fast
    model.fit(data.batch(2), epochs=1, verbose=0)
    model.save(tmp_path / "trained.keras")
    loaded = keras.models.load_model(tmp_path / "trained.keras")
    assert int(loaded.optimizer.iterations) == 2
    saved = {v.path: np.asarray(v) for v in model.optimizer.variables}
    restored = {v.path: np.asarray(v) for v in loaded.optimizer.variables}
    assert saved.keys() == restored.keys() and len(saved) > 2  # moments, not only the counters
    for path in saved:
        np.testing.assert_array_equal(restored[path], saved[path], err_msg=path)
    # The moments matter: one more epoch from each gives the same weights.
    model.fit(data.batch(2), epochs=1, verbose=0)
    loaded.fit(data.batch(2), epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "duplicate",
    [
        pytest.param(keras.models.clone_model, id="clone_model"),
        pytest.param(copy.deepcopy, id="deepcopy"),
        pytest.param(lambda model: pickle.loads(pickle.dumps(model)), id="pickle"),
    ],
)
def test_clone_deepcopy_and_pickle_rebuild_the_model(duplicate):
    head = "TFXLMRobertaForQuestionAnswering"
    model = build(head)
    twin = duplicate(model)
    assert type(twin) is type(model) and twin.config == model.config and twin is not model
    if duplicate is keras.models.clone_model:  # a clone has new (random) weights, by Keras's definition
        twin.set_weights(model.get_weights())
    _assert_same_outputs(model, twin, head)
    # A copy, not a view: training the copy leaves the original alone.
    twin.roberta.embeddings.LayerNorm.gamma.assign(tf.zeros_like(twin.roberta.embeddings.LayerNorm.gamma))
    assert np.all(np.asarray(model.roberta.embeddings.LayerNorm.gamma) != 0)


def test_a_mixed_precision_model_loads_in_its_own_policy(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build("TFXLMRobertaForSequenceClassification")
    model.save(tmp_path / "mixed.keras")
    keras.mixed_precision.set_global_policy("float32")
    loaded = keras.models.load_model(tmp_path / "mixed.keras")
    assert loaded.dtype_policy.name == "mixed_bfloat16"
    assert loaded(inputs_for("TFXLMRobertaForSequenceClassification")).logits.dtype == tf.bfloat16
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was
    _assert_same_outputs(model, loaded, "TFXLMRobertaForSequenceClassification")
