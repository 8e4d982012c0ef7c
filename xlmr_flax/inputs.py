"""Input checks of the Flax models: every argument named in the message that rejects it.

Shapes are always known; values only outside `jit`, so value checks are skipped for
traced arrays. `InputChecks` is mixed into `FlaxXLMRobertaPreTrainedModel`.

Under `jax.export` (and polymorphic `jax2tf`) a batch or sequence size may be symbolic: the
checks then compare with JAX's symbolic comparisons and never call `int()` on a size, so a
sequence bound must come from the export's constraints (`s <= max_sequence_length`).

Ids (`input_ids`, `token_type_ids`, `position_ids`, integer labels) of any integer dtype are
accepted: the dtype and range are checked on the value as given (numpy or jax) and only then
cast to int32, so a uint64 id beyond int32 is a clear error rather than a silent wrap-around
(JAX without x64 would truncate it on `jnp.asarray`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xlmr_core.caching import check_past_key_values
from xlmr_core.call_limits import check_activation_size
from xlmr_core.modeling_utils import (
    check_index_range,
    check_integer_dtype,
    check_labels_shape,
    check_sequence_length,
    is_static,
    sequence_length_message,
)

# The id inputs of one encoder pass, cast to int32 once checked.
ID_INPUTS = ("input_ids", "token_type_ids", "position_ids")


def concrete(value) -> np.ndarray | None:
    """The numpy value of `value`, or None when it is being traced under `jit`/`grad`."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def check_length(config, past_length, new_length) -> None:
    """`check_sequence_length`, also for symbolic lengths (decided by the export's constraints)."""
    if is_static(past_length, new_length):
        check_sequence_length(config, past_length, new_length)
        return
    total, limit = past_length + new_length, config.max_sequence_length
    try:
        too_long = total > limit  # a symbolic comparison: no int() of the size
    except jax.errors.InconclusiveDimensionOperation:
        raise ValueError(
            f"the symbolic sequence length {total} has no upper bound: the position table allows at "
            f"most {limit} positions; export with the constraint '{total} <= {limit}' "
            "(jax.export.symbolic_shape(..., constraints=[...]), jax2tf polymorphic_constraints)"
        ) from None
    if too_long:
        raise ValueError(sequence_length_message(config, past_length, new_length))


def check_shape(value, expected: tuple, name: str) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {tuple(expected)}")


def as_integers(value, name: str):
    """An id argument as given (jax array) or as numpy, after the integer-dtype check; None stays None.

    Not converted to jax yet: the range check must see the original values (see the module docstring).
    """
    if value is None:
        return None
    if not isinstance(value, jax.Array):
        value = np.asarray(value)
    check_integer_dtype(name, np.dtype(value.dtype).name)
    return value


def to_index(value):
    """A checked id array as a jax int32 array (None stays None)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return jnp.asarray(value.astype(np.int32, copy=False))
    return value if value.dtype == jnp.int32 else value.astype(jnp.int32)


def clamp_to_index(positions, high):
    """Integer positions clamped to `[0, high]`, as jax int32: clamped first, so none wraps around."""
    xp = np if isinstance(positions, np.ndarray) else jnp
    if positions.dtype.itemsize < 4:  # int8 / uint8 / int16 / uint16 widen losslessly
        positions = positions.astype(xp.int32)
    return to_index(xp.clip(positions, 0, high))


def check_integer(value, name: str) -> None:
    check_integer_dtype(name, np.dtype(value.dtype).name)


def check_range(value, size: int, name: str, ignore_index: int | None = None) -> None:
    check_integer(value, name)
    array = concrete(value)
    if array is None:
        return
    if ignore_index is not None:
        array = array[array != ignore_index]
    if array.size == 0:
        return
    low, high = int(array.min()), int(array.max())
    check_index_range(name, low, high, size, ignore_index)


def check_label_shapes(labels, shapes: list[tuple], name: str = "labels") -> None:
    if tuple(labels.shape) not in [tuple(s) for s in shapes]:
        check_labels_shape(name, labels.shape, shapes[0])


def as_array(value):
    """numpy / lists / torch-free array-likes -> jax arrays; None stays None; nested tuples kept."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], (tuple, list)):
        return tuple(tuple(as_array(v) for v in entry) for entry in value)
    return jnp.asarray(value)


