"""Input checks of the torch models: every argument named in the message that rejects it.

Wrong inputs fail here instead of deep inside an embedding lookup (a bare IndexError on
CPU, a device assert on GPU). While a tracer runs the forward (`torch.compile`,
`torch.export`, the dynamo ONNX exporter, `torch.jit.trace`) lengths are symbolic and
values unknown: the length check becomes `torch._check`, which keeps the program valid for
every length the exporter's bounds allow, and value checks are left out of the graph.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from xlmr_core.modeling_utils import (
    CROSS_ATTENTION_INPUTS,
    TARGETS,
    TOKEN_INPUTS,
    array_argument_message,
    check_index_range,
    check_integer_dtype,
    check_labels_shape,
    check_sequence_length,
    sequence_length_message,
)

# Embedding lookups take these directly; every other integer dtype is cast to int64.
_INDEX_DTYPES = (torch.int32, torch.int64)
# Unsigned dtypes that torch's reductions and comparisons do not implement on CPU.
_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


def tracing() -> bool:
    """Whether a tracer, not eager execution, runs the forward."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def dtype_name(dtype: torch.dtype) -> str:
    """numpy's spelling of a torch dtype (`torch.float32` -> `"float32"`), for the shared messages."""
    return str(dtype).removeprefix("torch.")


def check_shape(tensor, expected: tuple[int, ...], name: str) -> None:
    # jit.trace records sizes as tensors: comparing them would bake the example's shapes in.
    if torch.jit.is_tracing():
        return
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {tuple(expected)}")


def _low_high(values: torch.Tensor) -> tuple[int, int]:
    if values.dtype in _WIDE_UNSIGNED:  # exact in numpy, even past int64 (uint64)
        array = values.detach().cpu().numpy()
        return int(array.min()), int(array.max())
    low, high = torch.aminmax(values)
    return int(low), int(high)


def check_range(ids: torch.Tensor, size: int, name: str, ignore_index: int | None = None) -> None:
    """Every value of the integer tensor `ids` must be in [0, size) (or equal `ignore_index`)."""
    check_integer_dtype(name, dtype_name(ids.dtype))
    if tracing():
        return
    # An unsigned tensor cannot hold a negative ignore_index.
    values = ids if ignore_index is None or not ids.dtype.is_signed else ids[ids != ignore_index]
    if values.numel() == 0:
        return
    low, high = _low_high(values)
    check_index_range(name, low, high, size, ignore_index)


def as_index(ids: torch.Tensor, size: int, name: str, ignore_index: int | None = None) -> torch.Tensor:
    """Check an id tensor (any integer dtype) and return it in a dtype torch indexes with.

    The cast comes after the range check, so a uint64 id past int64 is still a clear `ValueError`.
    """
    check_range(ids, size, name, ignore_index)
    return ids if ids.dtype in _INDEX_DTYPES else ids.to(torch.int64)


def as_labels(labels: torch.Tensor, size: int | None, name: str, ignore_index: int | None) -> torch.Tensor:
    """Integer labels (any integer dtype) checked against `[0, size)` when given, as int64 for the loss."""
    if size is None:
        check_integer_dtype(name, dtype_name(labels.dtype))
    else:
        check_range(labels, size, name, ignore_index)
    return labels.long()


def as_positions(positions: torch.Tensor, seq_length: int, name: str) -> torch.Tensor:
    """Answer positions (any integer dtype) as int64 in `[0, seq_length]`, clamped before the cast.

    Clamping first keeps a huge unsigned position "beyond the sequence" (ignored by the loss)
    instead of wrapping it to a negative number and then to the real position 0.
    """
    check_integer_dtype(name, dtype_name(positions.dtype))
    if positions.dtype in (torch.uint16, torch.uint32, torch.uint64):  # few torch ops take these
        clipped = np.minimum(positions.cpu().numpy(), seq_length).astype(np.int64)
        return torch.from_numpy(clipped).to(positions.device)
    return positions.long().clamp(0, seq_length)


def check_length(config, past_length, seq_length) -> None:
    """Past + new tokens must fit the position table.

    Eager: the shared `ValueError`. Traced with symbolic lengths: `torch._check`, which an
    exporter proves from the length's bounds (`Dim("seq", max=max_position_embeddings - 2)`)
    instead of fixing the length to the example's.
    """
    if isinstance(past_length, torch.SymInt) or isinstance(seq_length, torch.SymInt):
        torch._check(
            past_length + seq_length <= config.max_sequence_length,
            lambda: sequence_length_message(config, past_length, seq_length),
        )
        return
    check_sequence_length(config, past_length, seq_length)


def check_label_shapes(labels, shapes: list[tuple[int, ...]], name: str = "labels") -> None:
    """`labels` must have one of `shapes` (the first is the one named in the error)."""
    if tuple(labels.shape) not in [tuple(s) for s in shapes]:
        check_labels_shape(name, labels.shape, shapes[0])


# ------------------------------------------------------------------- arguments of a model call
# Forward arguments that hold one array each: numpy arrays, lists and other frameworks' arrays
# given for them become tensors (the TF and Flax models take foreign arrays the same way).
ARRAY_ARGUMENTS = frozenset((*TOKEN_INPUTS, *CROSS_ATTENTION_INPUTS, *TARGETS))
# Flags with a `False` default: the legacy tracer (`torch.onnx.export(..., dynamo=False)`)
# passes every defaulted argument, and passes these as 0-d bool tensors.
FLAG_ARGUMENTS = frozenset({"unpadded", "labelled_positions_only"})


def as_tensor(value, name: str, device: torch.device | None) -> torch.Tensor:
    """`value` (a numpy array, a list of lists, a TF or JAX array) as a tensor on `device`."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        array = None  # ragged lists; what the message below says
    if array is None or array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError(array_argument_message(name, value))
    return torch.as_tensor(array, device=device)


def normalise_call(module: torch.nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook of every model: foreign arrays become tensors, traced flags become bools.

    Positional arguments are named from the forward's signature (`module.forward_argument_names`).
    Under `torch.compile` / `torch.export` inputs are already tensors and flags plain bools.
    """
    if torch.compiler.is_compiling():
        return None
    names = module.forward_argument_names
    device = None
    changed = False

    def fix(name, value):
        nonlocal device, changed
        if name in ARRAY_ARGUMENTS and value is not None and not isinstance(value, torch.Tensor):
            if device is None:
                device = next(module.parameters()).device
            changed = True
            return as_tensor(value, name, device)
        if name in FLAG_ARGUMENTS and isinstance(value, torch.Tensor) and torch.jit.is_tracing():
            changed = True
            with warnings.catch_warnings():
                # The tracer passes the default itself: a constant, not data the trace depends on.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                return bool(value)
        return value

    args = tuple(fix(names[i] if i < len(names) else None, value) for i, value in enumerate(args))
    kwargs = {name: fix(name, value) for name, value in kwargs.items()}
    return (args, kwargs) if changed else None
