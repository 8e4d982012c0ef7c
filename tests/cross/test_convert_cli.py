"""`xlmr-convert convert` / `inspect` and the command line's behaviour.

Checkpoints here are random numpy states laid out by `conversion.architecture` (itself held
equal to the PyTorch models' state dicts by a test below), written with
`xlmr_core.checkpoint.save_checkpoint` — so these tests need no framework unless a format does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from conversion.cli import main
from conversion.errors import (
    EXIT_CORRUPT_FILE,
    EXIT_DESTINATION_EXISTS,
    EXIT_INTERRUPTED,
    EXIT_MISSING_DEPENDENCY,
    EXIT_MISSING_FILE,
    EXIT_SHAPE_MISMATCH,
    EXIT_UNKNOWN_FORMAT,
    EXIT_USAGE,
)
from tests.cross.harness import tiny_config
from xlmr_core.architecture import HEADS, expected_shapes
from xlmr_core.checkpoint import FLOAT_DTYPES, load_checkpoint, save_checkpoint
from xlmr_core.formats import flax_msgpack, safetensors

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every format, and how a directory holding only that format is recognised.
FORMATS = ("safetensors", "sharded", "torch", "tf", "flax")
WEIGHT_FILES = {
    "safetensors": ["model.safetensors"],
    "torch": ["pytorch_model.bin"],
    "tf": ["tf_model.h5"],
    "flax": ["flax_model.msgpack"],
}


def random_state(config, head: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(0.0, 0.2, shape).astype(np.float32)
        for name, shape in expected_shapes(config, head).items()
    }


def write_checkpoint(directory: Path, head: str = "ForMaskedLM", seed: int = 0, **config_overrides) -> dict:
    if head == "ForQuestionAnswering":
        config_overrides.setdefault("num_labels", 2)  # start and end
    config = tiny_config(architectures=[f"XLMRoberta{head}"], **config_overrides)
    state = random_state(config, head, seed)
    save_checkpoint(directory, state, config)
    return state


def only_format(source: Path, fmt: str, target: Path) -> Path:
    """A copy of `source` holding config.json and the weights of one format only."""
    target.mkdir(parents=True)
    shutil.copy(source / "config.json", target)
    if fmt == "sharded":
        names = [
            p.name for p in source.iterdir() if p.name.startswith("model-") or p.name.endswith("index.json")
        ]
        assert len(names) > 2, names
    else:
        names = WEIGHT_FILES[fmt]
    for name in names:
        shutil.copy(source / name, target)
    return target


def assert_bit_exact(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        assert got[name].tobytes() == np.ascontiguousarray(want[name]).tobytes(), name


def convert(*args) -> int:
    return main(["convert", *map(str, args), "--quiet"])


def make_format(tmp_path: Path, canonical: Path, fmt: str, name: str) -> Path:
    """`canonical` converted into a directory holding only `fmt`."""
    staging = tmp_path / f"{name}-all"
    extra = [] if fmt in ("safetensors", "sharded") else ["--format", fmt]
    shards = ["--max-shard-size", "20kB"] if fmt == "sharded" else []
    assert convert(canonical, staging, *extra, *shards) == 0
    return only_format(staging, fmt, tmp_path / name)


# ------------------------------------------------------------------ lossless round trips
@pytest.mark.parametrize("target", FORMATS)
@pytest.mark.parametrize("source", FORMATS)
def test_every_pair_of_formats_round_trips_bit_exactly(tmp_path, source, target):
    pytest.importorskip("h5py")
    if "torch" in (source, target):
        pytest.importorskip("torch")
    original = write_checkpoint(tmp_path / "canonical")
    first = make_format(tmp_path, tmp_path / "canonical", source, "first")
    second = make_format(tmp_path, first, target, "second")
    assert convert(second, tmp_path / "back") == 0
    assert_bit_exact(load_checkpoint(tmp_path / "back"), original)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("fmt", ["tf", "flax"])
def test_every_head_round_trips_through_tf_and_flax_files(tmp_path, head, fmt):
    pytest.importorskip("h5py")
    decoder = head == "ForCausalLM"
    original = write_checkpoint(tmp_path / "canonical", head, is_decoder=decoder, add_cross_attention=decoder)
    one = make_format(tmp_path, tmp_path / "canonical", fmt, "one")
    assert convert(one, tmp_path / "back") == 0
    assert_bit_exact(load_checkpoint(tmp_path / "back"), original)


def test_relative_positions_and_untied_decoder_round_trip(tmp_path):
    pytest.importorskip("h5py")
    original = write_checkpoint(
        tmp_path / "canonical", position_embedding_type="relative_key_query", tie_word_embeddings=False
    )
    assert "lm_head.decoder.weight" in original
    for fmt in ("tf", "flax"):
        one = make_format(tmp_path, tmp_path / "canonical", fmt, fmt)
        assert convert(one, tmp_path / f"back-{fmt}") == 0
        assert_bit_exact(load_checkpoint(tmp_path / f"back-{fmt}"), original)


def test_bfloat16_round_trips_through_flax_and_safetensors(tmp_path):
    original = write_checkpoint(tmp_path / "canonical")
    assert convert(tmp_path / "canonical", tmp_path / "bf16", "--dtype", "bfloat16", "--format", "flax") == 0
    flax_only = only_format(tmp_path / "bf16", "flax", tmp_path / "bf16-flax")
    assert convert(flax_only, tmp_path / "back") == 0
    back = load_checkpoint(tmp_path / "back")
    assert_bit_exact(back, {k: v.astype(ml_dtypes.bfloat16) for k, v in original.items()})


# ------------------------------------------------------------------ what convert writes
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_casts_every_floating_tensor_and_records_it(tmp_path, dtype):
    original = write_checkpoint(tmp_path / "canonical")
    assert convert(tmp_path / "canonical", tmp_path / "out", "--dtype", dtype) == 0
    want = {k: v.astype(FLOAT_DTYPES[dtype]) for k, v in original.items()}
    assert_bit_exact(load_checkpoint(tmp_path / "out"), want)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == dtype


def test_written_files_are_byte_identical_to_the_core_writer(tmp_path):
    original = write_checkpoint(tmp_path / "canonical")
    config = tiny_config(architectures=["XLMRobertaForMaskedLM"])
    save_checkpoint(tmp_path / "core-sharded", original, config, max_shard_size="20kB")
    assert convert(tmp_path / "canonical", tmp_path / "ours") == 0
    assert convert(tmp_path / "canonical", tmp_path / "ours-sharded", "--max-shard-size", "20kB") == 0
    for ours, core in [("ours", "canonical"), ("ours-sharded", "core-sharded")]:
        names = sorted(p.name for p in (tmp_path / core).iterdir() if p.name != "config.json")
        assert names == sorted(p.name for p in (tmp_path / ours).iterdir() if p.name != "config.json")
        for name in names:
            assert (tmp_path / ours / name).read_bytes() == (tmp_path / core / name).read_bytes(), name


def test_flax_file_is_byte_identical_to_flax_serialization(tmp_path):
    serialization = pytest.importorskip("flax.serialization")
    from xlmr_core.weight_mapping import to_framework_state

    original = write_checkpoint(tmp_path / "canonical")
    assert convert(tmp_path / "canonical", tmp_path / "out", "--format", "flax") == 0
    tree: dict = {}
    for path, array in to_framework_state(original, "flax").items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = np.ascontiguousarray(array)
    assert (tmp_path / "out" / "flax_model.msgpack").read_bytes() == serialization.msgpack_serialize(
        tree, in_place=True
    )


def test_flax_arrays_above_the_chunk_limit_are_chunked_like_flax(tmp_path, monkeypatch):
    serialization = pytest.importorskip("flax.serialization")
    original = write_checkpoint(tmp_path / "canonical")
    monkeypatch.setattr(flax_msgpack, "FLAX_MAX_CHUNK_BYTES", 1000)  # the word embeddings need 13 chunks
    assert convert(tmp_path / "canonical", tmp_path / "out", "--format", "flax") == 0
    raw = (tmp_path / "out" / "flax_model.msgpack").read_bytes()
    restored = serialization.msgpack_restore(raw)
    np.testing.assert_array_equal(
        restored["roberta"]["embeddings"]["word_embeddings"]["embedding"],
        original["roberta.embeddings.word_embeddings.weight"],
    )
    flax_only = only_format(tmp_path / "out", "flax", tmp_path / "flax-only")
    assert convert(flax_only, tmp_path / "back") == 0
    assert_bit_exact(load_checkpoint(tmp_path / "back"), original)


def test_config_and_tokenizer_files_are_carried_along(tmp_path):
    write_checkpoint(tmp_path / "canonical")
    tokenizer_files = [
        "sentencepiece.bpe.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ]
    for i, name in enumerate(tokenizer_files):
        (tmp_path / "canonical" / name).write_bytes(f"content {i}".encode())
    assert convert(tmp_path / "canonical", tmp_path / "out") == 0
    for name in tokenizer_files:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "canonical" / name).read_bytes()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["architectures"] == ["XLMRobertaForMaskedLM"]


def test_progress_goes_to_stderr_and_quiet_silences_it(tmp_path, capsys):
    write_checkpoint(tmp_path / "canonical")
    assert main(["convert", str(tmp_path / "canonical"), str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "writing model.safetensors" in err
    assert main(["convert", str(tmp_path / "canonical"), str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------ never a half checkpoint
def test_existing_destination_is_refused_without_overwrite(tmp_path, capsys):
    write_checkpoint(tmp_path / "canonical")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["convert", str(tmp_path / "canonical"), str(tmp_path / "out")]) == EXIT_DESTINATION_EXISTS
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_overwrite_replaces_the_whole_destination(tmp_path):
    write_checkpoint(tmp_path / "canonical")
    assert convert(tmp_path / "canonical", tmp_path / "out", "--format", "flax") == 0
    assert convert(tmp_path / "canonical", tmp_path / "out", "--overwrite") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]


def _interrupt_after(monkeypatch, calls: int) -> None:
    write_array = safetensors.write_array
    count = {"n": 0}

    def interrupted(f, array):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        write_array(f, array)

    monkeypatch.setattr(safetensors, "write_array", interrupted)


@pytest.mark.parametrize("existing", [False, True], ids=["new-destination", "overwrite"])
def test_interrupt_leaves_no_half_checkpoint(tmp_path, monkeypatch, capsys, existing):
    write_checkpoint(tmp_path / "canonical")
    destination = tmp_path / "out"
    if existing:
        write_checkpoint(destination, seed=1)
    before = {p.name: p.read_bytes() for p in destination.iterdir()} if existing else None
    _interrupt_after(monkeypatch, calls=10)

    args = ["convert", str(tmp_path / "canonical"), str(destination), "--max-shard-size", "20kB"]
    assert main(args + (["--overwrite"] if existing else [])) == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
    if existing:
        assert {p.name: p.read_bytes() for p in destination.iterdir()} == before
    else:
        assert not destination.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["canonical"] + (["out"] if existing else []))


# ------------------------------------------------------------------ errors and exit codes
def test_missing_source_is_exit_3(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == EXIT_MISSING_FILE
    assert "does not exist" in capsys.readouterr().err


def test_source_without_weights_is_exit_3(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    tiny_config().save_pretrained(tmp_path / "empty")
    assert main(["convert", str(tmp_path / "empty"), str(tmp_path / "out")]) == EXIT_MISSING_FILE
    assert "no weights file" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["safetensors", "flax", "tf"])
def test_truncated_weights_are_exit_4(tmp_path, capsys, fmt):
    if fmt == "tf":
        pytest.importorskip("h5py")
    write_checkpoint(tmp_path / "canonical")
    one = make_format(tmp_path, tmp_path / "canonical", fmt, "one")
    path = one / WEIGHT_FILES[fmt][0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["convert", str(one), str(tmp_path / "out")]) == EXIT_CORRUPT_FILE
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and WEIGHT_FILES[fmt][0] in error
    assert not (tmp_path / "out").exists()


def test_fairseq_directory_given_to_convert_is_exit_6(tmp_path, capsys):
    (tmp_path / "fairseq").mkdir()
    (tmp_path / "fairseq" / "model.pt").write_bytes(b"")
    assert main(["convert", str(tmp_path / "fairseq"), str(tmp_path / "out")]) == EXIT_UNKNOWN_FORMAT
    assert "from-fairseq" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["--format", "onnx"], ["--max-shard-size", "big"], ["--dtype", "int8"], ["--no-such-option"]],
    ids=["format", "shard-size", "dtype", "option"],
)
def test_bad_arguments_are_exit_2(tmp_path, capsys, args):
    write_checkpoint(tmp_path / "canonical")
    assert main(["convert", str(tmp_path / "canonical"), str(tmp_path / "out"), *args]) == EXIT_USAGE
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_shape_that_disagrees_with_the_config_is_exit_5_before_anything_is_written(tmp_path, capsys, command):
    state = write_checkpoint(tmp_path / "canonical")
    state["lm_head.dense.weight"] = np.zeros((32, 31), np.float32)
    save_checkpoint(tmp_path / "canonical", state)
    args = [command, str(tmp_path / "canonical")] + ([str(tmp_path / "out")] if command == "convert" else [])
    assert main(args) == EXIT_SHAPE_MISMATCH
    error = capsys.readouterr().err
    assert "lm_head.dense.weight" in error and "[32, 31]" in error and "[32, 32]" in error
    assert error.count("\n") == 1 and len(error) <= 330  # "xlmr-convert: error: " + 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canonical"]


def _refused_pickle(path):
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Payload()}, protocol=2))


def _thousand_dimensions(path):
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))


@pytest.mark.parametrize(
    ("name", "spoil"),
    [
        ("pytorch_model.bin", _refused_pickle),
        ("pytorch_model.bin", lambda path: path.write_bytes(b"PK\x03\x04 not really a zip")),
        ("model.safetensors", _thousand_dimensions),
    ],
    ids=["refused-pickle", "corrupt-zip", "1000-dimensions"],
)
@pytest.mark.parametrize("command", ["convert", "inspect", "verify"])
def test_hostile_weight_files_are_exit_4_in_one_short_line(tmp_path, capsys, name, spoil, command):
    write_checkpoint(tmp_path / "canonical")
    (tmp_path / "canonical" / "model.safetensors").unlink()
    spoil(tmp_path / "canonical" / name)
    args = [command, str(tmp_path / "canonical")] + ([str(tmp_path / "out")] if command == "convert" else [])
    assert main(args) == EXIT_CORRUPT_FILE
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and len(captured.err) <= 330 and name in captured.err
    assert "ran" not in captured.out and "Traceback" not in captured.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [[], ["convert"], ["from-fairseq"], ["verify"], ["inspect"]])
def test_every_command_has_help_with_examples_and_exit_codes(capsys, command):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "exit status" in text and "7  DST exists" in text
    if command:
        assert "examples:" in text


# ------------------------------------------------------------------ inspect
def test_inspect_reports_heads_parameters_and_key_problems(tmp_path, capsys):
    state = write_checkpoint(tmp_path / "canonical", "ForSequenceClassification")
    del state["classifier.dense.bias"]
    state["classifier.extra.weight"] = np.zeros((2, 2), np.float32)
    save_checkpoint(tmp_path / "canonical", state)
    assert main(["inspect", str(tmp_path / "canonical"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["heads"] == ["ForSequenceClassification"]
    assert summary["parameters"] == sum(v.size for v in state.values())
    assert summary["missing"] == ["classifier.dense.bias"]
    assert summary["unexpected"] == ["classifier.extra.weight"]
    assert summary["dtypes"] == {"float32": len(state)}


def test_inspect_lists_shards(tmp_path, capsys):
    write_checkpoint(tmp_path / "canonical")
    assert convert(tmp_path / "canonical", tmp_path / "sharded", "--max-shard-size", "20kB") == 0
    assert main(["inspect", str(tmp_path / "sharded")]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors.index.json" in out and "model-00001-of-" in out and "ForMaskedLM" in out


def test_architecture_table_matches_the_pytorch_models():
    torch_models = pytest.importorskip("xlmr_torch")
    for head in HEADS:
        decoder = head == "ForCausalLM"
        for overrides in ({}, {"position_embedding_type": "relative_key", "tie_word_embeddings": False}):
            config = tiny_config(is_decoder=decoder, add_cross_attention=decoder, **overrides)
            model = getattr(torch_models, f"XLMRoberta{head}")(config)
            shapes = {name: tuple(array.shape) for name, array in model.canonical_state().items()}
            assert shapes == expected_shapes(config, head), head


# ------------------------------------------------------------------ no framework needed
_BLOCK_FRAMEWORKS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "tensorflow", "jax", "flax", "keras", "h5py"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import runpy
sys.argv = ["xlmr-convert"] + sys.argv[1:]
runpy.run_module("conversion", run_name="__main__")
"""


