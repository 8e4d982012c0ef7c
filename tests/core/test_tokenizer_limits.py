"""Every tokenizer_config.json we write says how long an input the model takes: `model_max_length`
is `max_position_embeddings - 2` (XLM-R's absolute positions start after the padding id) wherever
the model's config is known, so `truncation=True` truncates and sentence-transformers reads the
real limit. The bundled checkpoint's own files say 64 (66 positions)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conversion.cli import main
from conversion.fairseq import write_tokenizer_files
from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer, XLMRobertaTokenizerFast
from xlmr_core.checkpoint import save_checkpoint
from xlmr_core.pretrained import bundled_checkpoint
from xlmr_core.tokenization_base import VERY_LARGE_INTEGER
from xlmr_core.tokenizer_limits import fit_tokenizer_config

CONFIG = XLMRobertaConfig(
    vocab_size=4002, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    max_position_embeddings=40,
)  # fmt: skip


def _written_limit(directory) -> int:
    return json.loads((directory / "tokenizer_config.json").read_text())["model_max_length"]


def _unlimited_tokenizer(cls=XLMRobertaTokenizerFast):
    """The bundled vocabulary without a length limit, as a tokenizer built from the SentencePiece
    model alone is (the reference's 1e30)."""
    return cls(vocab_file=str(bundled_checkpoint() / "sentencepiece.bpe.model"))


def test_the_bundled_tokenizer_says_the_models_limit_and_truncates_to_it():
    directory = bundled_checkpoint()
    config = XLMRobertaConfig.from_pretrained(directory)
    assert _written_limit(directory) == config.max_position_embeddings - 2 == 64
    for cls in (XLMRobertaTokenizer, XLMRobertaTokenizerFast):
        tokenizer = cls.from_pretrained(directory)
        assert tokenizer.model_max_length == 64
        assert len(tokenizer("hello " * 200, truncation=True)["input_ids"]) == 64


def _tokenizer_beside_config(directory, cls):
    CONFIG.save_pretrained(directory)
    _unlimited_tokenizer(cls).save_pretrained(directory)


def _model_saved_after_tokenizer(directory):
    _unlimited_tokenizer().save_pretrained(directory)
    save_checkpoint(directory, {"x": np.zeros(2, np.float32)}, CONFIG)


def _fairseq_import_tokenizer(directory):
    CONFIG.save_pretrained(directory)  # import-fairseq writes config.json, then the tokenizer files
    write_tokenizer_files(bundled_checkpoint() / "sentencepiece.bpe.model", directory, quiet=True)


WRITERS = {
    "slow-tokenizer": lambda d: _tokenizer_beside_config(d, XLMRobertaTokenizer),
    "fast-tokenizer": lambda d: _tokenizer_beside_config(d, XLMRobertaTokenizerFast),
    "model-after-tokenizer": _model_saved_after_tokenizer,
    "fairseq-import": _fairseq_import_tokenizer,
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_tokenizer_writer_writes_the_models_limit(tmp_path, writer):
    WRITERS[writer](tmp_path)
    assert _written_limit(tmp_path) == CONFIG.max_position_embeddings - 2 == 38
    assert XLMRobertaTokenizerFast.from_pretrained(tmp_path).model_max_length == 38


@pytest.fixture
def unlimited_checkpoint(tmp_path):
    """A copy of the bundled checkpoint whose tokenizer_config.json says 1e30 (as it did)."""
    source = tmp_path / "source"
    shutil.copytree(bundled_checkpoint(), source)
    data = json.loads((source / "tokenizer_config.json").read_text())
    (source / "tokenizer_config.json").write_text(json.dumps(data | {"model_max_length": VERY_LARGE_INTEGER}))
    return source


def test_xlmr_convert_writes_the_models_limit(unlimited_checkpoint, tmp_path):
    assert main(["convert", str(unlimited_checkpoint), str(tmp_path / "out"), "-q"]) == 0
    assert _written_limit(tmp_path / "out") == 64


def test_a_tokenizer_without_a_config_keeps_no_limit_and_a_smaller_limit_is_kept(tmp_path):
    _unlimited_tokenizer().save_pretrained(tmp_path)
    assert _written_limit(tmp_path) == VERY_LARGE_INTEGER  # as the reference writes it
    XLMRobertaTokenizerFast.from_pretrained(tmp_path, model_max_length=20).save_pretrained(tmp_path)
    assert not fit_tokenizer_config(tmp_path, CONFIG) and _written_limit(tmp_path) == 20


def test_relative_positions_take_the_whole_table(tmp_path):
    config = CONFIG.copy(position_embedding_type="relative_key")
    config.save_pretrained(tmp_path)
    _unlimited_tokenizer().save_pretrained(tmp_path)
    assert _written_limit(tmp_path) == config.max_position_embeddings == 40
