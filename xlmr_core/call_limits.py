"""The size guard of model calls: a batch whose activations cannot fit is refused before it runs.

Without it a batch of a million tokens ends in torch's allocator error, a multi-line Keras
out-of-memory text or, in TF under a memory limit, a segfault. Every framework calls
`check_activation_size` where it checks its inputs, so the rule and its message are the same.
"""

from __future__ import annotations

import os
import re

from .configuration import ConfigError
from .errors import OneLineError
from .modeling_utils import is_static
from .unpadding import LONG_INPUT_THRESHOLD, QUERY_CHUNK

ENV_VAR = "XLMR_MAX_ACTIVATION_BYTES"
# The cap when the environment variable is not set: 16 GiB of activations in one layer.
DEFAULT_MAX_ACTIVATION_BYTES = 16 * 2**30
# Activations are counted as float32, whatever the model's dtype (softmax runs in float32).
BYTES_PER_VALUE = 4


class InputTooLargeError(OneLineError, ValueError):
    """A model call whose activations would exceed the cap (`XLMR_MAX_ACTIVATION_BYTES`)."""


def max_activation_bytes() -> int | None:
    """The cap from `XLMR_MAX_ACTIVATION_BYTES` (bytes, or a size like `"32GiB"`; `0`: no cap)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_ACTIVATION_BYTES
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?", raw[:40], flags=re.IGNORECASE)
    if not match:
        raise ConfigError(
            f"{ENV_VAR}={raw[:40]!r} is not a size; write bytes (17179869184) or a size like '16GiB' "
            "(0 turns the guard off)"
        )
    number, unit, binary = match.groups()
    limit = int(float(number) * (1024 if binary else 1000) ** " KMGT".index(unit.upper() or " "))
    return limit or None


def activation_bytes(config, batch: int, seq_length: int, key_length: int) -> int:
    """Float32 bytes one encoder layer holds for a `[batch, seq_length]` call attending to
    `key_length` positions (the cache included): attention scores and probabilities
    (`heads × key_length` per token, twice), relative-position terms, the feed-forward's
    intermediate activations and the hidden-size tensors around them (query, key, value,
    context, residual); above `LONG_INPUT_THRESHOLD` queries, one query chunk's attention terms.
    It is what one layer needs at once, so a call over it cannot run;
    training keeps every layer's and needs more."""
    per_token = 2 * config.intermediate_size + 6 * config.hidden_size
    attention = 2 * config.num_attention_heads * key_length
    if config.position_embedding_type != "absolute":
        attention += key_length * config.head_dim
    if seq_length > LONG_INPUT_THRESHOLD:
        # A long input attends `QUERY_CHUNK` queries at a time, the relative terms read from a
        # window (scores, window scores and probabilities of one chunk; no [q, k, head_dim]).
        return (
            BYTES_PER_VALUE
            * batch
            * (seq_length * per_token + QUERY_CHUNK * 3 * config.num_attention_heads * key_length)
        )
    return BYTES_PER_VALUE * batch * seq_length * (per_token + attention)


def check_activation_size(config, batch, seq_length, past_length=0) -> None:
    """Raise `InputTooLargeError` naming the batch shape when one layer's activations exceed the cap.

    Symbolic sizes (`torch.export`, `tf.function` with unknown dims, `jax.export`) are left
    alone: the check runs on concrete shapes only (see `is_static`).
    """
    if not is_static(batch, seq_length, past_length):
        return
    limit = max_activation_bytes()
    if limit is None:
        return
    batch, seq_length, past_length = int(batch), int(seq_length), int(past_length)
    needed = activation_bytes(config, batch, seq_length, past_length + seq_length)
    if needed > limit:
        cached = f" with {past_length} cached positions" if past_length else ""
        raise InputTooLargeError(
            f"a batch of shape [{batch}, {seq_length}]{cached} needs about {needed / 2**30:.3g} GiB of "
            f"activations per layer, over the limit of {limit / 2**30:.3g} GiB ({ENV_VAR}); "
            "split it into smaller batches or raise the limit"
        )
