"""Language identification data from the bundled held-out utterances, as fine-tuning JSON lines.

    python examples/langid_data.py runs/langid-data
    # -> runs/langid-data/train.jsonl, runs/langid-data/validation.jsonl

The 662 sentences of `xlmr_core/data/xlmr-tiny/heldout.tsv` (never seen in the bundled model's
pretraining), languages with at least `--min-sentences` of them, split deterministically: every
fourth sentence of each language (in file order) goes to validation, the rest to training.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from xlmr_core.pretrained import heldout_sentences


def split(min_sentences: int = 10) -> tuple[list[dict], list[dict]]:
    """(train, validation) records `{"text", "label"}`."""
    sentences = heldout_sentences()
    counts = Counter(language for language, _ in sentences)
    seen: Counter = Counter()
    train, validation = [], []
    for language, text in sentences:
        if counts[language] < min_sentences:
            continue
        (validation if seen[language] % 4 == 3 else train).append({"text": text, "label": language})
        seen[language] += 1
    return train, validation


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--min-sentences", type=int, default=10)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    for name, records in zip(("train", "validation"), split(args.min_sentences)):
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (args.directory / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        print(f"{args.directory / name}.jsonl: {len(records)} sentences")


if __name__ == "__main__":
    main()
