"""The longest input a written tokenizer claims: the model's, whenever the model's config is known.

A tokenizer built from a SentencePiece model alone has no limit (the reference's 1e30), and a
`tokenizer_config.json` that says so makes `truncation=True` a no-op and tells sentence-transformers
the model takes `max_position_embeddings` tokens (two more than it does). Every writer of tokenizer
files that knows the config (a tokenizer saved beside a `config.json`, a model saved beside a
tokenizer, `xlmr-convert convert` / `import-fairseq` / `export`, `scripts/pretrain_tiny.py`) writes
`model_max_length` through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._atomic import atomic_write_text
from .configuration import CONFIG_NAME, ConfigError, XLMRobertaConfig
from .json_text import parse_json

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


def model_max_length(config: XLMRobertaConfig) -> int:
    """Tokens one sequence may hold: `max_position_embeddings - 2` for absolute positions (XLM-R's
    positions start after the padding id), `max_position_embeddings` for relative ones."""
    return config.max_sequence_length


def directory_limit(directory: str | os.PathLike) -> int | None:
    """`model_max_length` of the `config.json` in `directory`, or None when there is none."""
    path = Path(directory) / CONFIG_NAME
    return model_max_length(XLMRobertaConfig.from_json_file(path)) if path.is_file() else None


def fit_tokenizer_config(directory: str | os.PathLike, config: XLMRobertaConfig) -> bool:
    """Lower `model_max_length` in `directory`'s `tokenizer_config.json` (if there is one) to what
    `config`'s model takes; a smaller value already there is kept. Returns whether it changed.

    A file that is not a JSON object is left as it is: copying tools carry it along unread, and
    the tokenizer's own loader names what is wrong with it."""
    path = Path(directory) / TOKENIZER_CONFIG_FILE
    if not path.is_file():
        return False
    try:
        data = parse_json(path.read_bytes(), str(path), ConfigError)
    except ConfigError:
        return False
    limit = model_max_length(config)
    current = data.get("model_max_length") if isinstance(data, dict) else None
    if not isinstance(data, dict) or (isinstance(current, (int, float)) and current <= limit):
        return False
    data["model_max_length"] = limit
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False))
    return True
