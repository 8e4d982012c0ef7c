"""Bad inputs fail alike everywhere: the same exception type and the same one-line text in torch,
TF and Flax (numpy inputs and jax arrays); ids of every integer dtype are accepted and give the
outputs of int32 ids.

Expected texts come from the core checks every framework is meant to call (`xlmr_core.modeling_utils`)
where one exists, and are written out here for the shape checks each framework phrases itself.
"""

from __future__ import annotations

import importlib

import ml_dtypes
import numpy as np
import pytest

from tests.cross.harness import tiny_config
from xlmr_core.modeling_utils import (
    INTEGER_DTYPES,
    check_first_token,
    check_index_range,
    check_integer_dtype,
    check_labels_shape,
    check_sequence_length,
)

# "flax" takes numpy as given (the usual Flax call); "flax-jax" the same values as jax arrays.
FRAMEWORKS = ("torch", "tf", "flax", "flax-jax")
CONFIG = tiny_config()  # vocabulary 99, 2 token types, 40 positions (38 tokens), 3 labels, hidden 32
IDS = np.array([[0, 5, 6, 7, 8, 2], [0, 9, 10, 11, 1, 1]], dtype=np.int32)
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=np.int32)
FLOAT_DTYPES = (np.float16, np.float32, np.float64, ml_dtypes.bfloat16, bool, np.complex64, np.complex128)


def _module(framework: str):
    name = {"torch": "torch", "tf": "tensorflow"}.get(framework, "jax")
    pytest.importorskip(name, reason=f"{name} is not installed")
    return importlib.import_module({"torch": "xlmr_torch", "tf": "xlmr_tf"}.get(framework, "xlmr_flax"))


_MODELS: dict = {}


def _model(framework: str, head: str):
    """One randomly initialised tiny model per framework and head (built once)."""
    family = "flax" if framework.startswith("flax") else framework
    if (family, head) not in _MODELS:
        module = _module(framework)
        prefix = {"torch": "", "tf": "TF", "flax": "Flax"}[family]
        config = tiny_config(num_labels=2) if head == "ForQuestionAnswering" else CONFIG
        model = getattr(module, f"{prefix}XLMRoberta{head}")(config)
        _MODELS[family, head] = model.eval() if family == "torch" else model
    return _MODELS[family, head]


def _native(framework: str, value):
    """A numpy input as the framework's own tensor (bfloat16 included)."""
    if framework == "torch":
        import torch

        if value.dtype == ml_dtypes.bfloat16:  # torch reads no numpy bfloat16
            return torch.from_numpy(value.astype(np.float32)).to(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(value))
    if framework == "tf":
        import tensorflow as tf

        return tf.constant(value)
    if framework == "flax-jax":
        import jax.numpy as jnp

        array = jnp.asarray(value)
        assert array.dtype == value.dtype, "a case for jax arrays must use a dtype JAX keeps"
        return array
    return value


def _call(framework: str, head: str, inputs: dict) -> dict:
    """Run `head` on `inputs` (numpy) in `framework`; outputs as float64 / int numpy."""
    model = _model(framework, head)
    arguments = {name: _native(framework, value) for name, value in inputs.items()}
    if framework == "torch":
        import torch

        with torch.no_grad():
            out = model(**arguments)
        return {key: value.double().numpy() for key, value in out.items()}
    out = model(arguments, training=False) if framework == "tf" else model(**arguments)
    return {key: np.asarray(value, dtype=np.float64) for key, value in out.items()}


def _core_error(check, *args) -> tuple[type, str]:
    """The exception type and text a core check raises for these arguments."""
    with pytest.raises((TypeError, ValueError)) as error:
        check(*args)
    return error.type, str(error.value)


def _dtype_error(name: str, dtype) -> tuple[type, str]:
    return _core_error(check_integer_dtype, name, np.dtype(dtype).name)


def _with(**changes) -> dict:
    return {"input_ids": IDS, "attention_mask": MASK, **changes}


def _ids_with(value, dtype) -> np.ndarray:
    ids = IDS.astype(dtype)
    ids[0, 1] = value
    return ids


