"""The one mapping table: canonical names/layouts <-> each framework, and checkpoint matching."""

import numpy as np
import pytest

from xlmr_core import weight_mapping as wm
from xlmr_core.checkpoint import canonicalize

# Names as the reference implementation spells them in each framework (read off its
# TF and Flax model definitions), against the canonical PyTorch name.
KNOWN = [
    (
        "roberta.encoder.layer.11.attention.self.query.weight",
        "roberta/encoder/layer_._11/attention/self/query/kernel",
        "roberta/encoder/layer/11/attention/self/query/kernel",
    ),
    (
        "roberta.encoder.layer.0.output.LayerNorm.weight",
        "roberta/encoder/layer_._0/output/LayerNorm/gamma",
        "roberta/encoder/layer/0/output/LayerNorm/scale",
    ),
    (
        "roberta.embeddings.LayerNorm.bias",
        "roberta/embeddings/LayerNorm/beta",
        "roberta/embeddings/LayerNorm/bias",
    ),
    (
        "roberta.embeddings.word_embeddings.weight",
        "roberta/embeddings/word_embeddings/weight",
        "roberta/embeddings/word_embeddings/embedding",
    ),
    (
        "roberta.embeddings.position_embeddings.weight",
        "roberta/embeddings/position_embeddings/embeddings",
        "roberta/embeddings/position_embeddings/embedding",
    ),
    ("lm_head.bias", "lm_head/bias", "lm_head/bias"),
    ("lm_head.layer_norm.weight", "lm_head/layer_norm/gamma", "lm_head/layer_norm/scale"),
    ("classifier.out_proj.bias", "classifier/out_proj/bias", "classifier/out_proj/bias"),
    ("qa_outputs.weight", "qa_outputs/kernel", "qa_outputs/kernel"),
]


@pytest.mark.parametrize(("canonical", "tf_name", "flax_name"), KNOWN)
def test_names_translate_to_the_reference_spelling(canonical, tf_name, flax_name):
    assert wm.to_framework_name(canonical, "tf") == tf_name
    assert wm.to_framework_name(canonical, "flax") == flax_name
    assert wm.to_framework_name(canonical, "torch") == canonical
    assert wm.to_canonical_name(tf_name, "tf") == canonical
    assert wm.to_canonical_name(flax_name, "flax") == canonical


HEADS = [
    "XLMRobertaModel",
    "XLMRobertaForCausalLM",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
]


@pytest.mark.parametrize("framework", ["tf", "flax"])
@pytest.mark.parametrize("head", HEADS)
def test_every_reference_weight_round_trips_through_every_framework(head, framework):
    transformers = pytest.importorskip("transformers")
    config = transformers.XLMRobertaConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=12,
        position_embedding_type="relative_key_query",
        is_decoder=True,
        add_cross_attention=True,
    )
    model = getattr(transformers, head)(config)
    state = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    there = wm.to_framework_state(state, framework)
    assert len(there) == len(state)
    back = wm.to_canonical_state(there, framework)
    assert back.keys() == state.keys()
    for name, array in state.items():
        np.testing.assert_array_equal(back[name], array)


def test_linear_weights_are_transposed_and_nothing_else():
    state = {
        "roberta.encoder.layer.0.intermediate.dense.weight": np.zeros((12, 8)),
        "roberta.encoder.layer.0.intermediate.dense.bias": np.zeros(12),
        "roberta.embeddings.word_embeddings.weight": np.zeros((20, 8)),
        "roberta.embeddings.LayerNorm.weight": np.zeros(8),
    }
    flax = wm.to_framework_state(state, "flax")
    assert flax["roberta/encoder/layer/0/intermediate/dense/kernel"].shape == (8, 12)
    assert flax["roberta/encoder/layer/0/intermediate/dense/bias"].shape == (12,)
    assert flax["roberta/embeddings/word_embeddings/embedding"].shape == (20, 8)
    assert wm.to_framework_state(state, "torch")[
        "roberta.encoder.layer.0.intermediate.dense.weight"
    ].shape == (
        12,
        8,
    )


