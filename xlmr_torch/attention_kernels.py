"""Attention over long inputs, `QUERY_CHUNK` queries at a time (`xlmr_core.unpadding` constants).

On CPU, SDPA's flash kernel already keeps absolute-position attention at O(L) memory (additive
masks included). What materialises `[heads, L, L]` is everything around it: the relative-position
terms (a `[q, k, head_dim]` distance embedding and `[heads, q, k]` scores) and the unfused path
that `output_attentions` / `head_mask` take. Here those run per query chunk, so one layer holds
`[batch, heads, QUERY_CHUNK, keys]` at a time; the relative terms are read from a window of the
distance table (`chunk + keys` rows), never from a `[q, k, head_dim]` gather.

Eager only: a tracer (export, compile, ONNX) runs the plain path, since a Python loop over a
symbolic length would pin the exported program to the example's length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xlmr_core.unpadding import LONG_INPUT_THRESHOLD, QUERY_CHUNK

from .inputs import tracing


def chunks_queries(query_length: int, threshold: int | None = None) -> bool:
    """Whether self-attention over `query_length` queries runs chunked (eager and long)."""
    threshold = LONG_INPUT_THRESHOLD if threshold is None else threshold
    return not tracing() and query_length > threshold


def skew(scores: torch.Tensor, offset: int, length: int) -> torch.Tensor:
    """`out[..., r, s] = scores[..., r, s - r + offset]` for `s < length`, as a view.

    The row-by-row shifted read of a distance window (Transformer-XL's "relative shift"), done by
    re-striding the flattened rows; needs `offset <= rows` and `width - 1 >= length`.
    """
    *lead, rows, width = scores.shape
    flat = scores.contiguous().reshape(*lead, rows * width)
    return flat[..., offset : offset + rows * (width - 1)].reshape(*lead, rows, width - 1)[..., :length]


def _window(table: torch.Tensor, newest: int, size: int, max_positions: int) -> torch.Tensor:
    """Rows of the distance table for distances `newest, newest - 1, ...` (`size` of them)."""
    distances = newest - torch.arange(size, device=table.device)
    # The one spare row past the last needed distance may fall off the table: clamped, never read.
    return table[(distances + max_positions - 1).clamp(0, 2 * max_positions - 2)]


def relative_scores(query, key, query_position: int, table, max_positions: int, both: bool, block: int):
    """Relative-position scores `[batch, heads, q, k]` (unscaled) of queries at `query_position ..`.

    Equals `einsum(query, table[q_pos - k_pos + max - 1])` (plus the key term when `both`,
    relative_key_query) without the `[q, k, head_dim]` gather: the query term multiplies the
    `q + k` distances the chunk spans, then shifts each row into place; the key term goes
    `block` keys at a time, each block meeting `q + block` distances.
    """
    chunk, keys = query.shape[2], key.shape[2]
    table = table.to(query.dtype)
    # Window entry u is distance `query_position + chunk - 1 - u`;
    # query i meets key j at u = j - i + chunk - 1.
    window = _window(table, query_position + chunk - 1, chunk + keys, max_positions)
    scores = skew(torch.einsum("bhqd,ud->bhqu", query, window), chunk - 1, keys)
    if not both:
        return scores
    parts = []
    for start in range(0, keys, block):
        key_block = key[:, :, start : start + block]
        width = key_block.shape[2]
        # Entry v is distance `query_position - start - width + 1 + v`;
        # key j' meets query i at v = i - j' + width - 1.
        window = _window(table, query_position - start + chunk, chunk + width, max_positions).flip(0)
        by_key = torch.einsum("bhkd,vd->bhkv", key_block, window)  # [.., key j', v]
        parts.append(skew(by_key, width - 1, chunk).transpose(-1, -2))
    return scores + torch.cat(parts, dim=-1)


def chunked_attention(
    query,
    key,
    value,
    bias=None,
    *,
    causal: bool = False,
    relative=None,
    dropout_p: float = 0.0,
    head_mask=None,
    output_attentions: bool = False,
    chunk: int | None = None,
):
    """`(context [batch, heads, q, head_dim], probs or None)`, `chunk` queries at a time.

    The queries are the last `q` of the `k` key positions (a key/value cache holds the rest).
    `bias` is the call's additive mask (`[.., 1 or q, k]`, sliced per chunk); `causal` masks later
    keys without a bias (packed rows); `relative(q_chunk, position)` gives a chunk's scaled relative
    scores. Equal to the plain path up to float rounding.
    """
    chunk = QUERY_CHUNK if chunk is None else chunk
    queries, keys = query.shape[2], key.shape[2]
    past = keys - queries
    scale = 1.0 / math.sqrt(query.shape[-1])
    contexts, all_probs = [], []
    for start in range(0, queries, chunk):
        q = query[:, :, start : start + chunk]
        # Keys after the chunk's last query are all hidden from a causal chunk: not computed.
        seen = min(keys, past + start + q.shape[2]) if causal else keys
        k, v = key[:, :, :seen], value[:, :, :seen]
        chunk_bias = None
        if bias is not None:
            chunk_bias = (
                bias[..., :seen] if bias.shape[-2] == 1 else bias[..., start : start + q.shape[2], :seen]
            )
        if relative is not None:
            scores = relative(q, k, past + start)
            # min + a negative score would overflow to -inf in half precision (as the plain path)
            chunk_bias = (
                scores
                if chunk_bias is None
                else (scores + chunk_bias).clamp(min=torch.finfo(scores.dtype).min)
            )
        if causal:
            rows = past + start + torch.arange(q.shape[2], device=q.device)[:, None]
            future = torch.arange(seen, device=q.device)[None, :] > rows
            if chunk_bias is None:
                chunk_bias = torch.zeros(future.shape, dtype=q.dtype, device=q.device)
            chunk_bias = chunk_bias.masked_fill(future, torch.finfo(q.dtype).min)
        if output_attentions or head_mask is not None:
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            if chunk_bias is not None:
                scores = scores + chunk_bias
            probs = F.dropout(scores.softmax(dim=-1), dropout_p, training=dropout_p > 0)
            if head_mask is not None:
                probs = probs * head_mask
            if output_attentions:
                all_probs.append(F.pad(probs, (0, keys - seen)))
            contexts.append(torch.matmul(probs, v))
        else:
            contexts.append(
                F.scaled_dot_product_attention(q, k, v, attn_mask=chunk_bias, dropout_p=dropout_p)
            )
    return torch.cat(contexts, dim=2), (torch.cat(all_probs, dim=2) if output_attentions else None)
