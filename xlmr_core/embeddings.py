"""Sentence embeddings: one vector per text, and the sentence-transformers files that say how.

Every framework's base model has `encode(texts, tokenizer, ...)` (`xlmr_torch/encoding.py`,
`xlmr_tf/encoding.py`, `xlmr_flax/encoding.py`). Each only runs its encoder on the batches
`encode_texts` hands it and gives the token vectors back as numpy; the checks, the batching,
the pooling arithmetic and the defaults are here, once, so the three give the same numbers
and the same errors.

A checkpoint directory written by sentence-transformers (multilingual-e5, bge-m3, the
paraphrase-multilingual models) says how its embeddings are made: `modules.json` lists the
modules (the encoder, a `Pooling`, perhaps a `Normalize`), `1_Pooling/config.json` the pooling,
`sentence_bert_config.json` the longest input. `read_sentence_transformers` reads them for
`from_pretrained`, and `encode` then defaults to what they say; `save_pretrained(...,
sentence_transformers=True)` writes them (`sentence_transformers_files`), so the directory
loads in sentence-transformers as well.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_text
from .errors import CheckpointError, clip, short
from .json_text import parse_json
from .modeling_utils import check_index_range

POOLING_MODES = ("mean", "cls", "max")
DEFAULT_POOLING = "mean"
DEFAULT_NORMALIZE = True
DEFAULT_MAX_LENGTH = 512
DEFAULT_BATCH_SIZE = 32

MODULES_NAME = "modules.json"
# The sentence-transformers settings files are a few hundred bytes; larger is no such file.
MAX_SETTINGS_BYTES = 1_000_000
SENTENCE_BERT_CONFIG_NAME = "sentence_bert_config.json"
SENTENCE_TRANSFORMERS_CONFIG_NAME = "config_sentence_transformers.json"
POOLING_CONFIG_NAME = "config.json"

# The class references sentence-transformers writes for these modules in `modules.json`
# (the spelling published checkpoints carry; every release since 2.0 reads it).
TRANSFORMER_TYPE = "sentence_transformers.models.Transformer"
POOLING_TYPE = "sentence_transformers.models.Pooling"
NORMALIZE_TYPE = "sentence_transformers.models.Normalize"

# `1_Pooling/config.json` of sentence-transformers < 5.4 (and most published checkpoints):
# one flag per mode, in the order several modes are concatenated.
LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}

# `show_progress_bar=None` shows a bar (on a terminal) for inputs of more batches than this.
PROGRESS_BAR_MIN_BATCHES = 4

# Compiled encoders (Flax `jit`) see few shapes: batch lengths are rounded up to a multiple of
# `LENGTH_QUANTUM` whose count of quanta has at most `LENGTH_SIGNIFICANT_BITS` significant bits
# (16, 32, 48, 64, 96, 128, 192, 256, 384, 512): ten programs up to 512 tokens, each length at
# most a third larger than what it holds. The unpadded token budget is rounded up to a quarter
# of the padded batch (`BUDGET_STEPS`) and used only when it is at most `UNPADDED_MAX_FILL` of it:
# an unpadded program takes 3-5x a padded one to compile (the block-pair layout), which a quarter
# of the batch saved rarely repays, so each length has at most two budgets and the padded path.
LENGTH_QUANTUM = 16
LENGTH_SIGNIFICANT_BITS = 2
BUDGET_STEPS = 4
UNPADDED_MAX_FILL = 0.5


# ----------------------------------------------------------------------------- pooling


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool `[batch, sequence, hidden]` token vectors into `[batch, hidden]` float32.

    `mean` averages the tokens the attention mask keeps, `max` takes each dimension's largest
    value over them, `cls` the first kept token (`<s>`; the first position with right padding).
    The arithmetic is sentence-transformers' `Pooling`.
    """
    check_pooling(pooling)
    hidden = np.asarray(token_embeddings, dtype=np.float32)
    mask = np.asarray(attention_mask)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"pool needs token_embeddings [batch, sequence, hidden] and attention_mask [batch, sequence]; "
            f"got {hidden.shape} and {mask.shape}"
        )
    keep = mask.astype(bool)
    if pooling == "cls":
        first = keep.argmax(axis=1)  # the first kept position, whichever side was padded
        return hidden[np.arange(len(hidden)), first]
    if pooling == "max":
        return np.where(keep[..., None], hidden, np.float32(-np.inf)).max(axis=1)
    weights = keep[..., None].astype(np.float32)
    count = np.maximum(weights.sum(axis=1), np.float32(1e-9))
    return (hidden * weights).sum(axis=1) / count


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (a zero row stays zero), as `torch.nn.functional.normalize`."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norms, np.float32(1e-12))


