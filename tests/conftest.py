"""Shared fixtures: where the optional real test assets live, quiet framework start-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# TensorFlow and JAX print start-up noise; keep test output readable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a GPU, torch and JAX share the device: JAX must not claim 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("XLMR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_asset(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"test asset {name} not found in {SHARED_DATA} (set XLMR_SHARED_DATA to its folder)")
    return path


@pytest.fixture
def xlmr_sentencepiece_model() -> Path:
    """The real XLM-R SentencePiece vocabulary (250,000 pieces), when available."""
    return shared_asset("xlmr-sentencepiece.bpe.model")


@pytest.fixture
def xlmr_tokenizer_json() -> Path:
    """A published XLM-R fast-tokenizer file, when available."""
    return shared_asset("xlmr-tokenizer.json")


@pytest.fixture
def small_sentencepiece_model() -> Path:
    """The reference library's small (1,000 pieces) SentencePiece test model, when available."""
    return shared_asset("test_sentencepiece.model")


@pytest.fixture
def small_blocks(monkeypatch):
    """Attention blocks of `tests.block_batches.BLOCK` rows, so tiny batches span several blocks."""
    from tests.block_batches import BLOCK
    from xlmr_core import unpadding

    monkeypatch.setattr(unpadding, "ATTENTION_BLOCK", BLOCK)
