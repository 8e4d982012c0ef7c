"""`encode`: sentence embeddings in every framework, on the bundled checkpoint.

The pooling arithmetic lives once, in `xlmr_core.embeddings`; it is checked here against a
hand calculation, and the three frameworks' `encode` against each other, for every pooling.
Order, batching, defaults from sentence-transformers files and the errors are checked per
framework. Agreement with the `sentence-transformers` package itself is
`tests/parity/test_sentence_transformers.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cross.harness import FRAMEWORKS, OUTPUT_TOLERANCE
from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizerFast
from xlmr_core.embeddings import (
    POOLING_MODES,
    SentenceTransformersSettings,
    encode_texts,
    l2_normalize,
    pool,
    read_sentence_transformers,
    resolve_encode_options,
)
from xlmr_core.errors import CheckpointError
from xlmr_core.pretrained import bundled_checkpoint

ST_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
BASE_CLASSES = {"torch": "XLMRobertaModel", "tf": "TFXLMRobertaModel", "flax": "FlaxXLMRobertaModel"}

# Lengths out of order; one text is longer than the bundled model's 64 positions (truncated),
# one is empty (only `<s></s>`).
TEXTS = [
    "Hello, how are you?",
    "Je suis un robot et j'aime parler avec les gens toute la journée.",
    "你好",
    "",
    "What is your name? " * 12,
    "Das Essen war sehr gut.",
    "あなたの名前は何ですか？",
    "ok",
]


def base_class(framework: str):
    """The framework's base model class, or skip when the framework is not installed."""
    module = pytest.importorskip(f"xlmr_{framework}")
    return getattr(module, BASE_CLASSES[framework])


@pytest.fixture(scope="module")
def tokenizer():
    return XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())


@pytest.fixture(scope="module")
def models():
    """Each installed framework's base model, loaded once from the bundled checkpoint."""
    loaded = {}
    for framework in FRAMEWORKS:
        try:
            loaded[framework] = base_class(framework).from_pretrained(bundled_checkpoint())
        except pytest.skip.Exception:
            continue
    return loaded


def model_of(models, framework):
    if framework not in models:
        pytest.skip(f"{framework} is not installed")
    return models[framework]


def within(actual, expected, tolerance=OUTPUT_TOLERANCE) -> float:
    """max |diff|, asserted <= tolerance x max(1, max |expected|)."""
    diff = float(np.max(np.abs(np.asarray(actual) - np.asarray(expected))))
    assert diff <= tolerance * max(1.0, float(np.max(np.abs(expected)))), diff
    return diff


# ----------------------------------------------------------------------------- core arithmetic