def check_pooling(pooling) -> str:
    """Raise `ValueError` unless `pooling` is one of `POOLING_MODES`."""
    if not isinstance(pooling, str) or pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be 'mean', 'cls' or 'max', got {short(pooling, 60)}")
    return pooling


# ----------------------------------------------------------------------------- sentence-transformers files


@dataclass(frozen=True)
class SentenceTransformersSettings:
    """How a sentence-transformers directory makes its embeddings (what `encode` defaults to).

    `pooling` is the mode, or a tuple of modes when the directory concatenates several;
    `unsupported_modules` names modules `encode` cannot apply (a `Dense` projection, ...).
    `source` is the directory it was read from, for messages.
    """

    pooling: str | tuple[str, ...] = DEFAULT_POOLING
    normalize: bool = DEFAULT_NORMALIZE
    max_seq_length: int | None = None
    do_lower_case: bool = False
    unsupported_modules: tuple[str, ...] = ()
    source: str = ""


def _read_json(path: Path, kind: type):
    """`path`'s JSON content, checked to be a `kind` (dict or list); one-line `CheckpointError` if not."""
    # Its size is checked before it is read, its nesting before `json` (whose parser recurses) sees it.
    try:
        size = path.stat().st_size
        raw = path.read_bytes() if size <= MAX_SETTINGS_BYTES else None
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read as JSON: {clip(error, 120)}") from None
    if raw is None:
        raise CheckpointError(f"{path} cannot be read as JSON: {size} bytes (at most {MAX_SETTINGS_BYTES})")
    data = parse_json(raw, f"{path} cannot be read as JSON", CheckpointError)
    if not isinstance(data, kind):
        expected = "an object" if kind is dict else "a list"
        raise CheckpointError(f"{path} must hold {expected}, got {type(data).__name__}")
    return data


def _module_path(directory: Path, module: dict, modules_file: Path) -> Path:
    """The folder a `modules.json` entry points at, refusing paths that leave the directory."""
    relative = module.get("path", "")
    if not isinstance(relative, str) or Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise CheckpointError(f"{modules_file}: module path {short(relative, 60)} is not a folder inside it")
    return directory / relative


def _read_pooling(path: Path) -> str | tuple[str, ...]:
    config = _read_json(path, dict)
    if "pooling_mode" in config:  # sentence-transformers >= 5.4
        modes = config["pooling_mode"]
        modes = (modes,) if isinstance(modes, str) else modes
        if not isinstance(modes, list | tuple) or not modes or not all(isinstance(m, str) for m in modes):
            raise CheckpointError(f"{path}: pooling_mode must be a mode name or a list of them")
    else:
        modes = [mode for key, mode in LEGACY_POOLING_FLAGS.items() if config.get(key) is True]
        modes = modes or [DEFAULT_POOLING]  # sentence-transformers' default when no flag is set
    return modes[0] if len(modes) == 1 else tuple(modes)


def _read_transformer_config(path: Path) -> tuple[int | None, bool]:
    """(max_seq_length, do_lower_case) from a Transformer module's `sentence_bert_config.json`."""
    if not path.is_file():
        return None, False
    config = _read_json(path, dict)
    max_seq_length = config.get("max_seq_length")
    if max_seq_length is not None and (
        not isinstance(max_seq_length, int) or isinstance(max_seq_length, bool) or max_seq_length < 1
    ):
        raise CheckpointError(
            f"{path}: max_seq_length must be a positive integer, got {short(max_seq_length)}"
        )
    return max_seq_length, config.get("do_lower_case") is True


