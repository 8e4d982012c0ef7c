"""What `from_pretrained` does with a caller's keywords, the same in torch, TF and Flax: label names
kept, disagreeing labels and unknown or unimplemented keywords refused with the config's own text,
a file given for the directory named as a file, and `ignore_mismatched_sizes=True` drawing a new
head where the checkpoint's has another shape."""

from __future__ import annotations

import importlib
import json
import logging

import numpy as np
import pytest

from tests.cross.harness import FRAMEWORKS, example_inputs, load_adapter
from xlmr_core import XLMRobertaConfig
from xlmr_core.configuration import ConfigError, UnknownKeywordError
from xlmr_core.errors import CheckpointShapeError

HEAD = "ForSequenceClassification"  # the checkpoint fixture's is 3 labels, LABEL_0..2
NAMES = {0: "negative", 1: "neutral", 2: "positive"}
PREFIX = {"torch": "", "tf": "TF", "flax": "Flax"}


def _message(call) -> tuple[type, str]:
    with pytest.raises(Exception) as caught:
        call()
    return caught.type, str(caught.value)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_label_names_survive_from_pretrained_and_save_pretrained(framework, checkpoint, tmp_path):
    adapter = load_adapter(framework)
    directory, _ = checkpoint(HEAD)
    label2id = {name: i for i, name in NAMES.items()}
    model = adapter.load(directory, HEAD, num_labels=3, id2label=NAMES, label2id=label2id)
    assert model.config.id2label == NAMES and model.config.label2id == label2id
    adapter.save(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["id2label"] == {str(i): name for i, name in NAMES.items()} and saved["label2id"] == label2id
    # The reference reads the saved names back, and keeps them for num_labels of the same count.
    transformers = pytest.importorskip("transformers")
    reference = transformers.XLMRobertaConfig.from_pretrained(tmp_path, num_labels=3)
    assert reference.id2label == NAMES
    assert adapter.load(tmp_path, HEAD, num_labels=3).config.id2label == NAMES


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    "overrides",
    [
        {"num_labels": 2, "id2label": NAMES},
        {"id2label": NAMES, "label2id": {"negative": 2, "neutral": 1, "positive": 0}},
        {"num_lables": 3},
        {"cache_dir": "/tmp/hub"},
        {"device_map": "auto"},
        {"revision": "main"},
        {"trust_remote_code": True},
    ],
    ids=[
        "num_labels-vs-id2label",
        "label2id-not-inverse",
        "typo",
        "cache_dir",
        "device_map",
        "revision",
        "remote-code",
    ],
)
def test_disagreeing_unknown_and_unimplemented_keywords_are_the_configs_error(
    framework, overrides, checkpoint
):
    adapter = load_adapter(framework)
    directory, _ = checkpoint(HEAD)
    before = (directory / "config.json").read_bytes()
    want_type, want = _message(lambda: XLMRobertaConfig.from_pretrained(directory, **overrides))
    got_type, got = _message(lambda: adapter.load(directory, HEAD, **overrides))
    assert issubclass(want_type, ConfigError) and got_type is want_type
    assert got == want and len(got) <= 300 and "\n" not in got
    assert next(iter(overrides)) in got  # the message names the keyword
    assert (directory / "config.json").read_bytes() == before


def test_a_typo_names_the_field_it_may_be_and_honoured_loader_keywords_are_not_written(tmp_path):
    XLMRobertaConfig(num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(UnknownKeywordError, match=r"num_lables.*did you mean num_labels\?"):
        XLMRobertaConfig.from_pretrained(tmp_path, num_lables=3)
    config = XLMRobertaConfig.from_pretrained(tmp_path, local_files_only=True, trust_remote_code=False)
    assert "local_files_only" not in config.to_dict() and "trust_remote_code" not in config.to_dict()


@pytest.mark.parametrize("framework", ("tf", "flax"))
def test_a_torch_dtype_keyword_is_refused_where_the_framework_does_not_take_it(framework, checkpoint):
    adapter = load_adapter(framework)
    directory, _ = checkpoint(HEAD)
    with pytest.raises(UnknownKeywordError, match="torch_dtype is not a keyword of this framework"):
        adapter.load(directory, HEAD, torch_dtype="float16")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_file_given_for_the_directory_is_named_as_a_file(framework, checkpoint):
    adapter = load_adapter(framework)
    directory, _ = checkpoint(HEAD)
    with pytest.raises(NotADirectoryError) as caught:
        adapter.load(directory / "model.safetensors", HEAD)
    assert str(caught.value).startswith(f"{directory / 'model.safetensors'} is a file, not a directory")
    assert str(directory) in str(caught.value).split("(")[-1]  # the folder to pass instead


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ignore_mismatched_sizes_draws_a_new_head_and_lists_it(framework, checkpoint, caplog):
    adapter = load_adapter(framework)
    directory, config = checkpoint(HEAD)
    with pytest.raises(CheckpointShapeError, match="ignore_mismatched_sizes=True starts a new head"):
        adapter.load(directory, HEAD, num_labels=5)
    cls = getattr(importlib.import_module(f"xlmr_{framework}"), f"{PREFIX[framework]}XLMRoberta{HEAD}")
    with caplog.at_level(logging.WARNING):
        model, info = cls.from_pretrained(
            directory, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
        )
    hidden = config.hidden_size
    assert info == {
        "missing_keys": [],
        "unexpected_keys": [],
        "mismatched_keys": [
            ("classifier.out_proj.weight", (3, hidden), (5, hidden)),
            ("classifier.out_proj.bias", (3,), (5,)),
        ],
    }
    assert "classifier.out_proj.weight: checkpoint (3, 32), model (5, 32)" in caplog.text
    # Everything else is the checkpoint's; the new head has the model's own initialisation.
    saved = load_adapter("torch").load(directory, HEAD).canonical_state()
    state = model.canonical_state()
    for name, value in saved.items():
        if not name.startswith("classifier.out_proj"):
            np.testing.assert_array_equal(np.asarray(state[name]), value, err_msg=name)
    weight, bias = (
        np.asarray(state["classifier.out_proj.weight"]),
        np.asarray(state["classifier.out_proj.bias"]),
    )
    assert weight.shape == (5, hidden) and np.all(bias == 0)
    assert 0.5 * config.initializer_range < weight.std() < 1.5 * config.initializer_range
    logits = adapter.forward(model, example_inputs(HEAD, model.config, batch=2, length=6))["logits"]
    assert logits.shape == (2, 5) and np.isfinite(logits).all()


@pytest.mark.parametrize("command", ("convert", "export", "inspect", "verify"))
def test_xlmr_convert_names_a_file_given_for_the_directory(command, checkpoint, tmp_path, capsys):
    from conversion.cli import main
    from conversion.errors import EXIT_MISSING_FILE

    directory, _ = checkpoint(HEAD)
    source = directory / "model.safetensors"
    destination = [str(tmp_path / "out")] if command in ("convert", "export") else []
    destination += ["--format", "torchscript"] if command == "export" else []
    assert main([command, str(source), *destination]) == EXIT_MISSING_FILE
    error = capsys.readouterr().err
    want = f"{source} is a file, not a directory: pass the checkpoint directory that holds it ({directory})"
    assert error == f"xlmr-convert: error: {want}\n"
    assert not (tmp_path / "out").exists()
