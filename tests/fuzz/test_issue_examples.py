"""Each crash the fuzzing found, as a fixed example: the input, and the clean error it now gives.

Every error must be one of the project's types, on one line of at most 300 characters; the
`clean` helper holds each to the same rule the fuzz harness applies."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct

import numpy as np
import pytest

from conversion.cli import main
from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer, XLMRobertaTokenizerFast
from xlmr_core.checkpoint import CheckpointError, non_finite, save_checkpoint
from xlmr_core.configuration import MAX_HIDDEN_LAYERS, ConfigError
from xlmr_core.formats import safetensors
from xlmr_core.tokenization_base import TokenizerError, native

from .harness import is_clean
from .targets import tiny_config_dict, trained_model


def clean(error_info) -> str:
    """The message of a raised error, after checking it obeys the rule for bad input."""
    ok, why = is_clean(error_info.value)
    assert ok, f"{type(error_info.value).__name__}: {error_info.value} ({why})"
    return str(error_info.value)


# ------------------------------------------------------------------ safetensors headers
def write_header(path, raw: bytes, data: bytes = b"\0" * 8):
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"a":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}}', "not a size"),
        (b'{"a":{"dtype":"F32","shape":[100000000000000000000],"data_offsets":[0,4]}}', "should take"),
        (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,100000000000000000000]}}', "should take"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"a":' + b"[" * 900 + b"]" * 900 + b"}", "nested too deeply"),
        (
            json.dumps({"a": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}).encode(),
            "dimensions",
        ),
        (
            json.dumps({"a": {"dtype": "F32", "shape": [2**40] * 8, "data_offsets": [0, 4]}}).encode(),
            "should take",
        ),
    ],
)
def test_hostile_safetensors_headers_are_one_short_line(tmp_path, raw, words):
    path = write_header(tmp_path / "model.safetensors", raw)
    with pytest.raises(CheckpointError) as error:
        safetensors.read(path)
    assert words in clean(error)


def test_a_header_length_past_the_100_mb_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 100_000_001) + b"{}")
    with pytest.raises(CheckpointError) as error:
        safetensors.read_header(path)
    assert "at most 100 MB" in clean(error)


# ------------------------------------------------------------------ config.json
def config_dir(tmp_path, raw: bytes):
    (tmp_path / "config.json").write_bytes(raw)
    return tmp_path


def with_field(**fields) -> bytes:
    return json.dumps({**tiny_config_dict(), **fields}).encode()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"vocab_size": "\xff"}', "not UTF-8"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than 32 levels"),
        (with_field(intermediate_size=10**9), "parameters"),
        (with_field(vocab_size=10**30), "6.5e+31 parameters"),
        (with_field(num_hidden_layers=100_000), f"more than the {MAX_HIDDEN_LAYERS} layers"),
        (with_field(initializer_range="128"), "initializer_range must be a finite number"),
        (with_field(max_position_embeddings=10**9), "parameters"),
        (with_field(max_position_embeddings=300_000), "GiB of activations"),
        (with_field(layer_norm_eps=float("nan")), "layer_norm_eps"),
        (with_field(num_labels=10**9), "num_labels must be an integer from 1 to 1000000"),
        (with_field(id2label=[1, 2]), "id2label must be a mapping"),
        (with_field(is_decoder="yes"), "is_decoder must be true or false"),
    ],
)
def test_impossible_config_files_are_refused_before_anything_is_built(tmp_path, raw, words):
    with pytest.raises(ConfigError) as error:
        XLMRobertaConfig.from_pretrained(config_dir(tmp_path, raw))
    message = clean(error)
    assert words in message and str(tmp_path) in message


def test_the_parameter_count_the_cap_is_held_to_is_the_models_own():
    pytest.importorskip("torch")
    import xlmr_torch

    config = XLMRobertaConfig(**{**tiny_config_dict(), "tie_word_embeddings": False})
    counted = {}
    for head in ("ForMaskedLM", "ForSequenceClassification", "Model"):
        model = getattr(xlmr_torch, f"XLMRoberta{head}")(config)
        counted.update({name.removeprefix("roberta."): p.numel() for name, p in model.named_parameters()})
    assert config.parameter_count() == sum(counted.values())


def test_a_key_named_extra_survives_a_round_trip(tmp_path):
    config = XLMRobertaConfig.from_pretrained(config_dir(tmp_path, with_field(_extra={"kept": 1})))
    assert config.to_dict()["_extra"] == {"kept": 1}
    assert XLMRobertaConfig.from_dict(config.to_dict()) == config


def test_deeply_nested_keyword_values_are_refused_before_being_copied():
    value: object = 1
    for _ in range(5000):
        value = [value]
    with pytest.raises(ConfigError) as error:
        XLMRobertaConfig(custom=value)
    assert "nested more than" in clean(error)


# ------------------------------------------------------------------ tokenizer files
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return trained_model(tmp_path_factory.mktemp("spm"))


def spoiled_charsmap_model(model_path, tmp_path, trie_size: int):
    """The trained model with its precompiled map's trie size replaced (SentencePiece field 3.2)."""
    from xlmr_core.sentencepiece_conversion import _fields, _length_delimited, _without_fields

    proto = model_path.read_bytes()
    spec = _fields(proto)[3][0]
    charsmap = _fields(spec)[2][0]
    spoiled = struct.pack("<I", trie_size) + charsmap[4:]
    spec = _without_fields(spec, {2}) + _length_delimited(2, spoiled)
    path = tmp_path / "sentencepiece.bpe.model"
    path.write_bytes(_without_fields(proto, {3}) + _length_delimited(3, spec))
    return path