@pytest.mark.parametrize(
    ("name", "framework"),
    [("roberta/encoder/layer/0/attention/self/query/gamma", "flax"), ("lm_head/kernel", "tf")],
)
def test_names_outside_the_rules_are_refused(name, framework):
    with pytest.raises(KeyError, match="does not follow the naming rules"):
        wm.to_canonical_name(name, framework)


def test_unknown_framework_is_refused():
    with pytest.raises(ValueError, match="unknown framework 'mxnet'"):
        wm.to_framework_name("lm_head.bias", "mxnet")


# ------------------------------------------------------------------ matching
def _shapes(state):
    return {k: v.shape for k, v in state.items()}


BASE = {
    "embeddings.word_embeddings.weight": np.zeros((20, 8)),
    "encoder.layer.0.output.dense.weight": np.zeros((8, 12)),
    "pooler.dense.weight": np.zeros((8, 8)),
}
HEAD = {f"roberta.{k}": v for k, v in BASE.items() if "pooler" not in k} | {
    "lm_head.bias": np.zeros(20),
    "roberta.embeddings.position_ids": np.zeros((1, 10)),
}


def test_head_checkpoint_into_base_model_strips_the_prefix_and_reports_the_head():
    report = wm.match_checkpoint(_shapes(BASE), HEAD)
    assert set(report.state) == {"embeddings.word_embeddings.weight", "encoder.layer.0.output.dense.weight"}
    assert report.unexpected == ["lm_head.bias"]
    assert report.missing == ["pooler.dense.weight"]


def test_base_checkpoint_into_head_model_adds_the_prefix_and_reports_the_head_missing():
    expected = _shapes({k: v for k, v in HEAD.items() if not k.endswith("position_ids")})
    report = wm.match_checkpoint(expected, BASE)
    assert set(report.state) == {
        "roberta.embeddings.word_embeddings.weight",
        "roberta.encoder.layer.0.output.dense.weight",
    }
    assert report.missing == ["lm_head.bias"]
    assert report.unexpected == ["pooler.dense.weight"]


def test_shape_mismatch_names_the_key_and_both_shapes():
    expected = _shapes(BASE) | {"embeddings.word_embeddings.weight": (30, 8)}
    with pytest.raises(ValueError, match=r"'embeddings.word_embeddings.weight'.*\(20, 8\).*\(30, 8\)"):
        wm.match_checkpoint(expected, BASE)


def test_classifier_shape_mismatch_hints_at_num_labels():
    with pytest.raises(ValueError, match="num_labels"):
        wm.match_checkpoint(
            {"classifier.out_proj.weight": (3, 8)}, {"classifier.out_proj.weight": np.zeros((2, 8))}
        )


# --------------------------------------------------------------------- aliases
EMBEDDINGS = np.arange(6.0).reshape(3, 2)


def test_a_second_name_of_the_lm_bias_is_folded_into_the_canonical_one():
    folded = canonicalize({"lm_head.decoder.bias": np.ones(3)}, tie_word_embeddings=True)
    assert list(folded) == ["lm_head.bias"]
    both = {"lm_head.bias": np.ones(3), "lm_head.decoder.bias": np.ones(3)}
    assert list(canonicalize(both, tie_word_embeddings=True)) == ["lm_head.bias"]


def test_a_saved_copy_of_the_tied_decoder_is_dropped_only_when_it_is_a_copy():
    state = {
        "roberta.embeddings.word_embeddings.weight": EMBEDDINGS,
        "lm_head.decoder.weight": EMBEDDINGS.copy(),
    }
    assert "lm_head.decoder.weight" not in canonicalize(state, tie_word_embeddings=True)
    assert "lm_head.decoder.weight" in canonicalize(state, tie_word_embeddings=False)
    different = state | {"lm_head.decoder.weight": EMBEDDINGS + 1}
    assert "lm_head.decoder.weight" in canonicalize(different, tie_word_embeddings=True)


def test_disagreeing_bias_copies_are_kept_for_the_loader_to_report():
    state = {"lm_head.bias": np.ones(3), "lm_head.decoder.bias": np.zeros(3)}
    assert set(canonicalize(state, tie_word_embeddings=True)) == set(state)
