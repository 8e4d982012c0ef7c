"""Core fixtures that need no downloaded files: a small SentencePiece model trained here, and a
state of every dtype for the checkpoint tests."""

from __future__ import annotations

import io
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import sentencepiece as spm

from .texts import training_corpus


def train_small_model(directory: Path) -> str:
    """Train a small unigram model with XLM-R's normalization (nmt_nfkc) and piece layout (~1 s)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_corpus()),
        model_writer=model,
        model_type="unigram",
        vocab_size=700,
        hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc",
        character_coverage=0.9995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    path = directory / "sentencepiece.bpe.model"
    path.write_bytes(model.getvalue())
    return str(path)


@pytest.fixture(scope="session")
def trained_sentencepiece_model(tmp_path_factory) -> str:
    """Path of the small SentencePiece model trained for these tests."""
    return train_small_model(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="session")
def trained_tokenizers(trained_sentencepiece_model):
    """Our slow and fast tokenizers on the trained model, keyed "slow" / "fast"."""
    from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    return {
        "slow": XLMRobertaTokenizer(trained_sentencepiece_model),
        "fast": XLMRobertaTokenizerFast(vocab_file=trained_sentencepiece_model),
    }


@pytest.fixture(params=["slow", "fast"])
def tokenizer(request, trained_tokenizers):
    """Each of our tokenizers in turn."""
    return trained_tokenizers[request.param]


@pytest.fixture
def state():
    """Tensors of every dtype the formats carry, under canonical and other names."""
    rng = np.random.default_rng(0)
    return {
        "roberta.embeddings.word_embeddings.weight": rng.standard_normal((50, 8)).astype(np.float32),
        "roberta.encoder.layer.0.attention.self.query.weight": rng.standard_normal((8, 8)).astype(np.float16),
        "roberta.encoder.layer.0.attention.self.query.bias": rng.standard_normal(8).astype(
            ml_dtypes.bfloat16
        ),
        "lm_head.bias": np.arange(50, dtype=np.float64),
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
        "flags": np.array([True, False]),
        "scalar": np.array(3.5, dtype=np.float32),
    }
