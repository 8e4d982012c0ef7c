"""Batch-encode 10,000 multilingual sentences with our XLM-R tokenizers and the reference's, side by side.

    python benchmarks/bench_tokenizers.py [--count 10000] [--batch 1000] [--repeats 3]

Uses the real XLM-R vocabulary from ../shared/data (or $XLMR_SHARED_DATA); prints sentences per second
and our/reference ratios. Targets: fast >= 0.95x the reference fast, slow >= 1.0x the reference slow.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.core.texts import benchmark_sentences  # noqa: E402


def best_time(encode, sentences, batch: int, repeats: int) -> float:
    """Best of `repeats` wall times to encode all `sentences` in batches of `batch`."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(sentences), batch):
            encode(sentences[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return best


def vocabulary_path() -> Path:
    """The real XLM-R SentencePiece model: ../shared/data, or the folder $XLMR_SHARED_DATA names."""
    data = Path(os.environ.get("XLMR_SHARED_DATA", REPO.parent / "shared" / "data"))
    return data / "xlmr-sentencepiece.bpe.model"


def build_tokenizers(model: Path) -> dict:
    """Ours and the reference's slow and fast tokenizers over the SentencePiece `model`.

    Raises FileNotFoundError when `model` is missing and ImportError when the reference is.
    """
    if not model.is_file():
        raise FileNotFoundError(
            f"the real XLM-R vocabulary {model} is missing; set XLMR_SHARED_DATA to the folder holding it"
        )
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            "the reference library is missing: pip install 'transformers==4.57.6' (the parity extra)"
        ) from error

    from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    return {
        "ours slow": XLMRobertaTokenizer(model),
        "reference slow": transformers.XLMRobertaTokenizer(str(model)),
        "ours fast": XLMRobertaTokenizerFast(vocab_file=model),
        "reference fast": transformers.XLMRobertaTokenizerFast(vocab_file=str(model)),
    }


def sentence_rates(tokenizers: dict, sentences, batch: int, repeats: int) -> dict[str, float]:
    """Sentences per second of each tokenizer (best of `repeats`), batch-encoding with padding."""
    rates = {}
    for name, tokenizer in tokenizers.items():
        seconds = best_time(lambda texts, tok=tokenizer: tok(texts, padding=True), sentences, batch, repeats)
        rates[name] = len(sentences) / seconds
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    try:
        tokenizers = build_tokenizers(vocabulary_path())
    except (FileNotFoundError, ImportError) as error:
        sys.exit(str(error))
    sentences = benchmark_sentences(args.count)
    print(f"{len(sentences)} sentences, batches of {args.batch}, best of {args.repeats}, padding=True")
    rates = {}
    for name, tokenizer in tokenizers.items():
        rates.update(sentence_rates({name: tokenizer}, sentences, args.batch, args.repeats))
        print(f"  {name:15s} {rates[name]:12,.0f} sentences/s")
    for kind, target in (("slow", 1.0), ("fast", 0.95)):
        ratio = rates[f"ours {kind}"] / rates[f"reference {kind}"]
        verdict = "meets" if ratio >= target else "MISSES"
        print(f"ours/reference {kind}: {ratio:.2f}x ({verdict} the {target:.2f}x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