BAD_INPUTS = {
    # name: (head, inputs, (exception type, text), numpy only: a dtype JAX without x64 has not)
    **{
        f"{np.dtype(dtype).name} input_ids": (
            "Model",
            _with(input_ids=IDS.astype(dtype)),
            _dtype_error("input_ids", dtype),
            np.dtype(dtype).name in ("float64", "complex128"),
        )
        for dtype in FLOAT_DTYPES
    },
    "float token_type_ids": (
        "Model",
        _with(token_type_ids=np.zeros(IDS.shape, np.float32)),
        _dtype_error("token_type_ids", np.float32),
        False,
    ),
    "bfloat16 token_type_ids": (
        "Model",
        _with(token_type_ids=np.zeros(IDS.shape, ml_dtypes.bfloat16)),
        _dtype_error("token_type_ids", ml_dtypes.bfloat16),
        False,
    ),
    "float position_ids": (
        "Model",
        _with(position_ids=np.full(IDS.shape, 2, np.float32)),
        _dtype_error("position_ids", np.float32),
        False,
    ),
    "float labels": (
        "ForTokenClassification",
        _with(labels=np.zeros(IDS.shape, np.float32)),
        _dtype_error("labels", np.float32),
        False,
    ),
    "float start_positions": (
        "ForQuestionAnswering",
        _with(start_positions=np.array([1.0, 2.0], np.float32), end_positions=np.array([2, 3], np.int32)),
        _dtype_error("start_positions", np.float32),
        False,
    ),
    "id equal to the vocabulary size": (
        "Model",
        _with(input_ids=_ids_with(99, np.int32)),
        _core_error(check_index_range, "input_ids", 0, 99, 99),
        False,
    ),
    "negative id": (
        "Model",
        _with(input_ids=_ids_with(-2, np.int32)),
        _core_error(check_index_range, "input_ids", -2, 11, 99),
        False,
    ),
    "negative int8 id": (
        "Model",
        _with(input_ids=_ids_with(-2, np.int8)),
        _core_error(check_index_range, "input_ids", -2, 11, 99),
        False,
    ),
    "uint64 id beyond int64": (
        "Model",
        _with(input_ids=_ids_with(2**63 + 5, np.uint64)),
        _core_error(check_index_range, "input_ids", 0, 2**63 + 5, 99),
        True,
    ),
    "int64 id beyond int32": (
        "Model",
        _with(input_ids=_ids_with(2**40, np.int64)),
        _core_error(check_index_range, "input_ids", 0, 2**40, 99),
        True,
    ),
    "token type outside the table": (
        "Model",
        _with(token_type_ids=np.full(IDS.shape, 2, np.int32)),
        _core_error(check_index_range, "token_type_ids", 2, 2, 2),
        False,
    ),
    "position id outside the table": (
        "Model",
        _with(position_ids=np.full(IDS.shape, 40, np.int32)),
        _core_error(check_index_range, "position_ids", 40, 40, 40),
        False,
    ),
    "one-dimensional ids": (
        "Model",
        {"input_ids": IDS[0]},
        (ValueError, "input_ids must be [batch, sequence]; got shape (6,)"),
        False,
    ),
    "three-dimensional ids": (
        "Model",
        {"input_ids": IDS[None].astype(np.int32)},
        (ValueError, "input_ids must be [batch, sequence]; got shape (1, 2, 6)"),
        False,
    ),
    "token types of another shape": (
        "Model",
        _with(token_type_ids=np.zeros((2, 5), np.int32)),
        (ValueError, "token_type_ids has shape (2, 5); expected (2, 6)"),
        False,
    ),
    "mask of another shape": (
        "Model",
        {"input_ids": IDS, "attention_mask": np.ones((2, 5), np.int32)},
        (ValueError, "attention_mask has shape (2, 5); expected (2, 6)"),
        False,
    ),
    "sequence longer than the position table": (
        "Model",
        {"input_ids": np.zeros((1, 39), np.int32)},
        _core_error(check_sequence_length, CONFIG, 0, 39),
        False,
    ),
    "both ids and embeddings": (
        "Model",
        _with(inputs_embeds=np.zeros((2, 6, 32), np.float32)),
        (ValueError, "give exactly one of input_ids and inputs_embeds"),
        False,
    ),
    "embeddings of the wrong width": (
        "Model",
        {"inputs_embeds": np.zeros((2, 6, 31), np.float32)},
        (ValueError, "inputs_embeds must be [batch, sequence, 32]; got shape (2, 6, 31)"),
        False,
    ),
    "head mask of the wrong shape": (
        "Model",
        _with(head_mask=np.ones((2, 3), np.float32)),
        (ValueError, "head_mask has shape (2, 3); expected (4,) or (2, 4)"),
        False,
    ),
    "token labels of the wrong shape": (
        "ForTokenClassification",
        _with(labels=np.zeros((2, 5), np.int32)),
        _core_error(check_labels_shape, "labels", (2, 5), (2, 6)),
        False,
    ),
    "sequence labels of the wrong shape": (
        "ForSequenceClassification",
        _with(labels=np.zeros(3, np.int32)),
        _core_error(check_labels_shape, "labels", (3,), (2,)),
        False,
    ),
    "answer positions of the wrong shape": (
        "ForQuestionAnswering",
        _with(start_positions=np.array([1, 2, 3], np.int32), end_positions=np.array([1, 2, 3], np.int32)),
        _core_error(check_labels_shape, "start_positions", (3,), (2,)),
        False,
    ),
    "label outside the classes": (
        "ForTokenClassification",
        _with(labels=np.full(IDS.shape, 3, np.int32)),
        (ValueError, "labels must be in [0, 3) or -100 (ignored); got values from 3 to 3"),
        False,
    ),
}
CASES = [
    pytest.param(name, framework, id=f"{name}-{framework}")
    for name, (*_, numpy_only) in BAD_INPUTS.items()
    for framework in FRAMEWORKS
    if not (numpy_only and framework == "flax-jax")
]


