"""The checkpoint bundled with xlmr: a tiny XLM-RoBERTa pretrained by this project.

It lives in the package (`xlmr_core/data/xlmr-tiny`), so `xlmr-convert verify` and the
examples have a trained model without any download. `scripts/pretrain_tiny.py` rebuilds
it; its `README.md` (the model card) says what it was trained on and how well it fills masks.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_CHECKPOINT = Path(__file__).parent / "data" / "xlmr-tiny"
HELDOUT_FILE = "heldout.tsv"


def bundled_checkpoint() -> Path:
    """The directory of the bundled checkpoint; load it with any `from_pretrained`."""
    if not (BUNDLED_CHECKPOINT / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled checkpoint is missing from {BUNDLED_CHECKPOINT}; "
            "reinstall xlmr or rebuild it with scripts/pretrain_tiny.py"
        )
    return BUNDLED_CHECKPOINT


def heldout_sentences() -> list[tuple[str, str]]:
    """The (language, text) sentences held out of the bundled model's pretraining."""
    lines = (bundled_checkpoint() / HELDOUT_FILE).read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t", 1)) for line in lines if line]
