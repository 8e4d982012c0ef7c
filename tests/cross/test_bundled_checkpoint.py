"""The checkpoint bundled in xlmr_core: it loads everywhere, agrees everywhere, and has learned.

"Learned" is measured the way its model card reports it: masked-token accuracy on the
sentences held out of pretraining, against a unigram baseline. Here the baseline is the
stronger, oracle one (the held-out masks' own most frequent token), computed independently.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.cross.harness import FRAMEWORKS, OUTPUT_TOLERANCE, load_adapter
from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer, XLMRobertaTokenizerFast
from xlmr_core.fill_mask import masked_evaluation_set, masked_token_accuracy, unigram_baseline_accuracy
from xlmr_core.pretrained import bundled_checkpoint, heldout_sentences

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def evaluation():
    directory = bundled_checkpoint()
    tokenizer = XLMRobertaTokenizer.from_pretrained(directory)
    config = XLMRobertaConfig.from_pretrained(directory)
    texts = [text for _, text in heldout_sentences()]
    return masked_evaluation_set(tokenizer, texts, seed=0, max_length=config.max_sequence_length)


@pytest.fixture(scope="module")
def logits_by_framework(evaluation):
    """Held-out masked logits from every installed framework (each loads the bundled files)."""
    logits = {}
    for framework in FRAMEWORKS:
        try:
            adapter = load_adapter(framework)
        except pytest.skip.Exception:
            continue
        model = adapter.load(bundled_checkpoint(), "ForMaskedLM")
        inputs = {"input_ids": evaluation.input_ids, "attention_mask": evaluation.attention_mask}
        logits[framework] = adapter.forward(model, inputs)["logits"]
    return logits


def test_the_bundled_checkpoint_is_a_complete_small_directory():
    directory = bundled_checkpoint()
    names = {p.name for p in directory.iterdir()}
    assert {"config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json"} <= names
    assert sum(p.stat().st_size for p in directory.iterdir()) < 8 * 2**20


def test_the_model_card_records_corpus_and_licence():
    card = (bundled_checkpoint() / "README.md").read_text(encoding="utf-8")
    assert "chatterbot-corpus" in card and "BSD 3-Clause" in card


def test_slow_and_fast_tokenizers_agree_on_the_heldout_text():
    directory = bundled_checkpoint()
    slow = XLMRobertaTokenizer.from_pretrained(directory)
    fast = XLMRobertaTokenizerFast.from_pretrained(directory)
    texts = [text for _, text in heldout_sentences()]
    assert slow(texts)["input_ids"] == fast(texts)["input_ids"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fill_mask_beats_the_unigram_baseline_on_heldout_text(framework, evaluation, logits_by_framework):
    if framework not in logits_by_framework:
        pytest.skip(f"{framework} is not installed")
    masked = evaluation.labels[evaluation.labels != -100]
    oracle_unigram = unigram_baseline_accuracy(evaluation.labels, Counter(masked.tolist()))
    accuracy = masked_token_accuracy(logits_by_framework[framework], evaluation.labels)
    assert accuracy > oracle_unigram + 0.05, (accuracy, oracle_unigram)


@pytest.mark.parametrize("pair", list(itertools.combinations(FRAMEWORKS, 2)), ids="-".join)
def test_frameworks_agree_on_the_bundled_model(pair, evaluation, logits_by_framework):
    missing = [fw for fw in pair if fw not in logits_by_framework]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    a, b = (logits_by_framework[fw] for fw in pair)
    real = evaluation.attention_mask.astype(bool)
    # Trained logits reach ~20: the float32 bound is relative to that scale (as in verify).
    scale = max(1.0, float(np.abs(a[real]).max()))
    assert float(np.abs(a[real] - b[real]).max()) <= OUTPUT_TOLERANCE * scale
    assert np.array_equal(a[real].argmax(-1), b[real].argmax(-1))


def test_verify_without_an_argument_checks_the_bundled_checkpoint(capsys):
    pytest.importorskip("torch")
    from conversion.cli import main

    assert main(["verify", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert str(bundled_checkpoint()) in out and "PASS" in out


def test_the_fill_mask_example_runs_quietly_and_the_frameworks_agree():
    for module in ("torch", "tensorflow", "flax"):
        pytest.importorskip(module)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "fill_mask.py")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "top guesses identical across torch, tf, flax" in result.stdout
    assert result.stderr.strip() == ""
