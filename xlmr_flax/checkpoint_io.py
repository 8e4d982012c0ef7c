"""Loading and saving Flax models in the shared checkpoint format (any weights file).

`CheckpointIO` is mixed into `FlaxXLMRobertaPreTrainedModel`; files, names and the loading
report come from `xlmr_core` (`checkpoint`, `loading`, `weight_mapping`), so this module
only moves arrays in and out of the parameter tree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from xlmr_core.model_io import ModelIO
from xlmr_core.weight_mapping import to_canonical_state, to_framework_state


class CheckpointIO(ModelIO):
    """`from_pretrained`, `save_pretrained` and the canonical state of a Flax model
    (the skeleton is `xlmr_core.model_io.ModelIO`; this fills in the parameter tree)."""

    class_name_prefix = "Flax"
    logger_name = "xlmr_flax.modeling"

    def canonical_state(self, params: dict | None = None) -> dict[str, np.ndarray]:
        """The weights under their canonical checkpoint names and layout, as numpy arrays."""
        flat = traverse_util.flatten_dict(self.params if params is None else params, sep="/")
        return to_canonical_state({path: np.asarray(value) for path, value in flat.items()}, "flax")

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
        flat = {}

        def initialise(_names):
            # Flax draws the whole tree at once; the checkpoint then overwrites what it holds.
            fresh = self.init_weights(jax.random.PRNGKey(self.seed if seed is None else seed))
            flat.update(traverse_util.flatten_dict(fresh, sep="/"))

        def assign(name, tensor):
            ((path, laid_out),) = to_framework_state({name: tensor}, "flax").items()
            flat[path] = jnp.asarray(np.asarray(laid_out.load()), dtype=self.param_dtype)

        info = self._load_state(
            checkpoint,
            assign,
            initialise=initialise,
            initialise_missing=True,
            where=where,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )
        self._params = traverse_util.unflatten_dict(flat, sep="/")
        return info

    def _canonical_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = traverse_util.flatten_dict(self.parameter_shapes(), sep="/")
        # Zero-byte stand-ins give each parameter's canonical name and shape through the one table.
        stand_ins = {path: np.broadcast_to(np.float32(0), s.shape) for path, s in shapes.items()}
        return {name: array.shape for name, array in to_canonical_state(stand_ins, "flax").items()}

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

        def build(config):
            return cls(config, seed=seed, dtype=dtype, param_dtype=param_dtype, _do_init=False)

        # Plain reads into fresh arrays, which JAX on CPU adopts without a copy (a memory map
        # would be copied, and its pages would stay resident beside the copy).
        return cls._from_directory(
            directory,
            build,
            config=config,
            config_overrides=config_overrides,
            output_loading_info=output_loading_info,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            mmap=mmap,
        )
