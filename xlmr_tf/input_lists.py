"""The reference TF models' list convention: `model([input_ids, attention_mask, ...])`.

A list (or tuple) of tensors / arrays as the first argument gives the inputs by position, in
the order of the reference implementation's TF `call` (which differs from `call`'s own order
here: multiple choice, and the targets that come last there). A list of plain Python numbers
stays what it always was: the `input_ids` themselves.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from xlmr_core.modeling_utils import CROSS_ATTENTION_INPUTS, TOKEN_INPUTS

_DECODER_INPUTS = (*CROSS_ATTENTION_INPUTS, "past_key_values", "use_cache")
_FLAGS = ("output_attentions", "output_hidden_states", "return_dict")


def list_order(parameters, label_names) -> tuple[str, ...]:
    """The reference's positional order for a model whose `call` takes `parameters`."""
    decoder = _DECODER_INPUTS if "use_cache" in parameters else ()
    return (*TOKEN_INPUTS, *decoder, *_FLAGS, *label_names)


def is_input_list(value) -> bool:
    """Whether `value` is a list of inputs (holds a tensor or array), not a nested list of ids."""
    return isinstance(value, (list, tuple)) and any(
        tf.is_tensor(v) or isinstance(v, np.ndarray) for v in value
    )


def as_input_dict(values, order: tuple[str, ...], model_name: str) -> dict:
    """A list of inputs as the dict the models take (`None` entries left out)."""
    if len(values) > len(order):
        raise ValueError(
            f"{model_name} takes at most {len(order)} inputs in a list ({order[0]}, {order[1]}, ..., "
            f"{order[-1]}); got {len(values)}"
        )
    return {name: value for name, value in zip(order, values) if value is not None}