def test_pooling_and_normalization_match_a_hand_calculation():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]])  # right, none, left+right
    for pooling in POOLING_MODES:
        got = pool(hidden, mask, pooling)
        assert got.shape == (3, 4) and got.dtype == np.float32
        for row in range(3):
            kept = [hidden[row, s] for s in range(5) if mask[row, s]]
            expected = {
                "mean": [sum(v[d] for v in kept) / len(kept) for d in range(4)],
                "max": [max(v[d] for v in kept) for d in range(4)],
                "cls": kept[0],
            }[pooling]
            np.testing.assert_allclose(got[row], expected, rtol=0, atol=1e-6)
    vectors = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(l2_normalize(vectors), [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


def test_encode_texts_sorts_batches_pads_to_each_batch_and_restores_order(tokenizer):
    """A stand-in encoder whose token vectors are (id, 1): mean pooling gives each text's mean id."""
    config = XLMRobertaConfig.from_pretrained(bundled_checkpoint()).copy(hidden_size=2, num_attention_heads=1)
    shapes = []

    def token_embeddings(input_ids, attention_mask):
        shapes.append(input_ids.shape)
        return np.stack([input_ids, np.ones_like(input_ids)], axis=-1).astype(np.float32)

    got = encode_texts(TEXTS, tokenizer, token_embeddings, config, normalize=False, batch_size=3)
    lengths = []
    for row, text in enumerate(TEXTS):
        ids = tokenizer(text, truncation=True, max_length=64)["input_ids"]
        lengths.append(len(ids))
        np.testing.assert_allclose(got[row], [np.mean(ids), 1.0], rtol=1e-6)
    assert lengths != sorted(lengths, reverse=True)  # the input order is not the batching order
    assert max(lengths) == 64  # the long text was truncated at the position table's limit
    assert [rows for rows, _ in shapes] == [3, 3, 2]
    assert [length for _, length in shapes] == [sorted(lengths, reverse=True)[i] for i in (0, 3, 6)]

    shapes.clear()
    encode_texts(TEXTS, tokenizer, token_embeddings, config, batch_size=3, fixed_shapes=True)
    assert all(rows == 3 and length % 16 == 0 for rows, length in shapes), shapes


def test_do_lower_case_lowercases_before_tokenizing(tokenizer):
    config = XLMRobertaConfig.from_pretrained(bundled_checkpoint()).copy(hidden_size=1, num_attention_heads=1)

    def encoder(ids, mask):
        return ids[..., None].astype(np.float32)

    lowered = SentenceTransformersSettings(do_lower_case=True, normalize=False)
    upper = encode_texts(["HELLO, How Are You?"], tokenizer, encoder, config, lowered)
    lower = encode_texts(["hello, how are you?"], tokenizer, encoder, config, normalize=False)
    assert np.array_equal(upper, lower)
    assert not np.array_equal(
        upper, encode_texts(["HELLO, How Are You?"], tokenizer, encoder, config, normalize=False)
    )


def test_progress_bar_shows_when_asked(tokenizer, capsys):
    config = XLMRobertaConfig.from_pretrained(bundled_checkpoint()).copy(hidden_size=1, num_attention_heads=1)

    def encoder(ids, mask):
        return ids[..., None].astype(np.float32)

    encode_texts(TEXTS, tokenizer, encoder, config, batch_size=1, show_progress_bar=True)
    assert "encode" in capsys.readouterr().err
    for show in (False, None):  # None: only on a terminal, and pytest's stderr is not one
        encode_texts(TEXTS, tokenizer, encoder, config, batch_size=1, show_progress_bar=show)
        assert capsys.readouterr().err == ""


def test_defaults_come_from_the_files_and_explicit_arguments_win(tokenizer):
    config = XLMRobertaConfig.from_pretrained(bundled_checkpoint())  # 64 positions
    assert resolve_encode_options(config, None, tokenizer, None, None, None) == ("mean", True, 64)
    stored = SentenceTransformersSettings(pooling="cls", normalize=False, max_seq_length=16)
    assert resolve_encode_options(config, stored, tokenizer, None, None, None) == ("cls", False, 16)
    assert resolve_encode_options(config, stored, tokenizer, "max", True, 40) == ("max", True, 40)
    assert resolve_encode_options(config, stored, tokenizer, None, None, 1000) == ("cls", False, 64)
    short_tokenizer = XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint(), model_max_length=10)
    assert resolve_encode_options(config, None, short_tokenizer, None, None, None)[2] == 10
    concatenated = SentenceTransformersSettings(pooling=("mean", "max"), source="dir")
    with pytest.raises(ValueError, match=r"dir pools with \('mean', 'max'\); .* \(pass pooling=...\)"):
        resolve_encode_options(config, concatenated, tokenizer, None, None, None)
    assert resolve_encode_options(config, concatenated, tokenizer, "cls", None, None)[0] == "cls"


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_reading_every_spelling_of_the_files(tmp_path):
    assert read_sentence_transformers(tmp_path) is None
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    write_json(tmp_path / "modules.json", modules)
    write_json(
        tmp_path / "1_Pooling/config.json", {"word_embedding_dimension": 128, "pooling_mode_cls_token": True}
    )
    write_json(tmp_path / "sentence_bert_config.json", {"max_seq_length": 32, "do_lower_case": True})
    settings = read_sentence_transformers(tmp_path)
    assert (settings.pooling, settings.normalize, settings.max_seq_length, settings.do_lower_case) == (
        "cls",
        False,
        32,
        True,
    )
    # sentence-transformers >= 5.4 spelling, its new module paths, several modes, extra modules
    modules[1]["type"] = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}
    )
    write_json(tmp_path / "modules.json", modules)
    write_json(
        tmp_path / "1_Pooling/config.json", {"embedding_dimension": 128, "pooling_mode": ["mean", "max"]}
    )
    settings = read_sentence_transformers(tmp_path)
    assert settings.pooling == ("mean", "max") and settings.normalize
    assert settings.unsupported_modules == ("Dense (2_Dense)",)

    for bad, needle in [
        ("[{]", "cannot be read as JSON"),
        ('{"a": 1}', "must hold a list"),
        ('[{"path": ""}]', "has no module type"),
        ('[{"type": "x.Pooling", "path": "../elsewhere"}]', "is not a folder inside it"),
        ('[{"type": "x.Pooling", "path": "nowhere"}]', "is missing"),
    ]:
        (tmp_path / "modules.json").write_text(bad, encoding="utf-8")
        with pytest.raises(CheckpointError, match=needle) as caught:
            read_sentence_transformers(tmp_path)
        assert "\n" not in str(caught.value) and len(str(caught.value)) <= 300


