"""Attention that never holds the whole `[heads, L, L]` scores: over the block pairs of packed
sequences (`unpadded=True`, about Σ L_i²) and over chunks of queries (long inputs).

Both are pure functions of projected, head-split tensors; `attention.XLMRobertaSelfAttention`
calls them. Scores, masks and softmax run in float32 whatever the compute dtype, as on the
plain path. The design mirrors `xlmr_flax.attention_kernels`.
"""

from __future__ import annotations

import math

import tensorflow as tf

NEGATIVE = tf.float32.min


def diagonal_index(rows, columns, width):
    """`[rows, columns]` index `i - j + width - 1`: where distance `i - j` sits in a window."""
    return tf.range(rows)[:, None] - tf.range(columns)[None, :] + width - 1


def read(window, index):
    """`window[..., r, index[r, c]]`: `[..., rows, columns]` (the relative shift)."""
    leading = tf.shape(window)[:-2]
    index = tf.broadcast_to(index, tf.concat([leading, tf.shape(index)], axis=0))
    return tf.gather(window, index, axis=-1, batch_dims=window.shape.rank - 1)


def pair_relative_scores(query, key, offset, distance_embedding, max_positions, both):
    """Relative-position scores `[pairs, heads, block, block]` of each pair (not yet scaled).

    A pair's distances `offset + i - j` span 2·block - 1 values, so each pair reads that window
    of the distance table once (`[pairs, 2·block - 1, head_dim]`), not one row per (i, j).
    """
    block = tf.shape(query)[2]
    steps = tf.range(2 * block - 1) - (block - 1)
    index = tf.clip_by_value(offset[:, None] + steps[None, :] + max_positions - 1, 0, 2 * max_positions - 2)
    window = distance_embedding(index)  # rows past a sequence's end are clipped; those keys are masked
    shift = diagonal_index(block, block, block)
    scores = read(tf.einsum("phid,ptd->phit", query, window), shift)
    if both:  # relative_key_query: the key's term, read [j, i], then turned to [i, j]
        by_key = read(tf.einsum("phjd,ptd->phjt", key, window), tf.transpose(shift))
        scores = scores + tf.transpose(by_key, [0, 1, 3, 2])
    return scores


def block_pair_attention(query, key, value, layout, dropout, relative=None, causal=False):
    """Context `[blocks, heads, block, head_dim]` of query blocks `[blocks, heads, block, head_dim]`.

    `relative(query_pairs, key_pairs, offset)` gives the pairs' relative scores (None: absolute
    positions). Two passes over the pairs: the row maxima of every pair, combined per query
    block (`layout.combine`, a gather: XLA CPU runs gathers in parallel, scatters serially),
    then the exponentials against that maximum, their sums and the weighted values.
    """
    scale = math.sqrt(query.shape[-1])
    query_pairs, key_pairs = tf.gather(query, layout.query_block), tf.gather(key, layout.key_block)
    scores = tf.cast(tf.einsum("phid,phjd->phij", query_pairs, key_pairs), tf.float32) / scale
    if relative is not None:
        scores = scores + tf.cast(relative(query_pairs, key_pairs, layout.offset), tf.float32) / scale
    columns = tf.range(layout.block)
    keep = columns[None, None, :] < layout.key_limit[:, None, None]  # [pairs, 1, block]
    if causal:
        lower = columns[None, None, :] <= columns[None, :, None]
        keep = keep & (~layout.diagonal[:, None, None] | lower)
    scores = tf.where(keep[:, None], scores, NEGATIVE)

    def per_query_block(x, filler):  # [pairs, ...] -> [blocks, width, ...]
        dummy = tf.fill(tf.concat([[1], tf.shape(x)[1:]], axis=0), tf.cast(filler, x.dtype))
        return tf.gather(tf.concat([x, dummy], axis=0), layout.combine)

    row_max = tf.reduce_max(per_query_block(tf.reduce_max(scores, -1), NEGATIVE), axis=1)  # [blocks, h, b]
    weights = tf.exp(scores - tf.gather(row_max, layout.query_block)[..., None])
    # A real row's total is at least 1 (its maximum's exp(0)); a filler block's may be 0.
    total = tf.maximum(tf.reduce_sum(per_query_block(tf.reduce_sum(weights, -1), 0.0), axis=1), 1.0)
    probs = tf.cast(weights / tf.gather(total, layout.query_block)[..., None], query.dtype)
    probs = dropout(probs)
    context = tf.einsum("phij,phjd->phid", probs, tf.gather(value, layout.key_block))
    return tf.reduce_sum(per_query_block(context, 0), axis=1)


