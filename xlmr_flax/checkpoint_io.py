"""Loading and saving Flax models in the shared checkpoint format (any weights file).

`CheckpointIO` is mixed into `FlaxXLMRobertaPreTrainedModel`; files, names and the loading
report come from `xlmr_core` (`checkpoint`, `loading`, `weight_mapping`), so this module
only moves arrays in and out of the parameter tree.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from xlmr_core.checkpoint import open_checkpoint, save_checkpoint
from xlmr_core.embeddings import (
    read_sentence_transformers,
    sentence_transformers_files,
    write_sentence_transformers,
)
from xlmr_core.loading import line_up, loading_info, log_loading_info, resolve_config
from xlmr_core.weight_mapping import to_canonical_state, to_framework_state

logger = logging.getLogger("xlmr_flax.modeling")


class CheckpointIO:
    """`from_pretrained`, `save_pretrained` and the canonical state of a Flax model."""

    def canonical_state(self, params: dict | None = None) -> dict[str, np.ndarray]:
        """The weights under their canonical checkpoint names and layout, as numpy arrays."""
        flat = traverse_util.flatten_dict(self.params if params is None else params, sep="/")
        return to_canonical_state({path: np.asarray(value) for path, value in flat.items()}, "flax")

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        max_shard_size: int | str | None = None,
        *,
        sentence_transformers=False,
    ):
        """Write `config.json` and `model.safetensors` (or shards) in the shared checkpoint format.

        `sentence_transformers=True` (or a mapping of `pooling`, `normalize`, `max_seq_length`)
        also writes the sentence-transformers files; save the tokenizer into the same directory."""
        files = sentence_transformers_files(
            self.config, sentence_transformers, getattr(self, "sentence_transformers", None)
        )
        # Saved under the framework-neutral class name, so every framework picks the same head.
        config = self.config.copy(architectures=[type(self).__name__.removeprefix("Flax")])
        save_checkpoint(save_directory, self.canonical_state(), config, max_shard_size=max_shard_size)
        write_sentence_transformers(save_directory, files)

    def load_canonical_state(
        self,
        checkpoint: Mapping[str, np.ndarray],
        *,
        seed: int | None = None,
        where: str | os.PathLike = "checkpoint",
        ignore_mismatched_sizes: bool = False,
    ) -> dict[str, list[str]]:
        """Set the parameters from canonical tensors (arrays or `LazyTensor`s), one at a time.

        Returns the missing and unexpected keys; a shape mismatch raises `CheckpointShapeError`
        naming the key. Base-model checkpoints load into heads and head checkpoints into the
        base model (the `roberta.` prefix is matched). Parameters the checkpoint lacks are
        freshly initialised.
        """
        shapes = traverse_util.flatten_dict(self.parameter_shapes(), sep="/")
        # Zero-byte stand-ins give each parameter's canonical name and shape through the one table.
        stand_ins = {path: np.broadcast_to(np.float32(0), s.shape) for path, s in shapes.items()}
        expected = {name: array.shape for name, array in to_canonical_state(stand_ins, "flax").items()}
        report = line_up(
            expected,
            checkpoint,
            tie_word_embeddings=self.config.tie_word_embeddings,
            where=where,
            base_model_prefix=self.base_model_prefix,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )
        flat = {}
        if report.to_initialise:
            fresh = self.init_weights(jax.random.PRNGKey(self.seed if seed is None else seed))
            flat = traverse_util.flatten_dict(fresh, sep="/")
        for path, tensor in to_framework_state(report.state, "flax").items():
            flat[path] = jnp.asarray(np.asarray(tensor.load()), dtype=self.param_dtype)
        self._params = traverse_util.unflatten_dict(flat, sep="/")
        return loading_info(report)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        config=None,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        seed: int = 0,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        mmap: bool = False,
        **config_overrides,
    ):
        """Build the model from a checkpoint directory holding any weights file.

        `config` (an `XLMRobertaConfig` or a path to a `config.json`) is for directories saved
        without one. `dtype` is the computation dtype, `param_dtype` the dtype the weights are
        loaded in. Missing and unexpected keys are logged as warnings; with
        `output_loading_info=True` the call returns `(model, {"missing_keys": [...],
        "unexpected_keys": [...]})`. `ignore_mismatched_sizes=True` initialises weights whose
        shape differs from the model's (a new head) and lists them. The weights are read into
        fresh arrays, so the loaded model does not change when its file does; `mmap=True`
        (as in the other frameworks) reads safetensors through a memory map instead, and the
        file must then not be modified or truncated while the model lives.
        """
        config = resolve_config(directory, config, **config_overrides)
        sentence_transformers = read_sentence_transformers(directory)
        # Plain reads into fresh arrays, which JAX on CPU adopts without a copy (a memory map
        # would be copied, and its pages would stay resident beside the copy).
        with open_checkpoint(directory, mmap=mmap) as checkpoint:
            model = cls(config, seed=seed, dtype=dtype, param_dtype=param_dtype, _do_init=False)
            info = model.load_canonical_state(
                checkpoint.tensors, where=checkpoint.files[0], ignore_mismatched_sizes=ignore_mismatched_sizes
            )
        log_loading_info(logger, cls.__name__, directory, info)
        if sentence_transformers is not None:
            model.sentence_transformers = sentence_transformers
        return (model, info) if output_loading_info else model