@pytest.mark.parametrize(("case", "framework"), CASES)
def test_bad_input_gives_the_same_one_line_error_in_every_framework(case, framework):
    head, inputs, (kind, text), _ = BAD_INPUTS[case]
    with pytest.raises((TypeError, ValueError)) as error:
        _call(framework, head, inputs)
    message = str(error.value)
    assert "\n" not in message and len(message) <= 300, message  # no wrapper text (Keras's call)
    assert (error.type, message) == (kind, text)


def _integer_inputs(dtype, beyond=None) -> tuple[dict, dict, dict]:
    """Token-classification, sequence-classification and QA inputs with every id in `dtype`; the
    second QA start position lies beyond the sequence (by default the dtype's largest value), so it
    is clamped and ignored."""
    as_dtype = np.dtype(dtype).type
    token = _with(
        input_ids=IDS.astype(as_dtype),
        token_type_ids=(IDS % 2).astype(as_dtype),
        position_ids=(np.arange(6)[None].repeat(2, 0) + 2).astype(as_dtype),
        labels=(IDS % 3).astype(as_dtype),
    )
    sequence = _with(input_ids=IDS.astype(as_dtype), labels=np.array([2, 0], as_dtype))
    beyond = np.iinfo(as_dtype).max if beyond is None else beyond
    answer = _with(
        input_ids=IDS.astype(as_dtype),
        start_positions=np.array([1, beyond], as_dtype),
        end_positions=np.array([3, 2], as_dtype),
    )
    return token, sequence, answer


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_integer_dtype_of_ids_gives_the_int32_outputs(framework):
    # JAX (without x64) has no 64-bit arrays: jax arrays of the other six dtypes.
    dtypes = [d for d in INTEGER_DTYPES if framework != "flax-jax" or np.dtype(d).itemsize <= 4]
    heads = ("ForTokenClassification", "ForSequenceClassification", "ForQuestionAnswering")
    # The reference: int32 ids and a start position just past the sequence (100).
    expected = [_call(framework, head, inputs) for head, inputs in zip(heads, _integer_inputs("int32", 100))]
    problems = []  # every dtype and head, so one run reports them all
    for dtype in dtypes:
        for head, inputs, want in zip(heads, _integer_inputs(dtype), expected):
            try:
                got = _call(framework, head, inputs)
            except (TypeError, ValueError) as error:
                problems.append(f"{dtype} {head}: {type(error).__name__}: {error}")
                continue
            for key in want:
                if not np.array_equal(got[key], want[key]):
                    diff = float(np.max(np.abs(got[key] - want[key])))
                    problems.append(f"{dtype} {head}: {key} differs by {diff:.3g}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("shape", [(0, 6), (2, 0)], ids=["empty-batch", "zero-length"])
def test_empty_batch_and_zero_length_are_accepted(framework, shape):
    out = _call(framework, "ForTokenClassification", {"input_ids": np.zeros(shape, np.int32)})
    assert out["logits"].shape == (*shape, CONFIG.num_labels)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("head", ["Model", "ForSequenceClassification", "ForMultipleChoice"])
def test_zero_length_is_an_error_where_the_first_token_is_read(framework, head):
    shape = (2, 3, 0) if head == "ForMultipleChoice" else (2, 0)
    kind, text = _core_error(check_first_token, 0)
    with pytest.raises(kind) as raised:
        _call(framework, head, {"input_ids": np.zeros(shape, np.int32)})
    assert str(raised.value) == text
