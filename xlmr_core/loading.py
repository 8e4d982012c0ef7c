"""What the three frameworks' `from_pretrained` share: the config, lining weights up, the report.

Each framework builds its model, says which canonical names and shapes it expects, and
assigns the tensors `line_up` hands back, one at a time; the config resolution, the file
reading, the name matching and the wording of the report are all here, so every framework
loads every directory the same way and says the same thing about it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .checkpoint import canonicalize
from .configuration import CONFIG_NAME, UnknownKeywordError, XLMRobertaConfig
from .errors import CheckpointShapeError, short
from .formats.base import LazyTensor
from .overrides import DTYPE_FIELDS, DTYPE_HINT
from .pretrained import require_directory
from .weight_mapping import BASE_MODEL_PREFIX, LoadReport, match_checkpoint


def resolve_config(directory: str | os.PathLike, config=None, **overrides) -> XLMRobertaConfig:
    """The config a model is built with: `config` (an `XLMRobertaConfig`, a `config.json` path or a
    directory holding one), else the directory's own `config.json`; `overrides` applied on top.

    A dtype keyword that reaches here was not taken by the framework's loader: refused, never
    written into the config (see `xlmr_core.overrides`)."""
    for key in DTYPE_FIELDS:
        if key in overrides:
            raise UnknownKeywordError(DTYPE_HINT.format(key=key))
    directory = Path(directory)
    if config is None:
        require_directory(directory)
        if not (directory / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"{directory} has no {CONFIG_NAME} (tools that save weights only leave it out): pass "
                "config=XLMRobertaConfig(...) or config='path/to/config.json' to from_pretrained"
            )
        return XLMRobertaConfig.from_pretrained(directory, **overrides)
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if path.is_dir():
            return XLMRobertaConfig.from_pretrained(path, **overrides)
        if not path.is_file():
            raise FileNotFoundError(f"config={short(os.fspath(path))}: no such file or directory")
        return XLMRobertaConfig.from_json_file(path, **overrides)
    if isinstance(config, XLMRobertaConfig):
        return config.copy(**overrides) if overrides else config
    raise TypeError(
        f"config must be an XLMRobertaConfig or a path to a config.json, got {type(config).__name__}"
    )


def line_up(
    expected_shapes: Mapping[str, Iterable[int]],
    tensors: Mapping[str, LazyTensor | np.ndarray],
    *,
    tie_word_embeddings: bool,
    where: str | os.PathLike,
    base_model_prefix: str = BASE_MODEL_PREFIX,
    ignore_mismatched_sizes: bool = False,
) -> LoadReport:
    """Match a checkpoint's canonical tensors (arrays or `LazyTensor`s) to the names and
    shapes a model expects.

    Returns the tensors to assign under the model's canonical names (still lazy) and the
    missing and unexpected keys. A shape mismatch is `CheckpointShapeError` naming `where`;
    with `ignore_mismatched_sizes=True` the tensor is listed in `report.mismatched` instead,
    and the framework initialises it afresh with the rest of `report.to_initialise`.
    """
    if not isinstance(ignore_mismatched_sizes, bool):
        raise TypeError(
            f"ignore_mismatched_sizes must be True or False, got {short(ignore_mismatched_sizes, 40)}"
        )
    tensors = canonicalize(tensors, tie_word_embeddings)
    try:
        return match_checkpoint(
            expected_shapes,
            tensors,
            base_model_prefix=base_model_prefix,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )
    except CheckpointShapeError as error:
        raise CheckpointShapeError(f"{where}: {error}") from None


def loading_info(report: LoadReport) -> dict[str, list]:
    """`{"missing_keys": [...], "unexpected_keys": [...]}`, the reference's `output_loading_info`,
    with `"mismatched_keys": [(name, checkpoint shape, model shape), ...]` when mismatches were
    ignored (`ignore_mismatched_sizes=True`)."""
    info: dict[str, list] = {"missing_keys": list(report.missing), "unexpected_keys": list(report.unexpected)}
    if report.mismatched is not None:
        info["mismatched_keys"] = list(report.mismatched)
    return info


def log_loading_info(
    logger: logging.Logger, model_name: str, directory, info: Mapping[str, list[str]]
) -> None:
    """The warnings every framework gives about weights it had to initialise or did not use."""
    if info["missing_keys"]:
        logger.warning(
            "%s: weights not in the checkpoint at %s were newly initialised: %s",
            model_name,
            directory,
            info["missing_keys"],
        )
    if info.get("mismatched_keys"):
        logger.warning(
            "%s: weights at %s whose shape differs from the model's were newly initialised "
            "(ignore_mismatched_sizes=True): %s",
            model_name,
            directory,
            "; ".join(
                f"{name}: checkpoint {ours}, model {want}" for name, ours, want in info["mismatched_keys"]
            ),
        )
    if info["unexpected_keys"]:
        logger.warning(
            "%s: checkpoint weights at %s that this model does not use: %s",
            model_name,
            directory,
            info["unexpected_keys"],
        )
