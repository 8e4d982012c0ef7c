"""Loading and saving Keras models in the shared checkpoint format (any weights file).

`CheckpointIO` is mixed into `TFXLMRobertaPreTrainedModel`; files, names and the loading
report come from `xlmr_core` (`checkpoint`, `loading`, `weight_mapping`), so this module
only moves arrays in and out of Keras variables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from xlmr_core.formats.base import LazyTensor
from xlmr_core.model_io import ModelIO
from xlmr_core.weight_mapping import to_canonical_state, to_framework_state

from .initialisation import initialise_randomly, uninitialised

# Tensors that are copied are read from the file in blocks of rows of about this size, so that
# nothing but the variable's own copy is ever whole in memory (and, below malloc's 32 MiB map
# threshold, each block reuses the last one's memory instead of faulting in fresh pages).
ASSIGN_BLOCK_BYTES = 16 * 2**20
# TF's kernels (Eigen) require every tensor's data to start on this boundary.
ALIGNMENT = 64
# Our variables' names and layout in `xlmr_core.weight_mapping`: the reference TF's names, kernels
# kept `[out, in]` as in the checkpoint (see `dense.py`), so no tensor is transposed on loading.
VARIABLE_LAYOUT = "tf_variables"
# The dtypes that DLPack hands from numpy to TF without a copy (not ml_dtypes' bfloat16).
_DLPACK_DTYPES = frozenset(map(np.dtype, (np.float16, np.float32, np.float64)))


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An unwritten C-ordered array whose data starts on an `ALIGNMENT`-byte boundary."""
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _adoptable(array: np.ndarray, dtype: np.dtype) -> bool:
    """Whether a variable may take `array`'s memory as its storage, as it is.

    Only a copy-on-write map of a checkpoint file (training's writes stay private to this
    process, and nobody else holds the array), in the variable's dtype, C-ordered and aligned.
    """
    return (
        isinstance(array, np.memmap)
        and array.flags.writeable
        and array.flags.c_contiguous
        and array.dtype == dtype
        and dtype in _DLPACK_DTYPES
        and array.size > 0
        and array.ctypes.data % ALIGNMENT == 0
    )


def _framework_array(tensor: LazyTensor, dtype: np.dtype, adopted: set[int] | None) -> np.ndarray:
    """`tensor` in the variable's dtype, aligned (the variables share the checkpoint's layout).

    With `adopted` (the addresses already given to a variable: never two variables over one
    buffer), the checkpoint's own memory map where it can be adopted; else one copy, read
    straight into the buffer or in row blocks where the format allows (plain reads: no map's
    pages stay resident).
    """
    array = None
    if adopted is not None:
        array = tensor.load()
        if _adoptable(array, dtype) and array.ctypes.data not in adopted:
            adopted.add(array.ctypes.data)
            return array
    out = _aligned_empty(tuple(tensor.shape), dtype)
    if tensor.read_into is not None and tensor.dtype == dtype and out.size:
        tensor.read_into(out)  # one read from the file into the variable's buffer
        return out
    if tensor.rows is None or not tensor.shape:
        out[...] = tensor.load() if array is None else array
        return out
    step = max(1, ASSIGN_BLOCK_BYTES * tensor.shape[0] // max(1, tensor.nbytes))
    for start in range(0, tensor.shape[0], step):
        block = tensor.load_rows(start, start + step)
        out[start : start + len(block)] = block
    return out


def _as_tensor(array: np.ndarray) -> tf.Tensor:
    """A tensor over `array`'s memory (through DLPack, no copy) where the dtype allows, else a copy."""
    if array.dtype in _DLPACK_DTYPES and array.size and array.ctypes.data % ALIGNMENT == 0:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array)


def _assign(variable, tensor: LazyTensor, adopted: set[int] | None) -> None:
    """Give `variable` the checkpoint tensor's values."""
    dtype = np.dtype(tf.as_dtype(variable.dtype).as_numpy_dtype)
    value = _as_tensor(_framework_array(tensor, dtype, adopted))
    # A dense assign makes the tensor's buffer the variable's storage (no copy). Never a scatter
    # or slice write: those switch a variable to copy-on-read mode, where each read copies it.
    variable.assign(value)


