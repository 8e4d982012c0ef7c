"""New heads drawn with numpy: the reference's parameter names and shapes, its initialisation rule,
and the same weights from the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from xlmr_core import XLMRobertaConfig
from xlmr_core.finetuning import HEAD_CLASS, TASKS, initial_head

SMALL = {
    "vocab_size": 50,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}


@pytest.mark.parametrize("task", TASKS)
def test_head_names_and_shapes_are_the_reference_models(task):
    """Every parameter outside the encoder: the head, and the pooler where the task reads it."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    reference_class = getattr(transformers, "XLMRoberta" + HEAD_CLASS[task])
    config = dict(SMALL, num_labels=3, is_decoder=task == "causal-lm")
    model = reference_class(transformers.XLMRobertaConfig(**config))
    # The reference's decoder weight and bias are tied to the word embeddings and `lm_head.bias`.
    tied = {"lm_head.decoder.weight", "lm_head.decoder.bias"}
    expected = {
        name: tuple(tensor.shape)
        for name, tensor in model.state_dict().items()
        if (not name.startswith("roberta.") or name.startswith("roberta.pooler.")) and name not in tied
    }
    head = initial_head(task, XLMRobertaConfig(**config), seed=0)
    assert {name: value.shape for name, value in head.items()} == expected


def test_weights_are_normal_biases_zero_layer_norms_one_and_seeded():
    config = XLMRobertaConfig(**SMALL, initializer_range=0.05)
    head = initial_head("masked-lm", config, seed=1)
    assert all(value.dtype == np.float32 for value in head.values())
    assert (head["lm_head.layer_norm.weight"] == 1).all() and (head["lm_head.layer_norm.bias"] == 0).all()
    assert (head["lm_head.bias"] == 0).all() and (head["lm_head.dense.bias"] == 0).all()
    big = initial_head(
        "text-classification", XLMRobertaConfig(**dict(SMALL, hidden_size=256), initializer_range=0.05), 1
    )
    weight = big["classifier.dense.weight"]  # 65,536 draws: mean and std within 1 %
    assert abs(weight.mean()) < 0.0005 and abs(weight.std() - 0.05) < 0.0005
    again = initial_head("masked-lm", config, seed=1)
    assert all((head[name] == again[name]).all() for name in head)
    other = initial_head("masked-lm", config, seed=2)
    assert not (head["lm_head.dense.weight"] == other["lm_head.dense.weight"]).all()


def test_untied_embeddings_get_their_own_decoder_weight():
    head = initial_head("causal-lm", XLMRobertaConfig(**SMALL, tie_word_embeddings=False), seed=0)
    assert head["lm_head.decoder.weight"].shape == (50, 16)