@pytest.mark.parametrize("cls", [XLMRobertaTokenizer, XLMRobertaTokenizerFast])
@pytest.mark.parametrize("trie_size", [2**31, 2**32 - 4, 3])
def test_a_corrupt_precompiled_map_is_refused_before_native_code(model_path, tmp_path, cls, trie_size):
    # A trie size past the map made `tokenizers` allocate it (GBs) and abort the process.
    path = spoiled_charsmap_model(model_path, tmp_path, trie_size)
    with pytest.raises(TokenizerError) as error:
        cls(vocab_file=path)
    assert "precompiled character map" in clean(error)


def test_a_corrupt_map_inside_tokenizer_json_is_refused(model_path, tmp_path):
    fast = XLMRobertaTokenizerFast(vocab_file=model_path)
    data = json.loads(fast.backend_tokenizer.to_str())
    steps = data["normalizer"]["normalizers"]
    import base64

    charsmap = base64.b64decode(steps[0]["precompiled_charsmap"])
    steps[0]["precompiled_charsmap"] = base64.b64encode(struct.pack("<I", 2**32 - 4) + charsmap[4:]).decode()
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TokenizerError) as error:
        XLMRobertaTokenizerFast(tokenizer_file=path)
    assert "precompiled character map is corrupt" in clean(error)


def test_what_tokenizers_still_refuses_is_a_tokenizer_error(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "Unigram", "vocab": [["a", "not a score"]], "unk_id": 0}}))
    with pytest.raises(TokenizerError) as error:
        XLMRobertaTokenizerFast(tokenizer_file=path)
    assert str(path) in clean(error)


def test_a_rust_panic_is_caught_though_it_is_no_exception():
    class PanicException(BaseException):  # what pyo3 raises: it passes `except Exception`
        pass

    def panics():
        raise PanicException("called `Option::unwrap()` on a `None` value\nnote: backtrace")

    with pytest.raises(TokenizerError, match="PanicException: called `Option::unwrap"):
        native("tokenizer file 'x.json'", panics)
    with pytest.raises(KeyboardInterrupt):
        native("x", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


@pytest.mark.parametrize("cls", [XLMRobertaTokenizer, XLMRobertaTokenizerFast])
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"cls_token": ""}, "cls_token must be a non-empty string"),
        ({"mask_token": "<s>"}, "is one of XLM-R's fixed tokens"),
        ({"bos_token": "not-a-token"}, "is not a token of this vocabulary"),
        ({"sp_model_kwargs": {"alpha": "x"}}, "sp_model_kwargs['alpha'] must be"),
        ({"model_max_length": float("inf")}, "model_max_length must be"),
    ],
)
def test_impossible_special_token_maps_are_clear_errors(model_path, tmp_path, cls, overrides, words):
    shutil.copyfile(model_path, tmp_path / "sentencepiece.bpe.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(overrides))
    with pytest.raises((TokenizerError, TypeError, ValueError)) as error:
        cls.from_pretrained(tmp_path)
    assert words in clean(error)


# ------------------------------------------------------------------ tokenizer calls
@pytest.fixture(scope="module", params=["slow", "fast"])
def tokenizer(request, model_path):
    return (
        XLMRobertaTokenizer(model_path)
        if request.param == "slow"
        else XLMRobertaTokenizerFast(vocab_file=model_path)
    )


@pytest.mark.parametrize(
    ("ids", "kind", "words"),
    [
        ([float("inf")], TypeError, "token ids must be integers, got inf"),
        ([float("nan")], TypeError, "got nan"),
        ([2.7], TypeError, "got 2.7"),
        ([-1], TokenizerError, "token id -1 is out of range"),
        ([10**30], TokenizerError, "out of range"),
        ([[1, 2]], TypeError, "got [1, 2]"),
        (np.array([1.0, 2.0]), TypeError, "got 1.0"),
    ],
)
def test_decoding_what_is_no_id_is_a_clear_error(tokenizer, ids, kind, words):
    with pytest.raises(kind) as error:
        tokenizer.decode(ids)
    assert words in clean(error)


def test_every_integer_dtype_decodes_alike(tokenizer):
    expected = tokenizer.decode([5, 6, 7])
    for dtype in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        assert tokenizer.decode(np.array([5, 6, 7], dtype=dtype)) == expected


def test_overflow_without_room_for_text_is_an_error(tokenizer):
    # max_length == the special tokens: the reference returned one row holding the whole text.
    kwargs = dict(truncation=True, max_length=2, return_overflowing_tokens=True)
    with pytest.raises(TokenizerError) as error:
        tokenizer("a few words of text", **kwargs)
    assert "no room for text" in clean(error)
    with pytest.raises(TokenizerError):
        tokenizer(
            "question",
            "a longer context of words",
            truncation="longest_first",
            max_length=5,
            **{"return_overflowing_tokens": True},
        )
    assert tokenizer("a few words", truncation=True, max_length=2)["input_ids"] == [0, 2]  # no overflow: fine


def test_a_lone_surrogate_is_named(tokenizer):
    with pytest.raises(TokenizerError) as error:
        tokenizer(["fine", "broken \udc80 text"])
    assert "lone surrogate U+DC80 at position 7" in clean(error)


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model_path):
    from xlmr_core.architecture import expected_shapes

    directory = tmp_path_factory.mktemp("ckpt") / "tiny"
    config = XLMRobertaConfig(**{**tiny_config_dict(), "vocab_size": 702})
    rng = np.random.default_rng(0)
    state = {
        k: rng.standard_normal(s).astype(np.float32)
        for k, s in expected_shapes(config, "ForMaskedLM").items()
    }
    save_checkpoint(directory, state, config)
    XLMRobertaTokenizer(model_path).save_pretrained(directory)
    return directory, state, config


