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
from .configuration import CONFIG_NAME, XLMRobertaConfig
from .formats.base import CheckpointShapeError, LazyTensor, short
from .weight_mapping import BASE_MODEL_PREFIX, LoadReport, match_checkpoint


def resolve_config(directory: str | os.PathLike, config=None, **overrides) -> XLMRobertaConfig:
    """The config a model is built with: `config` (an `XLMRobertaConfig`, a `config.json` path or a
    directory holding one), else the directory's own `config.json`; `overrides` applied on top."""
    directory = Path(directory)
    if config is None:
        if not directory.is_dir():
            raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
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
) -> LoadReport:
    """Match a checkpoint's canonical tensors (arrays or `LazyTensor`s) to the names and
    shapes a model expects.

    Returns the tensors to assign under the model's canonical names (still lazy) and the
    missing and unexpected keys. A shape mismatch is `CheckpointShapeError` naming `where`.
    """
    tensors = canonicalize(tensors, tie_word_embeddings)
    try:
        return match_checkpoint(expected_shapes, tensors, base_model_prefix=base_model_prefix)
    except CheckpointShapeError as error:
        raise CheckpointShapeError(f"{where}: {error}") from None


def loading_info(report: LoadReport) -> dict[str, list[str]]:
    """`{"missing_keys": [...], "unexpected_keys": [...]}`, the reference's `output_loading_info`."""
    return {"missing_keys": list(report.missing), "unexpected_keys": list(report.unexpected)}


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
    if info["unexpected_keys"]:
        logger.warning(
            "%s: checkpoint weights at %s that this model does not use: %s",
            model_name,
            directory,
            info["unexpected_keys"],
        )