# ----------------------------------------------------------------------------- every framework


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_the_frameworks_agree(models, tokenizer, pooling):
    if len(models) < 2:
        pytest.skip("needs two frameworks")
    embeddings = {
        framework: model.encode(TEXTS, tokenizer, pooling=pooling, normalize=False, batch_size=3)
        for framework, model in models.items()
    }
    first, *others = embeddings
    for framework in others:
        assert embeddings[framework].shape == (len(TEXTS), 128)
        assert embeddings[framework].dtype == np.float32
        within(embeddings[framework], embeddings[first])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_order_and_batch_size_do_not_change_the_embeddings(models, tokenizer, framework):
    """(The order itself is checked exactly, with a stand-in encoder, above.)"""
    model = model_of(models, framework)
    batched = model.encode(TEXTS, tokenizer)  # one batch
    assert batched.shape == (len(TEXTS), 128) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-6)
    within(model.encode(TEXTS, tokenizer, batch_size=3), batched)
    for index in (0, 4):  # a single string gives [hidden], as sentence-transformers
        alone = model.encode(TEXTS[index], tokenizer)
        assert alone.shape == (128,)
        within(alone, batched[index])
    empty = model.encode([], tokenizer)
    assert empty.shape == (0, 128) and empty.dtype == np.float32


def test_torch_encode_turns_dropout_off_and_restores_each_module_mode(models, tokenizer):
    model = model_of(models, "torch")
    expected = model.encode(TEXTS[:2], tokenizer)
    model.train()
    model.encoder.eval()
    try:
        within(model.encode(TEXTS[:2], tokenizer), expected)
        assert model.training and model.embeddings.training and not model.encoder.training
    finally:
        model.eval()


BAD_CALLS = [
    (dict(texts=["a"], pooling="sum"), ValueError),
    (dict(texts=["a", 3]), TypeError),
    (dict(texts=7), TypeError),
    (dict(texts=["a"], batch_size=0), ValueError),
    (dict(texts=["a"], max_length=0), ValueError),
    (dict(texts=["a"], normalize="yes"), TypeError),
]


def test_bad_input_gives_the_same_one_line_error_in_every_framework(models, tokenizer):
    if not models:
        pytest.skip("no framework installed")
    messages = {}
    for model in models.values():
        for index, (arguments, kind) in enumerate(BAD_CALLS):
            arguments = dict(arguments)
            with pytest.raises(kind) as caught:
                model.encode(arguments.pop("texts"), tokenizer, **arguments)
            messages.setdefault(index, set()).add(str(caught.value))
        stored = model.sentence_transformers
        model.sentence_transformers = SentenceTransformersSettings(
            unsupported_modules=("Dense (2_Dense)",), source="some/dir"
        )
        try:
            with pytest.raises(ValueError, match="Dense") as caught:
                model.encode(["a"], tokenizer)
            messages.setdefault("dense", set()).add(str(caught.value))
        finally:
            model.sentence_transformers = stored
    for texts in messages.values():
        assert len(texts) == 1, texts  # the same text in every framework
        (text,) = texts
        assert "\n" not in text and len(text) <= 300
    assert "texts[1] must be a string, got int" in messages[1].pop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sentence_transformers_files_round_trip(models, tokenizer, framework, tmp_path):
    """Saved by one framework with settings, loaded by it and the next: same settings, same defaults.

    (Each framework is a writer once and a reader twice; the full matrix would only repeat it.)"""
    model = model_of(models, framework)
    directory = tmp_path / "st"
    wanted = {"pooling": "cls", "normalize": False, "max_seq_length": 8}
    model.save_pretrained(directory, sentence_transformers=wanted)
    tokenizer.save_pretrained(directory)
    settings = read_sentence_transformers(directory)
    assert (settings.pooling, settings.normalize, settings.max_seq_length) == ("cls", False, 8)
    files = {name: (directory / name).read_bytes() for name in ST_FILES}

    expected = model.encode(TEXTS, tokenizer, pooling="cls", normalize=False, max_length=8)
    installed = [name for name in FRAMEWORKS if name in models]
    readers = {framework, installed[(installed.index(framework) + 1) % len(installed)]}
    for other in sorted(readers):
        loaded = type(models[other]).from_pretrained(directory)
        assert loaded.sentence_transformers == settings
        within(loaded.encode(TEXTS, tokenizer), expected)  # the defaults are the files'
        if other == framework:  # explicit arguments win over the files
            explicit = loaded.encode(TEXTS, tokenizer, pooling="mean", normalize=True, max_length=64)
            within(explicit, model.encode(TEXTS, tokenizer))
        again = tmp_path / f"again-{other}"
        loaded.save_pretrained(again, sentence_transformers=True)
        assert {name: (again / name).read_bytes() for name in ST_FILES} == files
    with pytest.raises(ValueError, match="max_seq_length=100 is longer than the position table"):
        model.save_pretrained(tmp_path / "too-long", sentence_transformers={"max_seq_length": 100})
    assert not (tmp_path / "too-long").exists()  # refused before anything was written