def run_cli(*argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in argv])
    assert "Traceback" not in stderr.getvalue()
    return code, stdout.getvalue(), stderr.getvalue()


def test_a_thousand_dimension_shape_is_exit_4_in_one_line(checkpoint, tmp_path):
    directory, _, _ = checkpoint
    source = tmp_path / "src"
    shutil.copytree(directory, source)
    name = "roberta.embeddings.word_embeddings.weight"
    write_header(
        source / "model.safetensors",
        json.dumps({name: {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}).encode(),
        b"\0" * 4,
    )
    for argv in (["convert", source, tmp_path / "out"], ["inspect", source]):
        code, _, errors = run_cli(*argv)
        assert code == 4 and errors.count("\n") == 1 and len(errors) < 330
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_config_is_exit_4(checkpoint, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(checkpoint[0], source)
    (source / "config.json").write_text('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}")
    code, _, errors = run_cli("inspect", source)
    assert code == 4 and "nested more than" in errors


def test_an_unexpected_error_is_exit_9_in_one_line(monkeypatch, checkpoint):
    import conversion.inspection

    def broken(*_, **__):
        raise RuntimeError("something no one foresaw\nwith a second line")

    monkeypatch.setattr(conversion.inspection, "inspect", broken)
    code, _, errors = run_cli("inspect", checkpoint[0])
    assert (
        code == 9
        and errors == "xlmr-convert: error: RuntimeError: something no one foresaw with a second line\n"
    )


def test_inspect_and_verify_name_every_non_finite_tensor(checkpoint, tmp_path):
    directory, state, config = checkpoint
    state = {k: v.copy() for k, v in state.items()}
    state["roberta.encoder.layer.1.output.dense.weight"][0, :3] = np.nan
    state["lm_head.bias"][7] = -np.inf
    source = tmp_path / "nan"
    save_checkpoint(source, state, config)
    for name in ("sentencepiece.bpe.model", "tokenizer.json"):
        shutil.copyfile(directory / name, source / name)
    expected = {
        "roberta.encoder.layer.1.output.dense.weight": {"nan": 3, "inf": 0},
        "lm_head.bias": {"nan": 0, "inf": 1},
    }
    from xlmr_core.checkpoint import open_checkpoint

    with open_checkpoint(source) as opened:
        assert non_finite(opened.tensors, block_bytes=64) == expected  # read in many row blocks
    code, out, _ = run_cli("inspect", source, "--json")
    assert code == 0 and json.loads(out)["non_finite"] == expected
    code, out, _ = run_cli("inspect", source)
    assert "'roberta.encoder.layer.1.output.dense.weight': 3 NaN" in out and "'lm_head.bias': 1 inf" in out
    pytest.importorskip("torch")
    code, out, _ = run_cli("verify", source, "--frameworks", "torch", "-q")
    assert "non-finite  'lm_head.bias': 1 inf" in out and code == 1  # NaN logits cannot PASS
