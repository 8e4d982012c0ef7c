"""The loading and saving skeleton of every framework's models, written once.

`ModelIO` is the base of each framework's `CheckpointIO` mixin. It owns the order of things
(config, sentence-transformers files, the checkpoint, matching names and shapes, the loading
report and its warnings, the saved directory); a framework fills in only how its parameters
are listed, initialised and given a checkpoint tensor:

- `canonical_state()`: the weights under their canonical names, as numpy arrays;
- `_canonical_shapes()`: `{canonical name: shape}` of the parameters a checkpoint may fill;
- `_initialise(names)`: fresh values for the parameters `names` (canonical);
- and, per `load_canonical_state` call, an `assign(name, tensor)` that gives the parameter
  `name` the checkpoint's `LazyTensor` (with that call's options: shared memory, adopted maps).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

import numpy as np

from .checkpoint import open_checkpoint, save_checkpoint
from .embeddings import read_sentence_transformers, sentence_transformers_files, write_sentence_transformers
from .formats.base import LazyTensor, as_lazy
from .loading import line_up, loading_info, log_loading_info, resolve_config


class ModelIO:
    """`from_pretrained`, `save_pretrained` and `load_canonical_state`, less the framework's part."""

    # What the framework's class names start with ("TF", "Flax"): the saved architecture is
    # named without it, so every framework picks the same head from the directory.
    class_name_prefix = ""
    # Where the loading warnings go ("xlmr_torch.modeling", ...).
    logger_name = "xlmr_core"

    def canonical_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _canonical_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _initialise(self, names: list[str]) -> None:
        raise NotImplementedError

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        max_shard_size: int | str | None = None,
        *,
        sentence_transformers=False,
    ) -> None:
        """Write `config.json` and `model.safetensors` (or shards) in the shared checkpoint format.

        `sentence_transformers=True` (or a mapping of `pooling`, `normalize`, `max_seq_length`)
        also writes the sentence-transformers files; save the tokenizer into the same directory."""
        files = sentence_transformers_files(
            self.config, sentence_transformers, getattr(self, "sentence_transformers", None)
        )
        architecture = type(self).__name__.removeprefix(self.class_name_prefix)
        config = self.config.copy(architectures=[architecture])
        save_checkpoint(save_directory, self.canonical_state(), config, max_shard_size=max_shard_size)
        write_sentence_transformers(save_directory, files)

    def _load_state(
        self,
        checkpoint: Mapping[str, np.ndarray],
        assign: Callable[[str, LazyTensor], None],
        *,
        initialise: Callable[[list[str]], None] | None = None,
        initialise_missing: bool,
        where: str | os.PathLike,
        ignore_mismatched_sizes: bool,
    ) -> dict[str, list]:
        """Match `checkpoint` (arrays or `LazyTensor`s, canonical names) to the model and `assign`
        it, one tensor at a time; returns the loading report (`xlmr_core.loading.loading_info`).

        Parameters the checkpoint lacks are initialised (by `initialise`, else `_initialise`)
        when `initialise_missing` (a model built without initialising its storage); mismatched
        ones, when ignored, always are.
        """
        report = line_up(
            self._canonical_shapes(),
            checkpoint,
            tie_word_embeddings=self.config.tie_word_embeddings,
            where=where,
            base_model_prefix=self.base_model_prefix,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )
        if (initialise_missing or report.mismatched) and report.to_initialise:
            (initialise or self._initialise)(sorted(report.to_initialise))
        for name, tensor in as_lazy(report.state).items():
            assign(name, tensor)
        return loading_info(report)

    @classmethod
    def _from_directory(
        cls,
        directory: str | os.PathLike,
        build: Callable,
        *,
        config=None,
        config_overrides: Mapping | None = None,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        mmap: bool = False,
        load_options: Mapping | None = None,
    ):
        """The body of every `from_pretrained`: `build(config)` makes the empty model, whose
        `load_canonical_state(tensors, where=..., ignore_mismatched_sizes=..., **load_options)`
        fills it from the directory's weights file."""
        config = resolve_config(directory, config, **(config_overrides or {}))
        sentence_transformers = read_sentence_transformers(directory)
        with open_checkpoint(directory, mmap=mmap) as checkpoint:
            model = build(config)
            info = model.load_canonical_state(
                checkpoint.tensors,
                where=checkpoint.files[0],
                ignore_mismatched_sizes=ignore_mismatched_sizes,
                **(load_options or {}),
            )
        log_loading_info(logging.getLogger(cls.logger_name), cls.__name__, directory, info)
        if sentence_transformers is not None:
            model.sentence_transformers = sentence_transformers  # a plain attribute: not in get_config
        return (model, info) if output_loading_info else model
