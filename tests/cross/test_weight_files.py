"""Every weights file a published checkpoint may carry loads in every framework, alike.

One torch checkpoint per head is rewritten by our writers as each of the reference's weight
files (safetensors single and sharded, `pytorch_model.bin` single and sharded, `tf_model.h5`,
`flax_model.msgpack`), alone in its directory; each framework loads it through its own
`from_pretrained` and must give the torch model's outputs (1e-5) and the same loading
report. The files the reference library itself writes are in tests/parity.
"""

from __future__ import annotations

import importlib

import pytest

from tests.cross.harness import (
    FRAMEWORKS,
    HEADS,
    OUTPUT_TOLERANCE,
    example_inputs,
    load_adapter,
    max_abs_diff,
    without_labels,
)
from xlmr_core.checkpoint import load_checkpoint, write_weights

# name -> (format, max_shard_size): 20 kB splits the tiny checkpoints into several shards.
LAYOUTS = {
    "safetensors": ("safetensors", None),
    "sharded-safetensors": ("safetensors", "20kB"),
    "bin": ("torch", None),
    "sharded-bin": ("torch", "20kB"),
    "h5": ("tf", None),
    "msgpack": ("flax", None),
}
PREFIXES = {"torch": "XLMRoberta", "tf": "TFXLMRoberta", "flax": "FlaxXLMRoberta"}


def model_class(framework: str, head: str):
    module = importlib.import_module(f"xlmr_{framework}")
    return getattr(module, f"{PREFIXES[framework]}{head}")


@pytest.fixture(scope="module")
def weights_directory(checkpoint, tmp_path_factory):
    """`weights_directory(head, layout)` -> (directory, config): the head's torch checkpoint,
    rewritten as `layout` only (plus config.json)."""
    made = {}

    def make(head, layout):
        if (head, layout) not in made:
            if layout == "h5":
                pytest.importorskip("h5py")
            source, config = checkpoint(head)
            directory = tmp_path_factory.mktemp(f"{head}-{layout}")
            config.copy(architectures=[f"XLMRoberta{head}"]).save_pretrained(directory)
            fmt, shard = LAYOUTS[layout]
            files = write_weights(directory, load_checkpoint(source), fmt, max_shard_size=shard)
            assert (len(files) > 2) == (shard is not None)  # sharded layouts really are sharded
            made[head, layout] = (directory, config)
        return made[head, layout]

    return make


@pytest.fixture(scope="module")
def torch_outputs(checkpoint):
    """The torch model's outputs on its own safetensors checkpoint, per head."""
    made = {}

    def outputs(head):
        if head not in made:
            directory, config = checkpoint(head)
            adapter = load_adapter("torch")
            inputs = without_labels(example_inputs(head, config))
            made[head] = adapter.forward(adapter.load(directory, head), inputs)
        return made[head]

    return outputs


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("head", HEADS)
def test_every_weights_file_loads_in_every_framework_with_the_torch_outputs(
    head, layout, framework, weights_directory, torch_outputs
):
    adapter = load_adapter(framework)
    directory, config = weights_directory(head, layout)
    model = adapter.load(directory, head)
    out = adapter.forward(model, without_labels(example_inputs(head, config)))
    diffs = max_abs_diff(out, torch_outputs(head))
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= OUTPUT_TOLERANCE, f"{worst} differs by {diffs[worst]:.3g}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_framework_gives_the_same_loading_report_for_every_file(layout, weights_directory):
    # A masked-LM checkpoint loaded as a sequence classifier: the classifier is missing, the LM
    # head unexpected; the report must not depend on the file or the framework.
    directory, _ = weights_directory("ForMaskedLM", layout)
    reports = {}
    for framework in FRAMEWORKS:
        load_adapter(framework)  # skips when the framework is not installed
        _, info = model_class(framework, "ForSequenceClassification").from_pretrained(
            directory, output_loading_info=True
        )
        reports[framework] = {key: sorted(value) for key, value in info.items()}
    assert reports["torch"]["missing_keys"] == [
        "classifier.dense.bias",
        "classifier.dense.weight",
        "classifier.out_proj.bias",
        "classifier.out_proj.weight",
    ]
    assert reports["torch"]["unexpected_keys"] == [
        "lm_head.bias",
        "lm_head.dense.bias",
        "lm_head.dense.weight",
        "lm_head.layer_norm.bias",
        "lm_head.layer_norm.weight",
    ]
    assert reports["tf"] == reports["torch"] == reports["flax"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("layout", ["bin", "h5", "msgpack"])
def test_a_shape_that_does_not_fit_is_one_line_naming_the_key_in_every_framework(
    layout, framework, weights_directory
):
    from xlmr_core.checkpoint import CheckpointShapeError

    load_adapter(framework)
    directory, _ = weights_directory("ForSequenceClassification", layout)
    with pytest.raises(CheckpointShapeError) as error:
        model_class(framework, "ForSequenceClassification").from_pretrained(directory, num_labels=5)
    message = str(error.value)
    assert "classifier.out_proj" in message and "\n" not in message and len(message) <= 300


@pytest.fixture(scope="module")
def weights_only_directory(weights_directory, tmp_path_factory):
    """A sequence classifier's weights without config.json, as the Trainer saves a model not its own."""
    source, config = weights_directory("ForSequenceClassification", "safetensors")
    directory = tmp_path_factory.mktemp("weights-only")
    (directory / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    return directory, source, config


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_weights_without_config_json_need_a_config_and_say_how_to_pass_one(framework, weights_only_directory):
    load_adapter(framework)
    directory, _, _ = weights_only_directory
    with pytest.raises(FileNotFoundError) as error:
        model_class(framework, "ForSequenceClassification").from_pretrained(directory)
    message = str(error.value)
    assert "no config.json" in message and "config=" in message and "\n" not in message


@pytest.mark.parametrize("given", ["object", "config.json path", "directory path"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_config_given_for_weights_without_one_loads_them(
    framework, given, weights_only_directory, torch_outputs
):
    adapter = load_adapter(framework)
    directory, source, config = weights_only_directory
    config_argument = {
        "object": config,
        "config.json path": source / "config.json",
        "directory path": source,
    }[given]
    cls = model_class(framework, "ForSequenceClassification")
    model, info = cls.from_pretrained(directory, config=config_argument, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    out = adapter.forward(model, without_labels(example_inputs("ForSequenceClassification", config)))
    diffs = max_abs_diff(out, torch_outputs("ForSequenceClassification"))
    assert max(diffs.values()) <= OUTPUT_TOLERANCE
