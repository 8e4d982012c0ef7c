"""Loading and saving PyTorch models in the shared checkpoint format (any weights file).

`CheckpointIO` is mixed into `XLMRobertaPreTrainedModel`; everything about files, names
and the loading report comes from `xlmr_core` (`checkpoint`, `loading`), so this module
only moves tensors between numpy and torch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import ml_dtypes
import numpy as np
import torch

from xlmr_core.model_io import ModelIO

from .initialisation import initialise_module

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """CPU numpy view of a tensor; bfloat16 becomes `ml_dtypes.bfloat16` (numpy has no bf16)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """Tensor sharing the array's memory, for an immediate `copy_` into a parameter."""
    array = np.asarray(array)
    with warnings.catch_warnings():
        # Memory-mapped checkpoints are read-only; we only ever read from the result.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if array.dtype == ml_dtypes.bfloat16:
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array)


def _can_share(array: np.ndarray, tensor: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether `target` may use `array`'s memory as is: writable, same dtype and shape, aligned."""
    return (
        array.flags.writeable
        and array.flags.c_contiguous
        and tensor.dtype == target.dtype
        and tensor.shape == target.shape
        and tensor.data_ptr() % tensor.element_size() == 0
    )


class CheckpointIO(ModelIO):
    """`from_pretrained`, `save_pretrained` and the canonical state of a torch model
    (the skeleton is `xlmr_core.model_io.ModelIO`; this fills in torch's tensors)."""

    logger_name = "xlmr_torch.modeling"

    def _aliases(self) -> set[str]:
        """State-dict names that are another name of a tensor already saved under its canonical name."""
        names = set(self.state_dict())
        aliases = {"lm_head.decoder.bias"} & names
        if self.config.tie_word_embeddings and "lm_head.decoder.weight" in names:
            aliases.add("lm_head.decoder.weight")
        return aliases

    def canonical_state(self) -> dict[str, np.ndarray]:
        """The weights under their canonical checkpoint names, as numpy arrays.

        Modules that `torch.ao` quantization replaced (`quantize_dynamic`'s int8 `Linear`s)
        are saved as their dequantized float32 weights and biases, so the checkpoint loads
        back as an ordinary float32 model (quantize it again after loading).
        """
        quantized = self._dequantized_weights()
        owners = tuple({name.rpartition(".")[0] + "." for name in quantized})
        # A quantized module's own entries (scale, zero_point, packed params) are not weights.
        state = {name: t for name, t in self.state_dict().items() if not name.startswith(owners)}
        state.update(quantized)
        aliases = self._aliases() | {"lm_head.decoder.bias"}
        if self.config.tie_word_embeddings:
            aliases.add("lm_head.decoder.weight")
        return {name: to_numpy(t) for name, t in state.items() if name not in aliases}

    def _dequantized_weights(self) -> dict[str, torch.Tensor]:
        """`{canonical name: float32 tensor}` of the weights and biases of quantized modules."""
        found = {}
        for name, module in self.named_modules():
            if not type(module).__module__.startswith("torch.ao.nn.quantized"):
                continue
            for part in ("weight", "bias"):
                value = getattr(module, part, None)
                value = value() if callable(value) else None
                if isinstance(value, torch.Tensor):
                    value = value.dequantize() if value.is_quantized else value
                    found[f"{name}.{part}"] = value.to(torch.float32)
        return found

    def load_canonical_state(
        self,
        checkpoint: Mapping[str, np.ndarray],
        initialise_missing: bool = False,
        share_memory: bool = False,
        *,
        where: str | os.PathLike = "checkpoint",
        ignore_mismatched_sizes: bool = False,
    ) -> dict[str, list[str]]:
        """Copy matching checkpoint tensors (arrays or `LazyTensor`s) into this model, one at a time.

        Returns the missing and unexpected keys; a shape mismatch raises `CheckpointShapeError`
        naming the key. Base-model checkpoints load into heads and head checkpoints into the
        base model. `initialise_missing=True` first gives the modules of missing weights their
        fresh initialisation (for a model whose storage was allocated but never initialised).
        `share_memory=True` lets a parameter take a writable (copy-on-write) array's memory
        instead of copying it, when dtype and alignment allow. `ignore_mismatched_sizes=True`
        leaves tensors of another shape out (listed as `mismatched_keys`) and initialises them.
        """
        params = self.state_dict(keep_vars=True)

        def assign(name, tensor):
            array = tensor.checked_load(name)
            source, target = from_numpy(array), params[name]
            if share_memory and _can_share(array, source, target):
                # A fresh array from a plain read, or (`from_pretrained(mmap=True)`) a
                # copy-on-write map whose pages come from the file on first use.
                target.data = source
            else:
                target.copy_(source)

        with torch.no_grad():
            return self._load_state(
                checkpoint,
                assign,
                initialise_missing=initialise_missing,
                where=where,
                ignore_mismatched_sizes=ignore_mismatched_sizes,
            )

    def _canonical_shapes(self) -> dict[str, tuple[int, ...]]:
        aliases = self._aliases()
        return {name: tuple(t.shape) for name, t in self.state_dict().items() if name not in aliases}

    def _initialise(self, names: list[str]) -> None:
        for owner in sorted({name.rpartition(".")[0] for name in names}):
            initialise_module(self.get_submodule(owner), self.config.initializer_range)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        config=None,
        dtype: torch.dtype | None = None,
        output_loading_info: bool = False,
        torch_dtype: torch.dtype | None = None,
        ignore_mismatched_sizes: bool = False,
        mmap: bool = False,
        **config_overrides,
    ):
        """Build the model from a checkpoint directory holding any weights file, in eval mode.

        `config` (an `XLMRobertaConfig` or a path to a `config.json`) is for directories saved
        without one. `dtype` (float32, float16, bfloat16; `torch_dtype` is accepted as the
        reference's spelling) sets the parameter dtype; the default is float32. Missing and
        unexpected keys are logged as warnings; with `output_loading_info=True` the call
        returns `(model, {"missing_keys": [...], "unexpected_keys": [...]})`.
        `ignore_mismatched_sizes=True` initialises weights whose shape differs from the model's
        (a new head: `num_labels=5` on a 3-label checkpoint) instead of refusing, and lists them.
        The weights are read into the model's own memory, so the loaded model does not change
        when its file does. `mmap=True` instead keeps safetensors weights mapped from the file
        (faster to load, pages shared between processes): the file must then not be modified
        or truncated while the model lives (its outputs would change, or a read crash it).
        """
        if torch_dtype is not None:
            if dtype is not None and dtype != torch_dtype:
                raise ValueError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree")
            dtype = torch_dtype
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}")

        def build(config):
            # Randomly initialising every weight takes seconds at base size, and the checkpoint
            # overwrites nearly all of it: allocate without initialising, then initialise only
            # what the checkpoint lacks.
            with torch.device("meta"):
                model = cls(config)
            model.to_empty(device="cpu")
            model.tie_weights()
            if dtype is not None:
                model.to(dtype)
            return model.eval()

        # A plain read gives fresh arrays that parameters adopt without a copy; a map would tie
        # the model to the file (see `mmap` above).
        return cls._from_directory(
            directory,
            build,
            config=config,
            config_overrides=config_overrides,
            output_loading_info=output_loading_info,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            mmap=mmap,
            load_options={"initialise_missing": True, "share_memory": True},
        )