def chunked_attention(
    query,
    key,
    value,
    attention_bias,
    dropout,
    chunk,
    distance_embedding=None,
    max_positions=None,
    both=False,
):
    """`[batch, length, hidden]` context of self-attention, `chunk` queries at a time.

    `query`, `key`, `value` are `[batch, heads, length, head_dim]` with a static length. Each
    step holds `[batch, heads, chunk, length]` scores; a bool `[.., length, length]` keep mask
    (the causal mask) is sliced per chunk. Relative positions
    read, per chunk, the window of the distance table its distances span, shifted into place.
    """
    batch_size, heads, length, head_dim = (tf.shape(query)[0], *query.shape[1:])
    scale = math.sqrt(head_dim)
    chunks = -(-length // chunk)
    extra = chunks * chunk - length  # the last chunk is padded with queries nobody reads

    def by_chunk(x):  # [b, h, length, ...] -> [chunks, b, h, chunk, ...], padded with zeros/False
        x = tf.pad(x, [[0, 0], [0, 0], [0, extra]] + [[0, 0]] * (x.shape.rank - 3))
        shape = tf.concat([tf.shape(x)[:2], [chunks, chunk], tf.shape(x)[3:]], axis=0)
        return tf.experimental.numpy.moveaxis(tf.reshape(x, shape), 2, 0)

    per_query = attention_bias is not None and attention_bias.shape[2] != 1  # the causal mask
    elements = (by_chunk(query), tf.range(chunks) * chunk)
    if per_query:
        elements += (by_chunk(attention_bias),)

    def step(element):
        q, start = element[0], element[1]
        scores = tf.cast(tf.matmul(q, key, transpose_b=True), tf.float32) / scale
        if distance_embedding is not None:
            relative = _chunk_relative_scores(q, key, start, distance_embedding, max_positions, both)
            scores = scores + tf.cast(relative, tf.float32) / scale
        if attention_bias is not None:
            scores = tf.where(element[2] if per_query else attention_bias, scores, NEGATIVE)
        probs = dropout(tf.cast(tf.nn.softmax(scores, axis=-1), query.dtype))
        return tf.matmul(probs, value)

    # A loop (a while loop in a graph and under XLA), one chunk after the other: a static Python
    # loop would let XLA and the graph executor run every chunk at once, holding all their
    # scores (the whole `[heads, L, L]` again).
    context = tf.map_fn(step, elements, fn_output_signature=query.dtype, parallel_iterations=1)
    context = tf.transpose(context, [1, 0, 3, 2, 4])  # [batch, chunks, chunk, heads, head_dim]
    context = tf.reshape(context, [batch_size, chunks * chunk, heads * head_dim])
    return context[:, :length]


def _chunk_relative_scores(query, key, start, distance_embedding, max_positions, both):
    """Relative scores `[batch, heads, chunk, length]` of the queries at `start ..` (not scaled).

    The query term reads the window of the chunk + length - 1 distances the chunk spans; the
    key term (relative_key_query) goes one key chunk at a time, each meeting 2·chunk - 1
    distances, so nothing is bigger than a few chunks' scores.
    """
    chunk, length, limit = query.shape[2], key.shape[2], 2 * max_positions - 2
    steps = tf.range(chunk + length - 1) - (length - 1)
    window = distance_embedding(tf.clip_by_value(start + steps + max_positions - 1, 0, limit))
    scores = read(tf.einsum("bhqd,td->bhqt", query, window), diagonal_index(chunk, length, length))
    if not both:
        return scores
    pieces = []
    for key_start in range(0, length, chunk):  # this query chunk against each key chunk
        keys = key[:, :, key_start : key_start + chunk]
        width = keys.shape[2]
        steps = tf.range(chunk + width - 1) - (width - 1)
        offset = start - key_start
        window = distance_embedding(tf.clip_by_value(offset + steps + max_positions - 1, 0, limit))
        by_key = read(
            tf.einsum("bhkd,td->bhkt", keys, window), tf.transpose(diagonal_index(chunk, width, width))
        )
        pieces.append(tf.transpose(by_key, [0, 1, 3, 2]))  # [batch, heads, chunk, width]
    return scores + tf.concat(pieces, axis=-1)