def read_sentence_transformers(directory: str | os.PathLike) -> SentenceTransformersSettings | None:
    """The sentence-transformers settings of a checkpoint directory, or None when it has none.

    Reads `modules.json`, the `Pooling` module's `config.json` (both the per-mode flags of
    older releases and the `pooling_mode` of newer ones), the `Transformer` module's
    `sentence_bert_config.json` (`max_seq_length`, `do_lower_case`) and whether a `Normalize`
    module is listed. A malformed file is a `CheckpointError` naming it.
    """
    directory = Path(directory)
    modules_file = directory / MODULES_NAME
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file, list)
    settings = {"pooling": DEFAULT_POOLING, "normalize": False}
    has_pooling = False
    unsupported = []
    for index, module in enumerate(modules):
        kind = module.get("type") if isinstance(module, dict) else None
        if not isinstance(kind, str):
            raise CheckpointError(f"{modules_file}: entry {index} has no module type")
        name = kind.rpartition(".")[2]
        folder = _module_path(directory, module, modules_file)
        if name == "Transformer":
            settings["max_seq_length"], settings["do_lower_case"] = _read_transformer_config(
                folder / SENTENCE_BERT_CONFIG_NAME
            )
        elif name == "Pooling":
            if has_pooling:
                unsupported.append(f"a second Pooling ({module.get('path', '')})")
                continue
            pooling_file = folder / POOLING_CONFIG_NAME
            if not pooling_file.is_file():
                raise CheckpointError(f"{modules_file} lists a Pooling module but {pooling_file} is missing")
            settings["pooling"] = _read_pooling(pooling_file)
            has_pooling = True
        elif name == "Normalize":
            settings["normalize"] = True
        else:
            unsupported.append(f"{name} ({module.get('path', '')})")
    return SentenceTransformersSettings(
        **settings, unsupported_modules=tuple(unsupported), source=str(directory)
    )


