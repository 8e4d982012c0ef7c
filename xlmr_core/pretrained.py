"""The checkpoint bundled with xlmr: a tiny XLM-RoBERTa pretrained by this project.

It lives in the package (`xlmr_core/data/xlmr-tiny`), so `xlmr-convert verify` and the
examples have a trained model without any download. `scripts/pretrain_tiny.py` rebuilds
it; its `README.md` (the model card) says what it was trained on and how well it fills masks.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import clip

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


def require_directory(path: str | os.PathLike, what: str = "checkpoint directory") -> Path:
    """`path` as a `Path` when it is a directory; else the one error every `from_pretrained` gives:
    `NotADirectoryError` for a file (naming the folder that holds it), `FileNotFoundError` when
    nothing is there."""
    path = Path(path)
    if path.is_dir():
        return path
    name = clip(os.fspath(path), 120)
    if path.exists():
        raise NotADirectoryError(
            f"{name} is a file, not a directory: pass the {what} that holds it "
            f"({clip(os.fspath(path.parent), 80)})"
        )
    raise FileNotFoundError(f"{what} {name} does not exist")


def heldout_sentences() -> list[tuple[str, str]]:
    """The (language, text) sentences held out of the bundled model's pretraining."""
    lines = (bundled_checkpoint() / HELDOUT_FILE).read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t", 1)) for line in lines if line]
