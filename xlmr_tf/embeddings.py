"""The input embeddings: word, position and token-type tables, summed and normalised.

Layer and weight names reproduce the reference TF port's (`roberta/embeddings/word_embeddings/weight`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from xlmr_core import XLMRobertaConfig

from .initialisation import Block, Uninitialised, layer_norm, normal, with_zero_row
from .lookup import embedding_lookup


class EmbeddingTable(keras.layers.Layer):
    """A lookup table whose variable is called `weight_name` (the checkpoint spelling).

    The variable is never auto-cast: under mixed precision only the looked-up rows are
    cast, not the whole (250k-row) table.
    """

    def __init__(self, config, rows: int, width: int, weight_name: str, padding_idx=None, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.width, self.weight_name = rows, width, weight_name
        self.padding_idx = padding_idx
        self.initializer = normal(config)

    def build(self, input_shape=None):
        initializer = self.initializer
        if self.padding_idx is not None and not isinstance(initializer, Uninitialised):
            initializer = with_zero_row(initializer, self.padding_idx)
        self.table = self.add_weight(
            name=self.weight_name,
            shape=(self.rows, self.width),
            initializer=initializer,
            autocast=False,
            trainable=self.trainable,
        )

    @property
    def drawn_table(self):
        """What `initialisation.initialise_randomly` draws: the table and its padding row."""
        return self.table, self.padding_idx

    def call(self, ids):
        rows = embedding_lookup(tf.convert_to_tensor(self.table), ids)
        if self.padding_idx is not None:
            # As torch's padding_idx: the pad row is looked up but never trained by the lookup.
            pad = tf.expand_dims(ids == self.padding_idx, -1)  # TFLite slices no bool tensors
            rows = tf.where(pad, tf.stop_gradient(rows), rows)
        return tf.cast(rows, self.compute_dtype)


def position_ids_from_input_ids(input_ids, padding_idx, past_length=0):
    """Fairseq positions: real tokens count up from `padding_idx + 1`, pads stay at `padding_idx`."""
    if padding_idx is None:
        positions = tf.range(past_length, past_length + tf.shape(input_ids)[1], dtype=input_ids.dtype)
        return tf.broadcast_to(positions[None], tf.shape(input_ids))
    past_length = tf.cast(past_length, input_ids.dtype)
    not_pad = tf.cast(tf.not_equal(input_ids, padding_idx), input_ids.dtype)
    return (tf.cumsum(not_pad, axis=1) + past_length) * not_pad + padding_idx


def position_ids_from_inputs_embeds(inputs_embeds, padding_idx, past_length=0):
    """Without token ids padding cannot be seen, so every position counts as a real token."""
    start = past_length + (0 if padding_idx is None else padding_idx + 1)
    positions = tf.range(start, start + tf.shape(inputs_embeds)[1], dtype=tf.int32)
    return tf.broadcast_to(positions[None], tf.shape(inputs_embeds)[:2])


class XLMRobertaEmbeddings(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        pad, hidden = config.pad_token_id, config.hidden_size
        self.word_embeddings = EmbeddingTable(
            config, config.vocab_size, hidden, "weight", pad, name="word_embeddings"
        )
        self.absolute_positions = config.position_embedding_type == "absolute"
        # The relative kinds never read this table, but checkpoints carry it, so it exists (frozen).
        self.position_embeddings = EmbeddingTable(
            config,
            config.max_position_embeddings,
            hidden,
            "embeddings",
            pad,
            name="position_embeddings",
            trainable=self.absolute_positions,
        )
        self.token_type_embeddings = EmbeddingTable(
            config, config.type_vocab_size, hidden, "embeddings", name="token_type_embeddings"
        )
        self.LayerNorm = layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape=None):
        for table in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            table.build()

    def call(
        self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None, training=False
    ):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.absolute_positions:
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings), training=training)
