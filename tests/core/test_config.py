"""XLMRobertaConfig: reference fields and defaults, JSON round trip, presets, errors."""

import json

import pytest

from xlmr_core import PRESETS, XLMRobertaConfig
from xlmr_core.configuration import ConfigError, UnknownKeywordError


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


# ------------------------------------------------------------------ a caller's labels and keywords
NAMES = {0: "negative", 1: "neutral", 2: "positive"}


def test_a_callers_label_names_are_kept_with_num_labels(tmp_path):
    XLMRobertaConfig(num_labels=2).save_pretrained(tmp_path)
    config = XLMRobertaConfig.from_pretrained(tmp_path, num_labels=3, id2label=NAMES)
    assert config.id2label == NAMES and config.label2id == {v: k for k, v in NAMES.items()}
    by_label2id = XLMRobertaConfig.from_pretrained(tmp_path, label2id={v: k for k, v in NAMES.items()})
    assert by_label2id.id2label == NAMES


def test_num_labels_alone_keeps_the_files_names_like_the_reference(tmp_path):
    transformers = pytest.importorskip("transformers")
    XLMRobertaConfig(id2label=NAMES).save_pretrained(tmp_path)
    for count in (3, 4):
        ours = XLMRobertaConfig.from_pretrained(tmp_path, num_labels=count)
        reference = transformers.XLMRobertaConfig.from_pretrained(tmp_path, num_labels=count)
        assert ours.id2label == reference.id2label and ours.label2id == reference.label2id
    assert XLMRobertaConfig.from_pretrained(tmp_path, num_labels=3).id2label == NAMES


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_labels": 2, "id2label": NAMES}, "num_labels=2 disagrees with id2label, which has 3 entries"),
        ({"id2label": NAMES, "label2id": {"negative": 1, "neutral": 0, "positive": 2}}, "not the inverse"),
        ({"label2id": {"a": 0, "b": 0}}, "label2id maps two names to one id"),
    ],
)
def test_disagreeing_label_keywords_are_a_config_error(tmp_path, overrides, message):
    transformers = pytest.importorskip("transformers")
    XLMRobertaConfig().save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=message):
        XLMRobertaConfig.from_pretrained(tmp_path, **overrides)
    with pytest.raises(ConfigError, match=message):
        XLMRobertaConfig(**overrides)
    if "num_labels" in overrides:  # the reference refuses this one too
        with pytest.raises(ValueError):
            transformers.XLMRobertaConfig.from_pretrained(tmp_path, **overrides)


def test_a_files_stale_label2id_still_loads_as_written(tmp_path):
    # The reference does not update label2id when id2label is edited; such files are common.
    data = XLMRobertaConfig().to_dict() | {"id2label": {"0": "neg", "1": "pos"}}
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = XLMRobertaConfig.from_pretrained(tmp_path)
    assert config.id2label == {0: "neg", 1: "pos"} and config.label2id == {"LABEL_0": 0, "LABEL_1": 1}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("num_lables", r"unknown keyword 'num_lables'.*\(did you mean num_labels\?\)"),
        ("hiden_size", r"did you mean hidden_size\?"),
        (
            "cache_dir",
            "cache_dir is a keyword of the reference library's loader that xlmr does not implement",
        ),
        ("device_map", "device_map is a keyword of the reference library's loader"),
        ("revision", "nothing is downloaded"),
        ("force_download", "nothing is downloaded"),
        ("token", "nothing is downloaded"),
        ("attn_implementation", "attn_implementation is a keyword"),
    ],
)
def test_unknown_and_unimplemented_keywords_are_refused_and_nothing_is_written(tmp_path, key, message):
    XLMRobertaConfig().save_pretrained(tmp_path)
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(UnknownKeywordError, match=message) as caught:
        XLMRobertaConfig.from_pretrained(tmp_path, **{key: "x"})
    assert len(str(caught.value)) <= 300
    with pytest.raises(UnknownKeywordError):
        XLMRobertaConfig().copy(**{key: "x"})
    with pytest.raises(UnknownKeywordError):
        XLMRobertaConfig.from_pretrained("xlm-roberta-base", **{key: "x"})
    assert (tmp_path / "config.json").read_bytes() == before


def test_keys_of_the_file_and_honoured_loader_keywords_are_accepted(tmp_path):
    data = XLMRobertaConfig().to_dict() | {"my_custom_field": 1}
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = XLMRobertaConfig.from_pretrained(
        tmp_path, my_custom_field=2, torch_dtype="bfloat16", local_files_only=True, trust_remote_code=False
    )
    assert config.my_custom_field == 2 and config.to_dict()["torch_dtype"] == "bfloat16"
    assert not {"local_files_only", "trust_remote_code"} & set(config.to_dict())
    with pytest.raises(UnknownKeywordError, match="trust_remote_code=True is not supported"):
        XLMRobertaConfig.from_pretrained(tmp_path, trust_remote_code=True)


def test_a_file_given_for_a_directory_is_named_as_a_file(tmp_path):
    from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast
    from xlmr_core.checkpoint import load_checkpoint
    from xlmr_core.pretrained import bundled_checkpoint

    weights = bundled_checkpoint() / "model.safetensors"
    for load in (
        XLMRobertaTokenizer.from_pretrained,
        XLMRobertaTokenizerFast.from_pretrained,
        load_checkpoint,
    ):
        with pytest.raises(NotADirectoryError) as caught:
            load(weights)
        assert f"{weights} is a file, not a directory" in str(caught.value)
        assert f"({bundled_checkpoint()})" in str(caught.value) and len(str(caught.value)) <= 300
    # A config.json path itself is a config, as in the reference.
    assert XLMRobertaConfig.from_pretrained(bundled_checkpoint() / "config.json").hidden_size == 128