def sentence_transformers_files(
    config, request=True, stored: SentenceTransformersSettings | None = None
) -> dict[str, str]:
    """The sentence-transformers files for a checkpoint of `config`, `{relative path: text}`.

    `request` is `save_pretrained`'s `sentence_transformers` argument: False (no files: `{}`),
    True (the settings the model was loaded with, else mean pooling, normalized, at most 512
    tokens) or a mapping overriding some of `pooling`, `normalize`, `max_seq_length`. Called
    before anything is written; a model whose directory had modules we cannot write back is refused.
    """
    if request is False or request is None:
        return {}
    if stored is not None and stored.unsupported_modules:
        raise ValueError(
            f"cannot write sentence-transformers files: {stored.source} also has "
            f"{', '.join(stored.unsupported_modules)}, which xlmr does not carry"
        )
    overrides = {}
    if isinstance(request, Mapping):
        unknown = sorted(set(request) - {"pooling", "normalize", "max_seq_length"})
        if unknown:
            raise ValueError(
                f"sentence_transformers got unknown keys {unknown}; "
                "it takes pooling, normalize and max_seq_length"
            )
        overrides = dict(request)
    elif request is not True:
        raise TypeError(
            f"sentence_transformers must be True, False or a mapping, got {type(request).__name__}"
        )
    limit = config.max_sequence_length
    base = stored or SentenceTransformersSettings(max_seq_length=min(DEFAULT_MAX_LENGTH, limit))
    pooling = overrides.get("pooling", base.pooling)
    check_pooling(pooling)
    normalized = overrides.get("normalize", base.normalize)
    if not isinstance(normalized, bool):
        raise TypeError(f"sentence_transformers normalize must be True or False, got {short(normalized)}")
    # A directory that kept its length in the tokenizer's files (sentence-transformers >= 5) keeps
    # it there; otherwise the length is written, as sentence-transformers would allow a position
    # table's full `max_position_embeddings` (two more than it holds).
    max_seq_length = overrides.get("max_seq_length", base.max_seq_length)
    transformer_config = {"do_lower_case": base.do_lower_case}
    if max_seq_length is not None or stored is None:
        max_seq_length = min(DEFAULT_MAX_LENGTH, limit) if max_seq_length is None else max_seq_length
        transformer_config = {"max_seq_length": max_seq_length, **transformer_config}
    if max_seq_length is not None and (
        not isinstance(max_seq_length, int) or isinstance(max_seq_length, bool) or max_seq_length < 1
    ):
        raise ValueError(
            f"sentence_transformers max_seq_length must be a positive integer, got {short(max_seq_length)}"
        )
    if max_seq_length is not None and max_seq_length > limit:
        raise ValueError(
            f"sentence_transformers max_seq_length={max_seq_length} is longer than the position table allows "
            f"(at most {limit})"
        )

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": TRANSFORMER_TYPE},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING_TYPE},
    ]
    if normalized:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": NORMALIZE_TYPE})
    pooling_config = {"word_embedding_dimension": config.hidden_size}
    pooling_config.update({key: mode == pooling for key, mode in LEGACY_POOLING_FLAGS.items()})
    pooling_config["include_prompt"] = True
    model_config = {
        "model_type": "SentenceTransformer",
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    as_text = lambda data: json.dumps(data, indent=2) + "\n"  # noqa: E731
    return {
        MODULES_NAME: as_text(modules),
        SENTENCE_BERT_CONFIG_NAME: as_text(transformer_config),
        SENTENCE_TRANSFORMERS_CONFIG_NAME: as_text(model_config),
        f"1_Pooling/{POOLING_CONFIG_NAME}": as_text(pooling_config),
    }


def write_sentence_transformers(directory: str | os.PathLike, files: Mapping[str, str]) -> None:
    """Write `sentence_transformers_files(...)` into `directory`, each file atomically (none: nothing).

    `Normalize` keeps no files, but sentence-transformers expects its folder to exist.
    """
    if not files:
        return
    directory = Path(directory)
    modules = json.loads(files[MODULES_NAME])
    for module in modules:
        (directory / module["path"]).mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        atomic_write_text(directory / relative, text)


# ----------------------------------------------------------------------------- encode


def _check_texts(texts) -> tuple[list[str], bool]:
    """(the texts as a list, whether one string was given); `TypeError` naming a bad item."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, bytes | bytearray | Mapping) or not hasattr(texts, "__iter__"):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be a string, got {type(text).__name__} ({short(text, 40)})")
    return texts, False


def encode_length(length: int, limit: int) -> int:
    """The padded length of a batch whose longest text has `length` tokens, under compilation:
    the next of the few bucket lengths (see `LENGTH_SIGNIFICANT_BITS`), capped at `limit`."""
    quanta = max(1, -(-int(length) // LENGTH_QUANTUM))
    step = 1 << max(quanta.bit_length() - LENGTH_SIGNIFICANT_BITS, 0)
    return min(-(-quanta // step) * step * LENGTH_QUANTUM, int(limit))


def encode_token_budget(real_tokens: int, capacity: int) -> int | None:
    """The packed length `encode` runs a compiled unpadded batch at: `real_tokens` rounded up to
    a quarter of `capacity` (rows x length), or None (the padded path) when that is more than
    `UNPADDED_MAX_FILL` of it."""
    if not 0 <= real_tokens <= capacity:
        raise ValueError(
            f"encode_token_budget: {real_tokens} real tokens do not fit a capacity of {capacity}"
        )
    budget = -(-real_tokens * BUDGET_STEPS // capacity) * capacity // BUDGET_STEPS
    return None if budget > capacity * UNPADDED_MAX_FILL else max(budget, 1)


def _check_token_ids(ids: list[list[int]], config) -> None:
    """Every id the tokenizer gave is a row of the model's embedding table: checked here, once,
    because a compiled forward (Flax `jit`, a TF graph) would not stop on it in the same words."""
    low = min((min(row) for row in ids if row), default=0)
    high = max((max(row) for row in ids if row), default=0)
    check_index_range("input_ids", low, high, config.vocab_size)


def _positive_int(name: str, value) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {short(value, 40)}")
    return int(value)


def resolve_encode_options(
    config,
    settings: SentenceTransformersSettings | None,
    tokenizer,
    pooling: str | None,
    normalize_: bool | None,
    max_length: int | None,
) -> tuple[str, bool, int]:
    """(pooling, normalize, max_length) `encode` uses: the arguments given, else the directory's
    sentence-transformers settings, else mean / True / 512 (or the tokenizer's `model_max_length`
    when smaller); the length is then capped at what the position table holds."""
    if pooling is not None:
        check_pooling(pooling)
    if normalize_ is not None and not isinstance(normalize_, bool | np.bool_):
        raise TypeError(f"normalize must be True or False, got {short(normalize_, 40)}")
    if max_length is not None:
        max_length = _positive_int("max_length", max_length)
    if settings is not None:
        if settings.unsupported_modules:
            raise ValueError(
                f"{settings.source}/{MODULES_NAME} also lists {', '.join(settings.unsupported_modules)}, "
                "which encode does not apply; set model.sentence_transformers = None to pool without it"
            )
        if pooling is None and settings.pooling not in POOLING_MODES:
            raise ValueError(
                f"{settings.source} pools with {short(settings.pooling, 60)}; encode supports 'mean', "
                "'cls' or 'max' (pass pooling=...)"
            )
        pooling = settings.pooling if pooling is None else pooling
        normalize_ = settings.normalize if normalize_ is None else normalize_
        max_length = settings.max_seq_length if max_length is None else max_length
    if max_length is None:
        max_length = DEFAULT_MAX_LENGTH
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < max_length:
            max_length = tokenizer_limit  # as sentence-transformers, which truncates at the tokenizer's
    pooling = DEFAULT_POOLING if pooling is None else pooling
    normalize_ = DEFAULT_NORMALIZE if normalize_ is None else bool(normalize_)
    return pooling, normalize_, min(max_length, config.max_sequence_length)


def _progress_bar(show, total: int, batches: int):
    """A tqdm bar over `total` texts, or None. `show=None`: on a terminal, for many batches."""
    if show is None:
        show = batches > PROGRESS_BAR_MIN_BATCHES and getattr(sys.stderr, "isatty", lambda: False)()
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encode", unit="text")


def encode_texts(
    texts,
    tokenizer,
    token_embeddings: Callable[[np.ndarray, np.ndarray], np.ndarray],
    config,
    settings: SentenceTransformersSettings | None = None,
    *,
    pooling: str | None = None,
    normalize: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    show_progress_bar: bool | None = None,
    fixed_shapes: bool = False,
) -> np.ndarray:
    """Embed `texts` with `token_embeddings(input_ids, attention_mask) -> [batch, sequence, hidden]`.

    This is what every framework's `encode` runs; see `resolve_encode_options` for the
    defaults. Texts are tokenized (truncated at `max_length`), sorted longest first into
    batches of `batch_size` padded to their longest, pooled, optionally L2-normalized, and put
    back in input order. Returns float32 `[len(texts), hidden]`, or `[hidden]` for a single
    string (as sentence-transformers). `fixed_shapes=True` pads every batch to the first one's
    rows and its length to the next `encode_length` bucket, so a compiled model sees few shapes.
    """
    texts, single = _check_texts(texts)
    batch_size = _positive_int("batch_size", batch_size)
    pooling, normalize_, max_length = resolve_encode_options(
        config, settings, tokenizer, pooling, normalize, max_length
    )
    result = np.zeros((len(texts), config.hidden_size), np.float32)
    if not texts:
        return result[0] if single else result
    if settings is not None and settings.do_lower_case:
        texts = [text.lower() for text in texts]

    ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"]
    _check_token_ids(ids, config)
    # Longest first: similar lengths share a batch (little padding), and a batch too large
    # for memory fails at once rather than at the end.
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    bar = _progress_bar(show_progress_bar, len(texts), len(batches))
    try:
        for batch in batches:
            rows = [ids[i] for i in batch]
            length = max(len(row) for row in rows)
            if fixed_shapes:
                length = encode_length(length, config.max_sequence_length)
                # Stand-in rows (dropped below) so every batch has the same number of rows.
                rows += [rows[0]] * (min(batch_size, len(texts)) - len(rows))
            input_ids = np.full((len(rows), length), config.pad_token_id, np.int64)
            attention_mask = np.zeros((len(rows), length), np.int64)
            for r, row in enumerate(rows):
                input_ids[r, : len(row)] = row
                attention_mask[r, : len(row)] = 1
            hidden = np.asarray(token_embeddings(input_ids, attention_mask), dtype=np.float32)
            pooled = pool(hidden, attention_mask, pooling)[: len(batch)]
            result[batch] = l2_normalize(pooled) if normalize_ else pooled
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return result[0] if single else result
