"""Attention that never holds the whole `[heads, L, L]` scores: over the block pairs of packed
sequences (`unpadded=True`, about Σ L_i²) and over chunks of queries (long inputs).

Both are pure functions of projected, head-split tensors; `attention.XLMRobertaSelfAttention`
calls them. Softmax runs in float32 whatever the compute dtype, as on the plain path.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

NEGATIVE = jnp.finfo(jnp.float32).min


def skewed(window, columns):
    """`window[..., r, rows - 1 - r + c]` as `[..., rows, columns]`: the relative shift.

    Row r of the result is row r of `window` from column `rows - 1 - r` on: in the flattened
    rows that is a plain slice with stride `width - 1`, so no gather (and no index array the
    size of the scores) is needed.
    """
    *lead, rows, width = window.shape
    flat = window.reshape(*lead, rows * width)[..., rows - 1 : rows - 1 + rows * (width - 1)]
    return flat.reshape(*lead, rows, width - 1)[..., :columns]


def by_distance(window, columns):
    """`[..., i, j]` = `window[..., i, i - j + columns - 1]` (a window of distances i - j)."""
    return skewed(window[..., ::-1], columns)


def pair_relative_scores(query, key, offset, distance_embedding, max_positions, both):
    """Relative-position scores `[pairs, heads, block, block]` of each pair (not yet scaled).

    A pair's distances `offset + i - j` span 2·block - 1 values, so each pair reads that window
    of the distance table once (`[pairs, 2·block - 1, head_dim]`), not one row per (i, j).
    """
    block = query.shape[2]
    steps = jnp.arange(2 * block - 1) - (block - 1)
    index = jnp.clip(offset[:, None] + steps[None, :] + max_positions - 1, 0, 2 * max_positions - 2)
    window = distance_embedding(index)  # rows past a sequence's end are clipped; those keys are masked
    scores = by_distance(jnp.einsum("phid,ptd->phit", query, window), block)
    if both:  # relative_key_query: the key's term, [j, i] = window[j, i - j + block - 1], turned to [i, j]
        scores = scores + jnp.swapaxes(skewed(jnp.einsum("phjd,ptd->phjt", key, window), block), -1, -2)
    return scores


def block_pair_attention(query, key, value, layout, dropout, dtype, relative=None, causal=False):
    """Context `[blocks, heads, block, head_dim]` of query blocks `[blocks, heads, block, head_dim]`.

    `relative(query_pairs, key_pairs, offset)` gives the pairs' relative scores (None: absolute
    positions). Two passes over the pairs: the row maxima of every pair, combined per query
    block (`layout.combine`, a gather: XLA CPU runs gathers in parallel, scatters serially),
    then the exponentials against that maximum, their sums and the weighted values.
    """
    head_dim = query.shape[-1]
    block = layout.block
    query_pairs, key_pairs = query[layout.query_block], key[layout.key_block]
    scores = jnp.einsum("phid,phjd->phij", query_pairs, key_pairs) / math.sqrt(head_dim)
    if relative is not None:
        scores = scores + relative(query_pairs, key_pairs, layout.offset) / math.sqrt(head_dim)
    columns = jnp.arange(block)
    keep = columns[None, None, :] < layout.key_limit[:, None, None]  # [pairs, 1, block]
    if causal:
        keep = keep & (~layout.diagonal[:, None, None] | (columns[None, None, :] <= columns[None, :, None]))
    scores = jnp.where(keep[:, None], scores.astype(jnp.float32), NEGATIVE)

    def per_query_block(x, filler):  # [pairs, ...] -> [blocks, width, ...]
        return jnp.concatenate([x, jnp.full((1, *x.shape[1:]), filler, x.dtype)])[layout.combine]

    row_max = jnp.max(per_query_block(jnp.max(scores, axis=-1), NEGATIVE), axis=1)  # [blocks, heads, block]
    weights = jnp.exp(scores - row_max[layout.query_block][..., None])
    # A real row's total is at least 1 (its maximum's exp(0)); a filler block's may be 0.
    total = jnp.maximum(jnp.sum(per_query_block(jnp.sum(weights, axis=-1), 0.0), axis=1), 1.0)
    probs = (weights / total[layout.query_block][..., None]).astype(dtype)
    probs = dropout(probs)
    context = jnp.einsum("phij,phjd->phid", probs, value[layout.key_block])
    return jnp.sum(per_query_block(context, 0), axis=1)


def chunked_attention(
    query,
    key,
    value,
    attention_bias,
    head_mask,
    dropout,
    dtype,
    chunk,
    distance_embedding=None,
    max_positions=None,
    both=False,
):
    """`[batch, length, hidden]` context of self-attention, `chunk` queries at a time.

    Each step holds `[batch, heads, chunk, length]` scores (the last chunk may be shorter); a
    `[.., length, length]` bias (the causal mask) is sliced per chunk. Relative positions read,
    per chunk, the window of the distance table its distances span, shifted into place.

    The whole chunks run as one `lax.map` (a loop in the compiled program), so strictly one
    chunk's scores and distance windows are alive at a time: unrolled, XLA kept several chunks'
    windows at once (7.8 GB at 8,192 tokens with `relative_key`). A loop body cannot call a Flax
    submodule, so the distance table is read whole beforehand, and while dropout is active
    (training: `dropout` is not the identity) the chunks stay a static Python loop instead.
    """
    batch_size, heads, length, head_dim = query.shape
    lookup = None
    if distance_embedding is not None:
        table = distance_embedding(jnp.arange(2 * max_positions - 1))

        def lookup(index):
            return jnp.take(table, index, axis=0)

    def context_of(q, start, bias, apply_dropout):
        """The context `[batch, heads, rows, head_dim]` of the queries `q` at `start ..`."""
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, key) / math.sqrt(head_dim)
        if lookup is not None:
            relative = _chunk_relative_scores(q, key, start, lookup, max_positions, both)
            relative = relative / math.sqrt(head_dim)
            bias = relative if bias is None else jnp.maximum(relative + bias, jnp.finfo(relative.dtype).min)
        if bias is not None:
            scores = scores + bias
        probs = apply_dropout(jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(dtype))
        if head_mask is not None:
            probs = probs * head_mask
        return jnp.einsum("bhqk,bhkd->bhqd", probs, value)

    per_query = attention_bias is not None and attention_bias.shape[2] != 1  # the causal mask: its rows

    def rows(x, start, size):
        return jax.lax.dynamic_slice_in_dim(x, start, size, axis=2)

    # Inactive (inference, rate 0), Flax's Dropout hands its input back itself; active, it draws
    # a fresh mask from the module's rng per call, which a loop body cannot: one call per chunk.
    probe = jnp.zeros((), dtype)
    if dropout(probe) is not probe:
        contexts = [
            context_of(
                query[:, :, start : start + chunk],
                start,
                attention_bias[:, :, start : start + chunk] if per_query else attention_bias,
                dropout,
            )
            for start in range(0, length, chunk)
        ]
        context = jnp.concatenate(contexts, axis=2)
    else:
        whole = length // chunk

        def step(start):
            bias = rows(attention_bias, start, chunk) if per_query else attention_bias
            return context_of(rows(query, start, chunk), start, bias, lambda probs: probs)

        context = jax.lax.map(step, jnp.arange(whole) * chunk)  # [chunks, batch, heads, chunk, head_dim]
        context = jnp.moveaxis(context, 0, 2).reshape(batch_size, heads, whole * chunk, head_dim)
        tail = whole * chunk
        if tail < length:  # the last, shorter chunk: its own (static) shape
            bias = attention_bias[:, :, tail:] if per_query else attention_bias
            last = context_of(query[:, :, tail:], tail, bias, lambda probs: probs)
            context = jnp.concatenate([context, last], axis=2)
    return context.transpose(0, 2, 1, 3).reshape(batch_size, length, heads * head_dim)


def _chunk_relative_scores(query, key, start, distances, max_positions, both):
    """Relative scores `[batch, heads, chunk, length]` of the queries at `start ..` (not scaled).

    The query term reads the window of the chunk + length - 1 distances the chunk spans; the
    key term (relative_key_query) goes one key chunk at a time, each meeting 2·chunk - 1
    distances, so nothing is bigger than a few chunks' scores.
    """
    chunk, length, limit = query.shape[2], key.shape[2], 2 * max_positions - 2
    steps = jnp.arange(chunk + length - 1) - (length - 1)
    window = distances(jnp.clip(start + steps + max_positions - 1, 0, limit))
    scores = by_distance(jnp.einsum("bhqd,td->bhqt", query, window), length)
    if not both:
        return scores
    batch_size, heads, _, head_dim = key.shape
    chunks = -(-length // chunk)
    keys = jnp.pad(key, ((0, 0), (0, 0), (0, chunks * chunk - length), (0, 0)))
    keys = keys.reshape(batch_size, heads, chunks, chunk, head_dim)
    offsets = start - jnp.arange(chunks) * chunk  # query chunk start minus key chunk start
    steps = jnp.arange(2 * chunk - 1) - (chunk - 1)
    windows = distances(jnp.clip(offsets[:, None] + steps[None, :] + max_positions - 1, 0, limit))
    by_key = jnp.einsum("bhncd,ntd->bhnct", keys, windows)
    by_key = skewed(by_key, chunk)  # [.., key c, query a] = by_key[.., c, a - c + chunk - 1]
    by_key = jnp.moveaxis(by_key.swapaxes(-1, -2), 2, 3)  # [batch, heads, a, chunks, c]
    return scores + by_key.reshape(batch_size, heads, chunk, chunks * chunk)[..., :length]