class CheckpointIO(ModelIO):
    """`from_pretrained`, `save_pretrained` and the canonical state of a Keras model
    (the skeleton is `xlmr_core.model_io.ModelIO`; this fills in Keras variables)."""

    class_name_prefix = "TF"
    logger_name = "xlmr_tf.modeling"

    # The bare model's canonical names carry no `roberta.` prefix (as torch's XLMRobertaModel),
    # although its layers sit under a `roberta` scope like the heads' (as in the reference).
    strip_base_prefix = False

    def _variables_by_path(self) -> dict:
        """Every variable by its path below the model (`roberta/embeddings/...`), in the tf spelling."""
        return {variable.path.split("/", 1)[1]: variable for variable in self.weights}

    def to_canonical(self, framework_state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`{tf path: array}` (weights, gradients, ...) -> canonical names and layout."""
        state = to_canonical_state(framework_state, VARIABLE_LAYOUT)
        if self.strip_base_prefix:
            state = {name.removeprefix(f"{self.base_model_prefix}."): array for name, array in state.items()}
        return state

    def from_canonical(self, canonical_state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inverse of `to_canonical`."""
        if self.strip_base_prefix:
            canonical_state = {f"{self.base_model_prefix}.{k}": v for k, v in canonical_state.items()}
        return to_framework_state(canonical_state, VARIABLE_LAYOUT)

    def canonical_state(self) -> dict[str, np.ndarray]:
        """The weights under their canonical checkpoint names and layout, as numpy arrays."""
        return self.to_canonical({path: v.numpy() for path, v in self._variables_by_path().items()})

    def load_canonical_state(
        self,
        checkpoint: Mapping[str, np.ndarray],
        *,
        initialise_missing: bool = False,
        where: str | os.PathLike = "checkpoint",
        ignore_mismatched_sizes: bool = False,
        adopt_maps: bool = False,
    ) -> dict[str, list[str]]:
        """Assign matching checkpoint tensors (arrays or `LazyTensor`s), one at a time.

        Returns the missing and unexpected keys; a shape mismatch raises `CheckpointShapeError`
        naming the key. Base-model checkpoints load into heads and head checkpoints into the
        base model (the `roberta.` prefix is matched). `initialise_missing=True` draws the
        missing kernels and tables of a model built `uninitialised`. Every tensor is copied,
        unless `adopt_maps=True`: then a tensor of a copy-on-write file map (`open_checkpoint`'s
        safetensors with `mmap=True`) that is aligned, in the variable's dtype and layout becomes
        the variable's storage without a copy, tying the model to the file (kernels included:
        they are kept in the checkpoint's `[out, in]` layout).
        """
        paths = self._variables_by_path()
        adopted: set[int] | None = set() if adopt_maps else None

        def assign(name, tensor):
            ((path, _),) = self.from_canonical({name: tensor}).items()  # the tf name of this tensor
            _assign(paths[path], tensor, adopted)

        return self._load_state(
            checkpoint,
            assign,
            initialise_missing=initialise_missing,
            where=where,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
        )

    def _canonical_shapes(self) -> dict[str, tuple[int, ...]]:
        # Shapes in canonical layout: map zero-byte stand-ins through the same rules.
        paths = self._variables_by_path()
        stand_ins = {path: np.broadcast_to(np.int8(0), tuple(v.shape)) for path, v in paths.items()}
        return {name: array.shape for name, array in self.to_canonical(stand_ins).items()}

    def _initialise(self, names: list[str]) -> None:
        paths = self._variables_by_path()
        stand_ins = {name: np.empty((0, 0), np.int8) for name in names}
        initialise_randomly(self, [paths[path] for path in self.from_canonical(stand_ins)])

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        config=None,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        mmap: bool = False,
        **config_overrides,
    ):
        """Build the model from a checkpoint directory holding any weights file.

        `config` (an `XLMRobertaConfig` or a path to a `config.json`) is for directories saved
        without one. Missing and unexpected keys are logged as warnings; with
        `output_loading_info=True` the call returns `(model, {"missing_keys": [...],
        "unexpected_keys": [...]})`. For mixed precision set
        `keras.mixed_precision.set_global_policy(...)` first. `ignore_mismatched_sizes=True`
        initialises weights whose shape differs from the model's (a new head) and lists them.
        The weights are copied into the variables, so the loaded model does not change when
        its file does. `mmap=True` instead makes aligned safetensors tensors the variables'
        storage as they are, mapped from the file (faster, shares the page cache): the file
        must then not be modified or truncated while the model lives.
        """

        def build(config):
            with uninitialised():
                return cls(config)

        # Tensors are read in row blocks into one copy each. With `mmap`, safetensors files open
        # as copy-on-write maps whose aligned tensors become the variables' storage as they are
        # (pages shared with the page cache, copied privately only where training writes).
        return cls._from_directory(
            directory,
            build,
            config=config,
            config_overrides=config_overrides,
            output_loading_info=output_loading_info,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            mmap=mmap,
            load_options={"initialise_missing": True, "adopt_maps": mmap},
        )
