"""Model logic that does not depend on a framework, shared by all three implementations.

Each function here works on Python ints or numpy arrays, so the torch, TF and Flax
models compute the same thing from one definition: the checks that turn bad input into
a clear error, the index table of relative positions, and which loss a classification
head uses.
"""

from __future__ import annotations

import numpy as np

# Labels equal to this are left out of token-level losses (the reference convention).
IGNORE_INDEX = -100


# The forward arguments that hold an array, in the reference's order: the token inputs, the
# decoder's cross-attention inputs, and the targets of the heads.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "head_mask", "inputs_embeds")
CROSS_ATTENTION_INPUTS = ("encoder_hidden_states", "encoder_attention_mask")
TARGETS = ("labels", "start_positions", "end_positions")

# Ids of any of these dtypes are accepted (and cast to the framework's index dtype);
# every other dtype of an id tensor is a `TypeError` with the same text in all three frameworks.
INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def check_integer_dtype(name: str, dtype_name: str) -> None:
    """Raise `TypeError` unless `dtype_name` (numpy's spelling, e.g. `"float32"`) is an integer dtype."""
    if dtype_name not in INTEGER_DTYPES:
        raise TypeError(f"{name} must hold integers (any integer dtype), got dtype {dtype_name}")


def array_argument_message(name: str, value) -> str:
    """The text of the `TypeError` for a model argument that is no array of numbers."""
    return (
        f"{name} must be a tensor, a numpy array or a (nested) list of numbers of one shape, "
        f"got {type(value).__name__}"
    )


def is_static(*values) -> bool:
    """Whether every value is a concrete integer, not a symbolic dimension of a tracer.

    Symbolic lengths (a torch `SymInt` under `torch.export`, a JAX symbolic dimension under
    `jax.export`, an unknown TF dimension) must not be turned into Python ints: that fixes the
    traced program to the example's length.
    """
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)


def sequence_length_message(config, past_length, new_length) -> str:
    """The text of the over-long-input error (also the message of the frameworks' symbolic checks)."""
    total = past_length + new_length
    detail = f"{past_length} cached + {new_length} new" if is_static(past_length) and past_length else None
    detail = detail or f"{new_length} tokens"
    reason = (
        f"max_position_embeddings={config.max_position_embeddings} minus the padding offset "
        f"{config.pad_token_id + 1}"
        if config.position_embedding_type == "absolute"
        else f"max_position_embeddings={config.max_position_embeddings}"
    )
    return (
        f"sequence of {total} positions ({detail}) is longer than the position table allows: "
        f"at most {config.max_sequence_length} ({reason}); truncate the input "
        "(tokenizer(..., truncation=True, max_length=...))"
    )


def check_sequence_length(config, past_length, new_length) -> None:
    """Raise `ValueError` when past + new tokens do not fit the position table.

    The reference ends in a bare `IndexError` inside the embedding lookup instead. Symbolic
    lengths (see `is_static`) are left to the framework's own check (`torch._check`, a JAX
    shape constraint, `tf.debugging`), never converted to ints here.
    """
    if not is_static(past_length, new_length):
        return
    if past_length + new_length > config.max_sequence_length:
        raise ValueError(sequence_length_message(config, int(past_length), int(new_length)))


def check_first_token(seq_length) -> None:
    """Raise `ValueError` when a head that reads the first token (`<s>`) gets empty sequences.

    The pooler and the sentence-level heads read position 0; token-level heads accept a
    length of 0 (and return empty outputs). Symbolic lengths are left alone (see `is_static`).
    """
    if is_static(seq_length) and seq_length == 0:
        raise ValueError(
            "input_ids has sequence length 0, but this model reads the first token (<s>); "
            "give every sequence at least one token"
        )


def check_index_range(name: str, low: int, high: int, size: int, ignore_index: int | None = None) -> None:
    """Raise `ValueError` when ids spanning `[low, high]` fall outside `[0, size)`.

    `name` says which input and which table, e.g. `"input_ids"` / vocabulary. Labels pass the
    `ignore_index` they may also hold (the caller leaves those values out of `low` and `high`).
    """
    low, high = int(low), int(high)
    if low >= 0 and high < size:
        return
    if ignore_index is not None:
        raise ValueError(
            f"{name} must be in [0, {size}) or {ignore_index} (ignored); got values from {low} to {high}"
        )
    bad = low if low < 0 else high
    table = {
        "input_ids": "the vocabulary",
        "token_type_ids": "the token type table",
        "position_ids": "the position table",
    }.get(name, "its table")
    raise ValueError(f"{name} contains {bad}, outside {table} [0, {size})")


def relative_position_index(
    query_length, key_length, max_position_embeddings: int, arange=None, query_start=None
):
    """Rows of the `distance_embedding` table for each (query, key) pair, `[query, key]`.

    The queries are the last `query_length` of the `key_length` positions (the earlier
    ones come from the key/value cache), so a step with a cache sees the same distances
    as a full recompute. (The reference places every query of a cached call at the last
    position, which is only right for one new token at a time.) A fixed-size cache puts the
    queries at `query_start` instead.

    With numpy (the default) the lengths are ints and the result is int32. A framework passes
    its own `arange` (`torch.arange`, `tf.range`, `jnp.arange`) to build the same index from
    lengths known only inside a traced graph.
    """
    numpy = arange is None
    arange = np.arange if numpy else arange
    start = key_length - query_length if query_start is None else query_start
    query_positions = (start + arange(query_length))[:, None]
    key_positions = arange(key_length)[None, :]
    index = query_positions - key_positions + (max_position_embeddings - 1)
    return index.astype(np.int32) if numpy else index


def classification_problem_type(config, labels_are_integer: bool) -> str:
    """Which loss a sequence-classification head uses for these labels.

    `config.problem_type` wins when set; otherwise one label means regression, integer
    labels single-label classification, float labels multi-label classification.
    """
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    return "single_label_classification" if labels_are_integer else "multi_label_classification"


def check_labels_shape(name: str, labels_shape, expected_shape) -> None:
    """Raise `ValueError` when labels do not line up with what the head predicts."""
    if tuple(labels_shape) != tuple(expected_shape):
        raise ValueError(f"{name} has shape {tuple(labels_shape)}, expected {tuple(expected_shape)}")