class InputChecks:
    """The wrapper's checks of one call's inputs, cache and encoder states (see `__call__`)."""

    def _token_shape(self, inputs) -> tuple[int, int]:
        """Check `input_ids` / `inputs_embeds` and return `(batch, sequence)` of one encoder pass."""
        input_ids, inputs_embeds = inputs["input_ids"], inputs["inputs_embeds"]
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.ndim != 2:
                raise ValueError(f"input_ids must be [batch, sequence]; got shape {tuple(input_ids.shape)}")
            check_range(input_ids, self.config.vocab_size, "input_ids")
            return tuple(input_ids.shape)
        if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be [batch, sequence, {self.config.hidden_size}]; "
                f"got shape {tuple(inputs_embeds.shape)}"
            )
        return tuple(inputs_embeds.shape[:2])

    def _check_inputs(self, inputs: dict) -> dict:
        config = self.config
        batch_size, seq_length = self._token_shape(inputs)
        past_length = self._check_past(inputs["past_key_values"], batch_size)
        if inputs.get("cache_index") is None:
            check_length(config, past_length, seq_length)
            mask_length = past_length + seq_length
        else:
            mask_length = self._check_cache_index(inputs["cache_index"], past_length, seq_length, inputs)
        check_activation_size(config, batch_size, seq_length, mask_length - seq_length)
        if inputs["attention_mask"] is not None:
            check_shape(inputs["attention_mask"], (batch_size, mask_length), "attention_mask")
        if inputs["token_type_ids"] is not None:
            check_shape(inputs["token_type_ids"], (batch_size, seq_length), "token_type_ids")
            check_range(inputs["token_type_ids"], config.type_vocab_size, "token_type_ids")
        position_ids = inputs["position_ids"]
        if position_ids is not None:
            if tuple(position_ids.shape) not in ((batch_size, seq_length), (1, seq_length)):
                raise ValueError(
                    f"position_ids has shape {tuple(position_ids.shape)}; "
                    f"expected {(batch_size, seq_length)} or {(1, seq_length)}"
                )
            if config.position_embedding_type == "absolute":
                check_range(position_ids, config.max_position_embeddings, "position_ids")
        inputs["head_mask"] = self._check_head_mask(inputs["head_mask"])
        self._check_encoder(inputs, batch_size)
        return inputs

    def _check_cache_index(self, cache_index, slots: int, seq_length: int, inputs) -> int:
        """Checks of the fixed-size cache path; returns the attention-mask length (all slots)."""
        if inputs["past_key_values"] is None:
            raise ValueError("cache_index needs the fixed-size past_key_values buffers (see init_cache)")
        if cache_index.ndim != 0:
            raise ValueError(f"cache_index must be a scalar, got shape {tuple(cache_index.shape)}")
        check_length(self.config, 0, slots)
        value = concrete(cache_index)
        if not is_static(seq_length, slots):
            return slots  # a symbolic step under jax.export: the buffers' shapes are its contract
        if seq_length > slots or (value is not None and not 0 <= int(value) <= slots - seq_length):
            at = "" if value is None else f" at cache_index={int(value)}"
            raise ValueError(f"{seq_length} new tokens{at} do not fit the cache of {slots} slots")
        return slots

    def _check_head_mask(self, head_mask):
        if head_mask is None:
            return None
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if tuple(head_mask.shape) == (heads,):
            return jnp.broadcast_to(head_mask, (layers, heads))
        if tuple(head_mask.shape) != (layers, heads):
            raise ValueError(
                f"head_mask has shape {tuple(head_mask.shape)}; expected ({heads},) or ({layers}, {heads})"
            )
        return head_mask

    def _check_encoder(self, inputs, batch_size) -> None:
        states, mask = inputs["encoder_hidden_states"], inputs["encoder_attention_mask"]
        if states is None:
            if mask is not None:
                raise ValueError("encoder_attention_mask was given without encoder_hidden_states")
            return
        if not self.config.add_cross_attention:
            raise ValueError(
                "encoder_hidden_states needs cross-attention layers: build the model with "
                "is_decoder=True and add_cross_attention=True"
            )
        if states.ndim != 3 or states.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"encoder_hidden_states must be [batch, encoder_sequence, {self.config.hidden_size}]; "
                f"got shape {tuple(states.shape)}"
            )
        if states.shape[0] != batch_size:
            raise ValueError(f"encoder_hidden_states has batch size {states.shape[0]}, not {batch_size}")
        if mask is not None:
            check_shape(mask, states.shape[:2], "encoder_attention_mask")

    def _check_past(self, past_key_values, batch_size) -> int:
        """Validate the cache layout (`xlmr_core.caching`) and return the cached length (taken
        from the buffers themselves when it is symbolic, under jax.export)."""
        length = check_past_key_values(self.config, past_key_values, batch_size)
        if length is None:
            return past_key_values[0][0].shape[2]
        return length
