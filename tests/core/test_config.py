"""XLMRobertaConfig: reference fields and defaults, JSON round trip, presets, errors."""

import json

import pytest

from xlmr_core import PRESETS, XLMRobertaConfig


def test_defaults_match_the_reference_documentation():
    transformers = pytest.importorskip("transformers")
    # Compared as JSON, the form both write to config.json.
    reference = json.loads(transformers.XLMRobertaConfig().to_json_string())
    ours = json.loads(XLMRobertaConfig().to_json_string())
    for key, value in ours.items():
        if key in reference:
            assert reference[key] == value, key


def test_every_reference_model_field_exists():
    transformers = pytest.importorskip("transformers")
    reference = transformers.XLMRobertaConfig().to_diff_dict()
    reference.pop("transformers_version")
    ours = XLMRobertaConfig().to_dict()
    assert set(reference) <= set(ours)


def test_save_and_load_round_trip(tmp_path):
    config = XLMRobertaConfig(hidden_size=64, num_attention_heads=4, num_labels=3, is_decoder=True)
    config.save_pretrained(tmp_path)
    assert XLMRobertaConfig.from_pretrained(tmp_path) == config


def test_unknown_keys_survive_a_round_trip(tmp_path):
    data = XLMRobertaConfig().to_dict() | {"my_custom_field": [1, 2], "transformers_version": "4.57.6"}
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = XLMRobertaConfig.from_pretrained(tmp_path)
    assert config.my_custom_field == [1, 2]
    config.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["my_custom_field"] == [1, 2] and saved["transformers_version"] == "4.57.6"


def test_overrides_win_over_the_file(tmp_path):
    XLMRobertaConfig(num_labels=2).save_pretrained(tmp_path)
    config = XLMRobertaConfig.from_pretrained(tmp_path, num_labels=5, hidden_dropout_prob=0.0)
    assert config.num_labels == 5 and len(config.id2label) == 5 and config.hidden_dropout_prob == 0.0


def test_labels_keep_their_names_and_int_keys():
    config = XLMRobertaConfig(id2label={"0": "neg", "1": "pos"})
    assert config.num_labels == 2
    assert config.id2label == {0: "neg", 1: "pos"}
    assert config.label2id == {"neg": 0, "pos": 1}


def test_reference_config_file_loads_and_ours_loads_in_the_reference(tmp_path):
    transformers = pytest.importorskip("transformers")
    reference = transformers.XLMRobertaConfig(**PRESETS["xlm-roberta-base"], num_labels=4)
    reference.save_pretrained(tmp_path / "ref")
    ours = XLMRobertaConfig.from_pretrained(tmp_path / "ref")
    assert ours.vocab_size == 250002 and ours.num_labels == 4
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.XLMRobertaConfig.from_pretrained(tmp_path / "ours")
    assert back.to_diff_dict() | {"transformers_version": None} == reference.to_diff_dict() | {
        "transformers_version": None
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_have_the_published_shapes(name):
    config = XLMRobertaConfig.from_pretrained(name)
    assert config.vocab_size == 250002 and config.max_position_embeddings == 514
    assert config.hidden_size == {"xlm-roberta-base": 768, "xlm-roberta-large": 1024}[name]
    assert config.num_hidden_layers == {"xlm-roberta-base": 12, "xlm-roberta-large": 24}[name]


def test_absolute_positions_leave_room_for_the_padding_offset():
    config = XLMRobertaConfig.from_pretrained("xlm-roberta-base")
    assert config.max_sequence_length == 514 - (config.pad_token_id + 1)
    relative = config.copy(position_embedding_type="relative_key")
    assert relative.max_sequence_length == 514


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "not a multiple of num_attention_heads"),
        ({"position_embedding_type": "rotary"}, "unknown position_embedding_type"),
        ({"hidden_act": "mish"}, "unknown hidden_act"),
        ({"problem_type": "ranking"}, "unknown problem_type"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"num_labels": 3, "id2label": {0: "a"}}, "num_labels=3 disagrees"),
        ({"vocab_size": 1, "pad_token_id": 1}, "pad_token_id"),
    ],
)
def test_impossible_configs_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        XLMRobertaConfig(**kwargs)


def test_missing_directory_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        XLMRobertaConfig.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint directory nor a preset"):
        XLMRobertaConfig.from_pretrained("not-a-model")


def test_corrupt_config_file_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        XLMRobertaConfig.from_pretrained(tmp_path)