def _run_without_frameworks(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_FRAMEWORKS, *map(str, args)], capture_output=True, text=True, env=env
    )


def test_safetensors_conversion_needs_no_framework(tmp_path):
    original = write_checkpoint(tmp_path / "canonical")
    result = _run_without_frameworks(
        "convert", tmp_path / "canonical", tmp_path / "out", "--dtype", "float16", "--max-shard-size", "20kB"
    )
    assert result.returncode == 0, result.stderr
    assert_bit_exact(
        load_checkpoint(tmp_path / "out"), {k: v.astype(np.float16) for k, v in original.items()}
    )
    assert _run_without_frameworks("inspect", tmp_path / "out").returncode == 0


def test_a_format_needing_a_missing_library_names_the_extra(tmp_path):
    write_checkpoint(tmp_path / "canonical")
    result = _run_without_frameworks("convert", tmp_path / "canonical", tmp_path / "out", "--format", "tf")
    assert result.returncode == EXIT_MISSING_DEPENDENCY
    assert "xlmr[tf]" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_torch_and_flax_files_are_written_and_read_without_any_framework(tmp_path):
    original = write_checkpoint(tmp_path / "canonical")
    for fmt in ("torch", "flax"):
        out = tmp_path / f"out-{fmt}"
        result = _run_without_frameworks("convert", tmp_path / "canonical", out, "--format", fmt)
        assert result.returncode == 0, result.stderr
        (out / "model.safetensors").unlink()  # so that the next step reads the framework file
        back = tmp_path / f"back-{fmt}"
        result = _run_without_frameworks("convert", out, back)
        assert result.returncode == 0, result.stderr
        assert_bit_exact(load_checkpoint(back), original)
