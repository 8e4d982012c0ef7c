"""The rules of a decoder's key/value cache (`past_key_values`), written once for every framework.

The cache is a tuple with one entry per layer, each `(key, value)` or, with cross-attention,
`(key, value, cross_key, cross_value)`; every tensor is `[batch, heads, length, head_dim]`
and the self-attention entries of all layers share one cached length.
"""

from __future__ import annotations

from .modeling_utils import is_static


def _shape(tensor) -> tuple:
    """A tensor's shape as a tuple; dimensions not known as integers (a traced TF shape, a
    symbolic `jax.export` or `torch.export` size) are None, never forced through `int()`."""
    shape = getattr(tensor, "shape", None)
    if shape is None:
        raise ValueError(f"past_key_values holds a {type(tensor).__name__}, not a tensor")
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(int(d) if is_static(d) else None for d in dims)


def check_past_key_values(config, past_key_values, batch_size) -> int | None:
    """Validate the cache layout against `config` and the batch; return the cached length.

    0 without a cache; None when the length is not known before the call runs (a traced or
    symbolic shape).
    """
    if past_key_values is None:
        return 0
    if not config.is_decoder:
        raise ValueError("past_key_values needs a decoder (config.is_decoder=True)")
    layers = config.num_hidden_layers
    if not isinstance(past_key_values, (tuple, list)) or len(past_key_values) != layers:
        raise ValueError(
            f"past_key_values must be a tuple with one entry per layer ({layers}), "
            "as returned by a previous call with use_cache=True"
        )
    heads, head_dim = config.num_attention_heads, config.head_dim
    batch_size = int(batch_size) if is_static(batch_size) else None
    lengths = set()
    for i, entry in enumerate(past_key_values):
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 4):
            raise ValueError(
                f"past_key_values[{i}] must be (key, value) or (key, value, cross_key, cross_value)"
            )
        for j, tensor in enumerate(entry):
            shape = _shape(tensor)
            expected = (batch_size, heads, shape[2] if len(shape) == 4 else None, head_dim)
            fits = len(shape) == 4 and all(e is None or s is None or s == e for s, e in zip(shape, expected))
            if not fits:
                raise ValueError(
                    f"past_key_values[{i}] holds shape {shape}; expected "
                    f"[batch, heads, length, head_dim] = {(batch_size, heads, 'length', head_dim)}"
                )
            if j < 2:  # the self-attention cache; cross entries have the encoder's length
                lengths.add(shape[2])
    if len(lengths) > 1 and None not in lengths:
        raise ValueError("past_key_values entries disagree on the cached length")
    (length,) = lengths if len(lengths) == 1 else (None,)
    return length
