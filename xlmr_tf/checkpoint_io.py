"""Loading and saving Keras models in the shared checkpoint format (any weights file).

`CheckpointIO` is mixed into `TFXLMRobertaPreTrainedModel`; files, names and the loading
report come from `xlmr_core` (`checkpoint`, `loading`, `weight_mapping`), so this module
only moves arrays in and out of Keras variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from xlmr_core.checkpoint import open_checkpoint, save_checkpoint
from xlmr_core.embeddings import (
    read_sentence_transformers,
    sentence_transformers_files,
    write_sentence_transformers,
)
from xlmr_core.loading import line_up, loading_info, log_loading_info, resolve_config
from xlmr_core.weight_mapping import parameter_kind, to_canonical_state, to_framework_state

logger = logging.getLogger("xlmr_tf.modeling")


# Tensors larger than this are assigned in blocks of rows, so that no whole copy is made.
ASSIGN_BLOCK_BYTES = 64 * 2**20


def _assign(variable, tensor) -> None:
    """`variable.assign(tensor)`, in row blocks read one at a time when the tensor is large."""
    target = variable.value  # the backend variable (tables are never auto-cast)
    if tensor.rows is None or tensor.nbytes <= ASSIGN_BLOCK_BYTES or not isinstance(target, tf.Variable):
        variable.assign(np.asarray(tensor.load()).astype(variable.dtype, copy=False))
        return
    step = max(1, ASSIGN_BLOCK_BYTES * tensor.shape[0] // tensor.nbytes)
    for start in range(0, tensor.shape[0], step):
        block = tensor.load_rows(start, start + step).astype(variable.dtype, copy=False)
        # A scatter, not `target[a:b].assign`: a tf.distribute variable's slices are plain tensors.
        target.scatter_update(tf.IndexedSlices(block, tf.range(start, start + len(block))))


class CheckpointIO:
    """`from_pretrained`, `save_pretrained` and the canonical state of a Keras model."""

    # The bare model's canonical names carry no `roberta.` prefix (as torch's XLMRobertaModel),
    # although its layers sit under a `roberta` scope like the heads' (as in the reference).
    strip_base_prefix = False

    def _variables_by_path(self) -> dict:
        """Every variable by its path below the model (`roberta/embeddings/...`), in the tf spelling."""
        return {variable.path.split("/", 1)[1]: variable for variable in self.weights}

    def to_canonical(self, framework_state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`{tf path: array}` (weights, gradients, ...) -> canonical names and layout."""
        state = to_canonical_state(framework_state, "tf")
        if self.strip_base_prefix:
            state = {name.removeprefix(f"{self.base_model_prefix}."): array for name, array in state.items()}
        return state

    def from_canonical(self, canonical_state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inverse of `to_canonical`."""
        if self.strip_base_prefix:
            canonical_state = {f"{self.base_model_prefix}.{k}": v for k, v in canonical_state.items()}
        return to_framework_state(canonical_state, "tf")

    def canonical_state(self) -> dict[str, np.ndarray]:
        """The weights under their canonical checkpoint names and layout, as numpy arrays."""
        return self.to_canonical({path: v.numpy() for path, v in self._variables_by_path().items()})

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
        # The architecture is named framework-neutrally, as every framework reads the directory.
        config = self.config.copy(architectures=[type(self).__name__.removeprefix("TF")])
        save_checkpoint(save_directory, self.canonical_state(), config, max_shard_size=max_shard_size)
        write_sentence_transformers(save_directory, files)

    def load_canonical_state(
        self,
        checkpoint: Mapping[str, np.ndarray],
        *,
        initialise_missing: bool = False,
        where: str | os.PathLike = "checkpoint",
    ) -> dict[str, list[str]]:
        """Assign matching checkpoint tensors (arrays or `LazyTensor`s), one at a time.

        Returns the missing and unexpected keys; a shape mismatch raises `CheckpointShapeError`
        naming the key. Base-model checkpoints load into heads and head checkpoints into the
        base model (the `roberta.` prefix is matched). `initialise_missing=True` gives missing
        weights of a model built by `zero_initialised` their random initialisation.
        """
        paths = self._variables_by_path()
        # Shapes in canonical layout: map zero-byte stand-ins through the same rules.
        stand_ins = {path: np.broadcast_to(np.int8(0), tuple(v.shape)) for path, v in paths.items()}
        expected = {name: array.shape for name, array in self.to_canonical(stand_ins).items()}
        report = line_up(
            expected,
            checkpoint,
            tie_word_embeddings=self.config.tie_word_embeddings,
            where=where,
            base_model_prefix=self.base_model_prefix,
        )
        if initialise_missing:
            drawn = [
                name for name in report.missing if parameter_kind(name) in ("linear_weight", "embedding")
            ]
            stand_ins = {name: np.empty((0, 0), np.int8) for name in drawn}
            self.initialise_randomly([paths[path] for path in self.from_canonical(stand_ins)])
        for path, tensor in self.from_canonical(report.state).items():
            _assign(paths[path], tensor)
        return loading_info(report)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        config=None,
        output_loading_info: bool = False,
        **config_overrides,
    ):
        """Build the model from a checkpoint directory holding any weights file.

        `config` (an `XLMRobertaConfig` or a path to a `config.json`) is for directories saved
        without one. Missing and unexpected keys are logged as warnings; with
        `output_loading_info=True` the call returns `(model, {"missing_keys": [...],
        "unexpected_keys": [...]})`. For mixed precision set
        `keras.mixed_precision.set_global_policy(...)` first.
        """
        from .modeling import zero_initialised

        config = resolve_config(directory, config, **config_overrides)
        sentence_transformers = read_sentence_transformers(directory)
        # Plain reads, row block by row block for large tables: Keras copies whatever it is
        # given, so neither a memory map nor a whole 1 GB table needs to be resident as well.
        with open_checkpoint(directory, mmap=False) as checkpoint:
            with zero_initialised():
                model = cls(config)
            info = model.load_canonical_state(
                checkpoint.tensors, initialise_missing=True, where=checkpoint.files[0]
            )
        log_loading_info(logger, cls.__name__, directory, info)
        if sentence_transformers is not None:
            model.sentence_transformers = sentence_transformers  # a plain attribute: not in get_config
        return (model, info) if output_loading_info else model
