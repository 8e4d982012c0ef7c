"""XLM-RoBERTa in TensorFlow with Keras 3.

Read top to bottom: embeddings, attention, layer, encoder, pooler, heads, the main
(base) layer, the shared base class, then the seven public models; input checks are in
`inputs.py`, Keras training in `training.py`, loading and saving in `checkpoint_io.py`.
It mirrors `xlmr_torch/modeling.py` section by section. Layer and weight names reproduce the
reference TF port's (`roberta/encoder/layer_._0/attention/self/query/kernel`), and the one
table in `xlmr_core.weight_mapping` turns them into canonical checkpoint names.

Every model is a `keras.Model` whose variables exist as soon as it is constructed (it
runs once on a dummy input), so weights load before the first real call. A call takes
a dict (what a tokenizer returns with `return_tensors="tf"`) or keyword arguments.

Key/value cache (decoders only): `past_key_values` is a tuple with one entry per layer,
`(self_key, self_value)` or `(self_key, self_value, cross_key, cross_value)`, each
`[batch, heads, length, head_dim]`, exactly as in the PyTorch models.

Input checks: the models' `__call__` runs them all (`check_inputs`) before Keras's call
wrapper, so an error is the one line raised here. Ids of any integer dtype are accepted and
cast to int32 after the checks; other dtypes are a `TypeError`. Shapes are checked whenever
they are known while tracing (always in eager mode) and raise `ValueError`. Value checks
(ids inside their tables, labels in range, the sequence fitting the position table)
raise `ValueError` in eager mode; inside a `tf.function` they become `tf.debugging`
assertions that stop the step with an `InvalidArgumentError` carrying the same message.
XLA (`jit_compile=True`) drops assertions, so compiled steps run unchecked: validate data
in eager mode first.

Unpadded execution (`unpadded=True`, contract in `xlmr_core.unpadding`): the embeddings, every
dense layer, LayerNorm, feed-forward and the token-level heads run on the real tokens packed as
`[tokens, hidden]` (`Packing`); attention gathers each layer's projections back to the
`[batch, seq]` layout, so its cost is the padded one's (a small share of the whole at base size).
A concrete mask packs to its bucketed `token_budget`; a traced one packs to its run-time count in
a plain `tf.function`, and under XLA to `token_budget` when given, else batch × seq (correct, no
saving): pass `token_budget` for compiled calls, one compilation per bucket. `model.unpadded` and
`model.token_budget` are what calls that do not say use (`fit`, `evaluate`, `predict`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
from collections.abc import Mapping

import keras
import tensorflow as tf

from xlmr_core import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    XLMRobertaConfig,
    unpadding,
)
from xlmr_core.call_limits import check_activation_size
from xlmr_core.modeling_utils import (
    CROSS_ATTENTION_INPUTS,
    IGNORE_INDEX,
    TARGETS,
    TOKEN_INPUTS,
    check_first_token,
    classification_problem_type,
    relative_position_index,
)

from .activations import ACTIVATIONS, gelu
from .checkpoint_io import CheckpointIO
from .dense import Dense
from .encoding import EncodingMixin
from .input_lists import as_input_dict, is_input_list, list_order
from .input_specs import ServingInputSpec
from .inputs import (
    as_index,
    check_integer,
    check_label_shapes,
    check_length,
    check_range,
    check_shape,
    symbolic_ids,
)
from .lookup import embedding_lookup
from .training import KerasTraining

logger = logging.getLogger(__name__)


class _Initialisation:
    """Whether layers built now draw random weights (see `uninitialised`)."""

    random = True


@keras.saving.register_keras_serializable(package="xlmr_tf")
class Uninitialised(keras.initializers.Initializer):
    """Allocates a variable's storage and never writes it (torch's `to_empty`): see `uninitialised`."""

    def __call__(self, shape, dtype=None):
        dtype = tf.as_dtype(dtype or keras.config.floatx())
        return tf.raw_ops.Empty(shape=shape, dtype=dtype, init=False)


@contextlib.contextmanager
def uninitialised():
    """Build models whose kernels and tables are allocated but never written, as torch's meta device.

    For `from_pretrained`, which replaces them with the checkpoint's arrays and draws only what
    the checkpoint lacks (`initialise_randomly`): drawing 278M normal numbers at base size takes
    seconds, and storage that is never written costs no memory before it is replaced. Until
    then their contents are undefined; biases and LayerNorm weights start as usual.
    """
    previous, _Initialisation.random = _Initialisation.random, False
    try:
        yield
    finally:
        _Initialisation.random = previous


def _normal(config: XLMRobertaConfig) -> keras.initializers.Initializer:
    if not _Initialisation.random:
        return Uninitialised()
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


def zero_row(value: tf.Tensor, row: int) -> tf.Tensor:
    """`value` (a table) with row `row` set to zero, as torch's `padding_idx` starts the pad row.

    A tensor op before the value becomes a variable: any scatter or slice write into the
    variable would switch it to TF's copy-on-read mode, in which every dense read of it (each
    lookup) copies the whole table.
    """
    return tf.tensor_scatter_nd_update(value, [[row]], tf.zeros((1, value.shape[1]), value.dtype))


def _dense(config: XLMRobertaConfig, units: int, name: str, **kwargs) -> keras.layers.Dense:
    return Dense(units, kernel_initializer=_normal(config), name=name, **kwargs)


def _layer_norm(config: XLMRobertaConfig, name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


def _dim(tensor: tf.Tensor, axis: int):
    """The size of `axis`: a Python int when known while tracing, else a scalar tensor."""
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]


# ----------------------------------------------------------------------------- embeddings


class Block(keras.layers.Layer):
    """A layer made of other layers, which create their variables on their first call.

    Without a `build` of its own Keras would trace `call` symbolically before the first
    eager call just to create the sublayers' variables, which doubles construction time.
    """

    def build(self, input_shape=None):
        pass


class EmbeddingTable(keras.layers.Layer):
    """A lookup table whose variable is called `weight_name` (the checkpoint spelling).

    The variable is never auto-cast: under mixed precision only the looked-up rows are
    cast, not the whole (250k-row) table.
    """

    def __init__(self, config, rows: int, width: int, weight_name: str, padding_idx=None, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.width, self.weight_name = rows, width, weight_name
        self.padding_idx = padding_idx
        self.initializer = _normal(config)

    def build(self, input_shape=None):
        initializer = self.initializer
        if self.padding_idx is not None and not isinstance(initializer, Uninitialised):
            # Like torch's padding_idx: the pad row starts at zero.
            initializer = functools.partial(_zero_padding_row, initializer, row=self.padding_idx)
        self.table = self.add_weight(
            name=self.weight_name,
            shape=(self.rows, self.width),
            initializer=initializer,
            autocast=False,
            trainable=self.trainable,
        )

    def call(self, ids):
        rows = embedding_lookup(tf.convert_to_tensor(self.table), ids)
        if self.padding_idx is not None:
            # As torch's padding_idx: the pad row is looked up but never trained by the lookup.
            pad = tf.expand_dims(ids == self.padding_idx, -1)  # TFLite slices no bool tensors
            rows = tf.where(pad, tf.stop_gradient(rows), rows)
        return tf.cast(rows, self.compute_dtype)


def _zero_padding_row(initializer, shape, dtype=None, *, row: int) -> tf.Tensor:
    return zero_row(initializer(shape, dtype=dtype), row)


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
        self.LayerNorm = _layer_norm(config, "LayerNorm")
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


# ----------------------------------------------------------------------------- attention


class XLMRobertaSelfAttention(Block):
    """Multi-head attention over the layer's own tokens, or over encoder states (cross)."""

    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = _dense(config, config.hidden_size, "query")
        self.key = _dense(config, config.hidden_size, "key")
        self.value = _dense(config, config.hidden_size, "value")
        self.dropout = keras.layers.Dropout(config.attention_probs_dropout_prob)
        self.position_embedding_type = position_embedding_type
        if position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = EmbeddingTable(
                config, 2 * config.max_position_embeddings - 1, self.head_dim, "embeddings",
                name="distance_embedding",
            )  # fmt: skip

    def split_heads(self, x):
        batch_size, length = _dim(x, 0), _dim(x, 1)
        x = tf.reshape(x, [batch_size, length, self.num_heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def relative_position_bias(self, query, key):
        """Relative-position scores `[batch, heads, q, k]` in float32, divided by sqrt(head_dim)."""
        query_length, key_length = query.shape[2], key.shape[2]
        size = self.max_position_embeddings
        if query_length is not None and key_length is not None:
            index = relative_position_index(query_length, key_length, size)
        else:
            # Lengths known only at run time: the same rows, cut from the full table.
            query_length, key_length = tf.shape(query)[2], tf.shape(key)[2]
            full = tf.constant(relative_position_index(size, size, size))
            index = full[key_length - query_length : key_length, :key_length]
        embedded = self.distance_embedding(index)
        scores = tf.einsum("bhqd,qkd->bhqk", query, embedded)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + tf.einsum("bhkd,qkd->bhqk", key, embedded)
        return tf.cast(scores, tf.float32) / math.sqrt(self.head_dim)

    def call(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions=False,
        packing=None,
        training=False,
    ):
        if packing is not None:  # packed [tokens, hidden]: project the real tokens, attend per row
            query, key, value = (
                self.split_heads(packing.unpack(dense(hidden_states)))
                for dense in (self.query, self.key, self.value)
            )
            context, _ = self.attend(query, key, value, attention_bias, None, training)
            return packing.pack(context), None, (key, value)
        query = self.split_heads(self.query(hidden_states))
        if encoder_hidden_states is not None and past_key_value is not None:
            key, value = past_key_value  # the encoder side does not change between decoding steps
        else:
            source = hidden_states if encoder_hidden_states is None else encoder_hidden_states
            key = self.split_heads(self.key(source))
            value = self.split_heads(self.value(source))
            if past_key_value is not None:
                key = tf.concat([tf.cast(past_key_value[0], key.dtype), key], axis=2)
                value = tf.concat([tf.cast(past_key_value[1], value.dtype), value], axis=2)
        context, probs = self.attend(query, key, value, attention_bias, head_mask, training)
        return context, (probs if output_attentions else None), (key, value)

    def attend(self, query, key, value, attention_bias, head_mask, training):
        """Attention over `[batch, heads, length, head_dim]`: context `[batch, q, hidden]`, probabilities."""
        batch_size, length = _dim(query, 0), _dim(query, 2)
        # Scores, masks and softmax in float32: a float16 mask bias plus a score would overflow.
        scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32) / math.sqrt(self.head_dim)
        if self.position_embedding_type != "absolute":
            scores = scores + self.relative_position_bias(query, key)
        if attention_bias is not None:  # where a query may look (bool: Keras autocasts float inputs)
            scores = tf.where(attention_bias, scores, tf.float32.min)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), query.dtype)
        probs = self.dropout(probs, training=training)
        if head_mask is not None:
            probs = probs * tf.cast(head_mask, probs.dtype)
        context = tf.matmul(probs, value)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch_size, length, -1])
        return context, probs


class XLMRobertaSelfOutput(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = _dense(config, config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def call(self, hidden_states, residual, training=False):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + residual)


class XLMRobertaAttention(Block):
    def __init__(self, config: XLMRobertaConfig, position_embedding_type: str, **kwargs):
        super().__init__(**kwargs)
        self.self = XLMRobertaSelfAttention(config, position_embedding_type, name="self")
        self.output_layer = XLMRobertaSelfOutput(config, name="output")

    def call(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        past_key_value=None,
        output_attentions=False,
        packing=None,
        training=False,
    ):
        context, probs, key_value = self.self(
            hidden_states,
            attention_bias=attention_bias,
            head_mask=head_mask,
            encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value,
            output_attentions=output_attentions,
            packing=packing,
            training=training,
        )
        return self.output_layer(context, hidden_states, training=training), probs, key_value


# ----------------------------------------------------------------------------- layer


class XLMRobertaIntermediate(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = _dense(config, config.intermediate_size, "dense")
        self.activation = ACTIVATIONS[config.hidden_act]

    def call(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class XLMRobertaOutput(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = _dense(config, config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def call(self, hidden_states, residual, training=False):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + residual)


class XLMRobertaLayer(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.attention = XLMRobertaAttention(config, config.position_embedding_type, name="attention")
        if config.add_cross_attention:
            # Encoder positions are unrelated to decoder positions: cross-attention has no relative term.
            self.crossattention = XLMRobertaAttention(config, "absolute", name="crossattention")
        self.intermediate = XLMRobertaIntermediate(config, name="intermediate")
        self.output_layer = XLMRobertaOutput(config, name="output")

    def call(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_bias=None,
        past_key_value=None,
        output_attentions=False,
        packing=None,
        training=False,
    ):
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and len(past_key_value) == 4 else None
        hidden_states, self_probs, present = self.attention(
            hidden_states,
            attention_bias=attention_bias,
            head_mask=head_mask,
            past_key_value=self_past,
            output_attentions=output_attentions,
            packing=packing,
            training=training,
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            hidden_states, cross_probs, cross_present = self.crossattention(
                hidden_states,
                attention_bias=encoder_attention_bias,
                head_mask=head_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
                training=training,
            )
            present = present + cross_present
        hidden_states = self.output_layer(self.intermediate(hidden_states), hidden_states, training=training)
        return hidden_states, self_probs, cross_probs, present


# ----------------------------------------------------------------------------- encoder


class XLMRobertaEncoder(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.layer = [XLMRobertaLayer(config, name=f"layer_._{i}") for i in range(config.num_hidden_layers)]

    def call(
        self,
        hidden_states,
        attention_bias=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_bias=None,
        past_key_values=None,
        use_cache=False,
        output_attentions=False,
        output_hidden_states=False,
        packing=None,
        training=False,
    ):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layer):
            hidden_states, probs, cross_probs, present = layer(
                hidden_states,
                attention_bias=attention_bias,
                head_mask=None if head_mask is None else head_mask[i],
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_bias=encoder_attention_bias,
                past_key_value=None if past_key_values is None else past_key_values[i],
                output_attentions=output_attentions,
                packing=packing,
                training=training,
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (probs,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_probs,)
            if use_cache:
                presents += (present,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross_attentions


# ----------------------------------------------------------------------------- pooler


class XLMRobertaPooler(Block):
    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = _dense(config, config.hidden_size, "dense", activation="tanh")

    def call(self, hidden_states):
        return self.dense(hidden_states[:, 0])


# ----------------------------------------------------------------------------- heads


class XLMRobertaLMHead(Block):
    """dense -> gelu -> LayerNorm -> vocabulary projection (usually the word-embedding matrix).

    The tied matrix is passed in at call time, so it stays one variable owned by the embeddings.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = config.vocab_size
        self.dense = _dense(config, config.hidden_size, "dense")
        self.layer_norm = _layer_norm(config, "layer_norm")
        self.tied = config.tie_word_embeddings
        if not self.tied:
            self.decoder = _dense(config, config.vocab_size, "decoder", use_bias=False)

    def build(self, input_shape=None):
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")

    def call(self, features, word_embeddings=None):
        hidden = self.layer_norm(gelu(self.dense(features)))
        if self.tied:
            # One 2-D matmul: with the batch dimensions kept, TF materialises the transposed
            # (250k-row) table on every call, which costs its size in memory and ~8x the time.
            rows = tf.reshape(hidden, (-1, hidden.shape[-1]))
            logits = tf.matmul(rows, tf.cast(word_embeddings, hidden.dtype), transpose_b=True)
            logits = tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [self.vocab_size]], axis=0))
        else:
            logits = self.decoder(hidden)
        return logits + self.bias


class XLMRobertaClassificationHead(Block):
    """Sentence-level head on the first (`<s>`) token."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        self.dense = _dense(config, config.hidden_size, "dense", activation="tanh")
        self.dropout = keras.layers.Dropout(_classifier_dropout(config))
        self.out_proj = _dense(config, config.num_labels, "out_proj")

    def call(self, features, training=False):
        x = self.dropout(features[:, 0], training=training)
        x = self.dropout(self.dense(x), training=training)
        return self.out_proj(x)


def _classifier_dropout(config: XLMRobertaConfig) -> float:
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


# ----------------------------------------------------------------------------- losses
# Computed in float32 whatever the compute dtype; `ignore_index` labels are left out of
# the mean (when every label is ignored the loss is 0 rather than torch's NaN). Each is a
# mean over the global batch: under `tf.distribute` every replica divides its own sum by
# the count of all replicas, so the replicas' summed gradients are those of one device
# running the whole batch (as Keras's own losses, which divide by the replica count).


def _global_mean(total, count):
    """`total / count`, `count` summed over the replicas when a strategy runs several."""
    count = tf.stop_gradient(tf.cast(count, tf.float32))
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        count = replica.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(total, count)


def _cross_entropy(logits, labels, ignore_index: int | None = IGNORE_INDEX):
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    keep = (
        tf.ones_like(labels, tf.float32)
        if ignore_index is None
        else tf.cast(labels != ignore_index, tf.float32)
    )
    safe_labels = labels if ignore_index is None else tf.where(labels == ignore_index, 0, labels)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    return _global_mean(tf.reduce_sum(losses * keep), tf.reduce_sum(keep))


def _mean(losses):
    return _global_mean(tf.reduce_sum(losses), tf.size(losses))


def _mse(predictions, labels):
    return _mean(tf.square(tf.cast(predictions, tf.float32) - tf.cast(labels, tf.float32)))


def _binary_cross_entropy(logits, labels):
    logits, labels = tf.cast(logits, tf.float32), tf.cast(labels, tf.float32)
    return _mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


# ----------------------------------------------------------------------------- unpadded execution


def _in_xla_compilation() -> bool:
    """Whether the current trace is compiled by XLA (`jit_compile=True`), where shapes must be static."""
    if tf.executing_eagerly():
        return False
    try:  # TF's own test of an XLA context; no public accessor in TF 2.21
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


class Packing:
    """Where a padded batch's real tokens sit in a packed `[size, ...]` layout (`xlmr_core.unpadding`).

    Real tokens take rows `0 .. count - 1` in row-major order. With a static `budget` the layout
    has `budget` rows and the tail is filler (copies of position 0 that nothing real reads);
    with `budget=None` it has exactly `count` rows, a shape known only at run time.
    """

    def __init__(self, attention_mask, budget=None):
        mask = tf.cast(attention_mask, tf.bool)
        self.shape = tf.shape(mask)
        self.static_shape = mask.shape
        flat = tf.reshape(mask, [-1])
        ones = tf.cast(flat, tf.int32)
        self.count = tf.reduce_sum(ones)
        rank = tf.cumsum(ones) - 1  # a real token's packed row
        if budget is None:
            self.size = self.count
            self.flat_index = tf.cast(tf.where(flat)[:, 0], tf.int32)
        else:
            # A scatter, not a data-dependent `tf.where`, so the shape is static under XLA; padding
            # (and any token beyond the budget) lands in the extra row `budget`, then dropped.
            self.size = budget
            slots = tf.where(flat, tf.minimum(rank, budget), budget)
            self.flat_index = tf.scatter_nd(slots[:, None], tf.range(tf.size(flat)), [budget + 1])[:budget]
        self.real = tf.range(self.size) < self.count  # which packed rows are real tokens
        # Each padded position's packed row; padding reads the zero row appended at `size`.
        self.unpack_index = tf.where(flat, tf.minimum(rank, self.size), self.size)

    def pack(self, x):
        """`[batch, seq, ...]` -> `[size, ...]`."""
        flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))
        return tf.gather(flat, self.flat_index)

    def unpack(self, x):
        """`[size, ...]` -> `[batch, seq, ...]`, zeros at padded positions."""
        x = tf.concat([x, tf.zeros(tf.concat([[1], tf.shape(x)[1:]], axis=0), x.dtype)], axis=0)
        padded = tf.reshape(tf.gather(x, self.unpack_index), tf.concat([self.shape, tf.shape(x)[1:]], axis=0))
        padded.set_shape(self.static_shape.concatenate(x.shape[1:]))
        return padded

    def guard(self, x):
        """NaN everywhere when the real tokens did not fit the budget (only possible under XLA,
        which drops the check): a wrong budget shows instead of silently dropping tokens."""
        return tf.where(self.count > self.size, tf.constant(float("nan"), x.dtype), x)

    def pack_labels(self, labels, ignore_index: int = IGNORE_INDEX):
        """Padded-layout labels -> packed, `ignore_index` on the filler rows."""
        labels = self.pack(labels)
        return tf.where(self.real, labels, tf.cast(ignore_index, labels.dtype))


# ----------------------------------------------------------------------------- main layer


class XLMRobertaMainLayer(Block):
    """The encoder (or decoder) body shared by every model; named `roberta` inside the heads."""

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embeddings = XLMRobertaEmbeddings(config, name="embeddings")
        self.encoder = XLMRobertaEncoder(config, name="encoder")
        self.pooler = XLMRobertaPooler(config, name="pooler") if add_pooling_layer else None

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=False,
        output_hidden_states=False,
        packing=None,
        training=False,
    ):
        """The body; with a `Packing` (see `Packing`) it runs on the real tokens only."""
        # The inputs were checked by `check_inputs` (the models' `__call__`, before Keras's wrapper).
        config = self.config
        tokens = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = _dim(tokens, 0), _dim(tokens, 1)
        past_length = 0 if past_key_values is None else _dim(past_key_values[0][0], 2)
        use_cache = config.is_decoder and (config.use_cache if use_cache is None else use_cache)

        shape = (batch_size, seq_length)
        if token_type_ids is None:
            token_type_ids = tf.zeros(tf.stack(shape) if not _static(shape) else shape, tf.int32)
        if position_ids is None:
            if input_ids is not None:
                position_ids = position_ids_from_input_ids(input_ids, config.pad_token_id, past_length)
            else:
                position_ids = position_ids_from_inputs_embeds(
                    inputs_embeds, config.pad_token_id, past_length
                )
        if packing is not None:
            # Ids gathered from the padded layout, so positions and types are the padded path's.
            position_ids = tf.broadcast_to(position_ids, tf.shape(token_type_ids))
            input_ids, token_type_ids, position_ids, inputs_embeds = (
                None if t is None else packing.pack(t)
                for t in (input_ids, token_type_ids, position_ids, inputs_embeds)
            )

        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            training=training,
        )
        attention_bias = self._self_attention_bias(attention_mask, past_length, past_length + seq_length)
        encoder_attention_bias = self._cross_attention_bias(encoder_attention_mask)
        if encoder_hidden_states is not None:
            encoder_hidden_states = tf.cast(encoder_hidden_states, embedding_output.dtype)
        hidden_states, presents, all_hidden_states, attentions, cross_attentions = self.encoder(
            embedding_output,
            attention_bias=attention_bias,
            head_mask=self._per_layer_head_mask(head_mask),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_bias=encoder_attention_bias,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            packing=packing,
            training=training,
        )
        if packing is not None:
            hidden_states = packing.guard(packing.unpack(hidden_states))
            if all_hidden_states is not None:
                all_hidden_states = tuple(packing.unpack(h) for h in all_hidden_states)
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=attentions,
            cross_attentions=cross_attentions,
        )

    def check_inputs(self, values: dict) -> dict:
        """Every check of the body's inputs (token shape `[batch, sequence]`); see `inputs.py`.

        Returns `values` with the ids guarded by their range checks when in a graph.
        """
        config, values = self.config, dict(values)
        input_ids = values.get("input_ids")
        batch_size, seq_length = self._check_token_inputs(input_ids, values.get("inputs_embeds"))
        if input_ids is not None:
            values["input_ids"] = check_range(input_ids, config.vocab_size, "input_ids")
        past_length = self._check_past(values.get("past_key_values"), batch_size)
        check_length(config, past_length, seq_length)
        check_activation_size(config, batch_size, seq_length, past_length)
        if self.pooler is not None:  # it reads the first token
            check_first_token(seq_length)
        shape = (batch_size, seq_length)
        if values.get("token_type_ids") is not None:
            check_shape(values["token_type_ids"], shape, "token_type_ids")
            values["token_type_ids"] = check_range(
                values["token_type_ids"], config.type_vocab_size, "token_type_ids"
            )
        position_ids = values.get("position_ids")
        if position_ids is not None:
            try:
                check_shape(position_ids, shape, "position_ids")
            except ValueError:
                check_shape(position_ids, (1, seq_length), "position_ids")
            if config.position_embedding_type == "absolute":
                values["position_ids"] = check_range(
                    position_ids, config.max_position_embeddings, "position_ids"
                )
        if values.get("attention_mask") is not None:
            check_shape(values["attention_mask"], (batch_size, past_length + seq_length), "attention_mask")
        self._check_encoder_inputs(
            values.get("encoder_hidden_states"), values.get("encoder_attention_mask"), batch_size
        )
        self._check_head_mask(values.get("head_mask"))
        if values.get("unpadded"):
            self._check_unpadded(values, batch_size, seq_length)
        return values

    def _check_unpadded(self, values: dict, batch_size, seq_length) -> None:
        """The checks of `unpadded=True`: options it cannot combine with, the mask's rows, the budget."""
        output_attentions = values.get("output_attentions")
        unpadding.check_unpadded_options(
            past_key_values=values.get("past_key_values"),
            use_cache=values.get("use_cache"),
            encoder_hidden_states=values.get("encoder_hidden_states"),
            output_attentions=self.config.output_attentions
            if output_attentions is None
            else output_attentions,
            head_mask=values.get("head_mask"),
        )
        budget = values.get("token_budget")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
            raise TypeError(f"token_budget must be a Python int (a static packed length); got {budget!r}")
        if budget is not None and budget < 1:
            raise ValueError(f"token_budget must be at least 1; got {budget}")
        mask = values.get("attention_mask")
        concrete = None if mask is None else tf.get_static_value(mask)
        if concrete is None:
            return  # traced: trusted (a graph asserts the budget, XLA cannot)
        unpadding.check_contiguous_rows(concrete)
        real = int(concrete.astype(bool).sum())
        if budget is not None and budget < real:
            raise ValueError(f"token_budget={budget} is smaller than the batch's {real} real tokens")

    def _check_token_inputs(self, input_ids, inputs_embeds):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.shape.rank != 2:
                raise ValueError(f"input_ids must be [batch, sequence]; got shape {tuple(input_ids.shape)}")
            check_integer(input_ids, "input_ids")
            return _dim(input_ids, 0), _dim(input_ids, 1)
        if inputs_embeds.shape.rank != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be [batch, sequence, {self.config.hidden_size}]; "
                f"got shape {tuple(inputs_embeds.shape)}"
            )
        return _dim(inputs_embeds, 0), _dim(inputs_embeds, 1)

    def _check_past(self, past_key_values, batch_size):
        """Validate the cache layout (see the module docstring) and return the cached length."""
        if past_key_values is None:
            return 0
        config = self.config
        if not config.is_decoder:
            raise ValueError("past_key_values needs a decoder (config.is_decoder=True)")
        if not isinstance(past_key_values, (tuple, list)) or len(past_key_values) != config.num_hidden_layers:
            raise ValueError(
                f"past_key_values must be a tuple with one entry per layer ({config.num_hidden_layers}), "
                "as returned by a previous call with use_cache=True"
            )
        lengths = set()
        for i, entry in enumerate(past_key_values):
            if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 4):
                raise ValueError(
                    f"past_key_values[{i}] must be (key, value) or (key, value, cross_key, cross_value)"
                )
            key = entry[0]
            expected = (batch_size, config.num_attention_heads, None, config.head_dim)
            try:
                check_shape(key, expected, f"past_key_values[{i}] key")
            except ValueError:
                raise ValueError(
                    f"past_key_values[{i}] key has shape {tuple(key.shape)}; expected [batch, heads, length, "
                    f"head_dim] = {(batch_size, config.num_attention_heads, 'length', config.head_dim)}"
                ) from None
            lengths.add(key.shape[2])
        if len(lengths) > 1:
            raise ValueError("past_key_values entries disagree on the cached length")
        return _dim(past_key_values[0][0], 2)

    def _self_attention_bias(self, attention_mask, past_length, total_length):
        """Where a query may look, `[batch or 1, 1, q, k]` bool (the attention adds a float32 bias).

        A float32 bias given to the layers would be autocast to float16 under mixed precision,
        where -huge is -inf (a NaN for a row with nothing to attend to).
        """
        keep = None
        if attention_mask is not None:
            keep = _keep_mask(attention_mask)
        if self.config.is_decoder:
            query_positions = tf.range(past_length, total_length)[:, None]
            causal = tf.reshape(tf.range(total_length)[None, :] <= query_positions, [1, 1, -1, total_length])
            keep = causal if keep is None else tf.logical_and(keep, causal)
        return keep

    def _check_encoder_inputs(self, encoder_hidden_states, encoder_attention_mask, batch_size) -> None:
        if encoder_hidden_states is None:
            if encoder_attention_mask is not None:
                raise ValueError("encoder_attention_mask was given without encoder_hidden_states")
            return
        if not self.config.add_cross_attention:
            raise ValueError(
                "encoder_hidden_states needs cross-attention layers: build the model with "
                "is_decoder=True and add_cross_attention=True"
            )
        hidden = self.config.hidden_size
        if encoder_hidden_states.shape.rank != 3 or encoder_hidden_states.shape[-1] != hidden:
            raise ValueError(
                f"encoder_hidden_states must be [batch, encoder_sequence, {hidden}]; "
                f"got shape {tuple(encoder_hidden_states.shape)}"
            )
        check_shape(encoder_hidden_states, (batch_size, None, hidden), "encoder_hidden_states")
        if encoder_attention_mask is not None:
            check_shape(
                encoder_attention_mask, tuple(encoder_hidden_states.shape[:2]), "encoder_attention_mask"
            )

    @staticmethod
    def _cross_attention_bias(encoder_attention_mask):
        if encoder_attention_mask is None:
            return None
        return _keep_mask(encoder_attention_mask)

    def _check_head_mask(self, head_mask) -> None:
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if head_mask is not None and tuple(head_mask.shape) not in ((heads,), (layers, heads)):
            raise ValueError(
                f"head_mask has shape {tuple(head_mask.shape)}; expected ({heads},) or ({layers}, {heads})"
            )

    def _per_layer_head_mask(self, head_mask):
        """`[heads]` (all layers) or `[layers, heads]` -> one `[1, heads, 1, 1]` multiplier per layer."""
        if head_mask is None:
            return None
        layers, heads = self.config.num_hidden_layers, self.config.num_attention_heads
        if tuple(head_mask.shape) == (heads,):
            head_mask = tf.broadcast_to(head_mask[None], (layers, heads))
        return [tf.reshape(head_mask[i], (1, heads, 1, 1)) for i in range(layers)]


def _keep_mask(attention_mask):
    """`[batch, k]` mask -> `[batch, 1, 1, k]` bool (expand_dims: TFLite slices no bool tensors)."""
    return tf.expand_dims(tf.expand_dims(tf.cast(attention_mask, tf.bool), 1), 1)


def _static(shape) -> bool:
    return all(isinstance(d, int) for d in shape)


# ----------------------------------------------------------------------------- base class

# What `call` accepts from a dict; anything else in a dict is an error, not ignored.
_INPUT_NAMES = (
    *TOKEN_INPUTS,
    *CROSS_ATTENTION_INPUTS,
    "past_key_values",
    "use_cache",
    *TARGETS,
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "labelled_positions_only",
    "unpadded",
    "token_budget",
)
# Options passed to Keras's call as Python values, never as tensors.
_STATIC_OPTIONS = ("unpadded", "token_budget")
_INTEGER_INPUTS = ("input_ids", "token_type_ids", "position_ids")


@functools.cache
def _call_parameters(model_class) -> tuple[str, ...]:
    """The argument names of `model_class.call`, in order (without `self`)."""
    return tuple(inspect.signature(model_class.call).parameters)[1:]


class TFXLMRobertaPreTrainedModel(CheckpointIO, KerasTraining, ServingInputSpec, keras.Model):
    """Input handling for every model; Keras training is `KerasTraining`, files `CheckpointIO`."""

    base_model_prefix = "roberta"
    # The arguments that carry training targets, in the order a bare `y` fills them.
    label_names: tuple[str, ...] = ("labels",)
    # What a call that does not say uses (set them for `fit`/`evaluate`/`predict`, whose steps
    # call the model without options): `model.unpadded = True`, and under XLA a `token_budget`.
    unpadded: bool = False
    token_budget: int | None = None

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, XLMRobertaConfig):
            raise TypeError(f"config must be an XLMRobertaConfig, got {type(config).__name__}")
        config.validate()
        if config.add_cross_attention and not config.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True: cross-attention is a decoder part"
            )
        self.config = config
        self._init_input_conversion()

    # Not converted by AutoGraph: its control flow is on shapes and flags, and converting the
    # model's code made up most of the time to trace a training step or an export.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, *args, **kwargs):
        """Run the model (see `call`), every input checked first.

        The checks run here, before Keras's call wrapper, so that a bad input raises the one-line
        error of `inputs.py`, not Keras's many-line report around it. Keras then receives one plain
        dict of tensors (a tokenizer's BatchEncoding, a dict subclass, included), the flags as keywords.
        """
        names = _call_parameters(type(self))
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional arguments")
        arguments = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {key!r}")
            if key in arguments:
                raise TypeError(f"{type(self).__name__} got {key} both positionally and as a keyword")
            arguments[key] = value
        if any(isinstance(v, keras.KerasTensor) for v in tf.nest.flatten(list(arguments.values()))):
            # symbolic (functional) use: Keras traces `call`
            return super().__call__(*self.autocast_floats(args), **self.autocast_floats(kwargs))
        options = {"training": arguments.pop("training")} if "training" in arguments else {}
        values = self.checked_inputs(arguments)
        for key in (*_INTEGER_INPUTS, *self.label_names):
            if values.get(key) is not None and values[key].dtype.is_integer:
                values[key] = as_index(values[key])  # after the range checks: uint64 stays exact
        flags = {
            k: v for k, v in values.items() if isinstance(v, bool) or (k in _STATIC_OPTIONS and v is not None)
        }
        tensors = {k: v for k, v in values.items() if v is not None and k not in flags}
        return super().__call__(self.autocast_floats(tensors), **flags, **options)

    def checked_inputs(self, arguments: dict) -> dict:
        """A call's arguments (name -> value, no `training`) as tensors, every input and target checked.

        Also what `fit` / `evaluate` run on each batch on the host before the compiled step.
        """
        names = _call_parameters(type(self))
        values = self._gather_inputs(arguments.pop("input_ids", None), {**dict.fromkeys(names), **arguments})
        for key in _STATIC_OPTIONS:
            if key in names and values.get(key) is None:
                values[key] = getattr(self, key)
        return self.check_inputs(values)

    def check_inputs(self, values: dict) -> dict:
        """Every check of a call's inputs and targets; returns `values` guarded by the checks in a graph."""
        values = self.roberta.check_inputs(values)
        tokens = values["input_ids"] if values.get("input_ids") is not None else values["inputs_embeds"]
        return self.check_targets(values, _dim(tokens, 0), _dim(tokens, 1))

    def check_targets(self, values: dict, batch_size, seq_length) -> dict:
        """The checks of the training targets (`labels`, ...) against the token shape."""
        return values

    # -- Keras serialisation: the config carries the XLMRobertaConfig, so that `.keras` files,
    # `keras.models.clone_model`, `copy.deepcopy` and `pickle` rebuild the same model.
    def get_config(self) -> dict:
        """Keras's config (name, trainable, dtype policy) with the `XLMRobertaConfig` as a dict."""
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """The model `get_config` describes (random weights; Keras loads the saved ones after)."""
        config = dict(config)
        model_config = config.pop("config")
        if not isinstance(model_config, XLMRobertaConfig):
            model_config = XLMRobertaConfig.from_dict(model_config)
        policy = config.pop("dtype", None)
        if isinstance(policy, dict):
            policy = keras.dtype_policies.deserialize(policy)
        # The layers inside take the global policy when built: build them under the saved one.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy or previous)
        try:
            return cls(model_config, **config)
        finally:
            keras.config.set_dtype_policy(previous)

    # -- serving: what `tf.saved_model.save(model, directory)` and `model.export(directory)` write
    def serving_signature(self, dtype=tf.int32) -> dict[str, tf.TensorSpec]:
        """`dtype` (int32 or int64) `input_ids` and `attention_mask` (and `token_type_ids` when the
        config has more than one token type), any batch size and length: the inputs of `serve`."""
        names = ["input_ids", "attention_mask"]
        if self.config.type_vocab_size > 1:
            names.append("token_type_ids")
        shape = [None] * self.dummy_inputs["input_ids"].shape.rank
        return {name: tf.TensorSpec(shape, dtype, name=name) for name in names}

    def serve(self, inputs: Mapping) -> dict:
        """The forward pass for serving: a dict of tensors in, a plain dict of output tensors out."""
        options = {"use_cache": False} if "use_cache" in _call_parameters(type(self)) else {}
        output = self(dict(inputs), training=False, return_dict=True, **options)
        return {key: value for key, value in output.items() if tf.is_tensor(value)}

    @property
    def _default_save_signature(self):
        # The TF hook `tf.saved_model.save` reads when given no signatures: `serve` over int32 ids
        # (Keras's own would trace the model with float32 inputs, which ids are not).
        return self._serving_function([self.serving_signature()])

    def _serving_function(self, input_signature):
        # No AutoGraph: the Python control flow is on shapes and flags, and converting it is
        # most of the export time.
        return tf.function(self.serve, input_signature=input_signature, autograph=False)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        """`keras.Model.export`; a SavedModel's `serve` endpoint (and its `serving_default`
        signature) is `self.serve`, over `serving_signature()` unless `input_signature` is given;
        then `serve_int64` takes int64 ids, as the tokenizers return them for "np" and "tf"."""
        default_signature = input_signature is None
        if default_signature:
            input_signature = [self.serving_signature()]
        if format != "tf_saved_model":
            return super().export(filepath, format, verbose, input_signature, **kwargs)
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", self._serving_function(input_signature))  # the first: serving_default
        if default_signature:
            archive.add_endpoint("serve_int64", self._serving_function([self.serving_signature(tf.int64)]))
        archive.write_out(filepath, verbose=True if verbose is None else verbose)

    def build(self, input_shape=None):
        pass  # the layers create their variables during the dummy call (see `Block`)

    def _build_with_dummy_inputs(self) -> None:
        """Create every variable now (so weights load before the first real call)."""
        inputs = dict(self.dummy_inputs)
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = tf.zeros((1, 1, self.config.hidden_size))
        self(inputs, training=False)

    @property
    def dummy_inputs(self) -> dict:
        return {"input_ids": tf.constant([[0, 2]], tf.int32)}

    def initialise_randomly(self, variables) -> None:
        """Draw the kernels and tables among `variables` as a freshly built model does.

        For a model built `uninitialised`; the other variables (biases, LayerNorm weights)
        keep the zeros and ones they were built with.
        """
        padding_rows = {}  # id of each variable drawn at random -> its padding row (or None)
        for layer in self._flatten_layers():
            if isinstance(layer, keras.layers.Dense):
                padding_rows[id(layer.kernel)] = None
            elif isinstance(layer, EmbeddingTable):
                padding_rows[id(layer.table)] = layer.padding_idx
        normal = keras.initializers.RandomNormal(stddev=self.config.initializer_range)
        for variable in variables:
            if id(variable) not in padding_rows:
                continue
            value = normal(tuple(variable.shape), dtype=variable.dtype)
            if padding_rows[id(variable)] is not None:
                value = zero_row(value, padding_rows[id(variable)])
            variable.assign(value)  # a dense assign: the variable takes the new buffer as it is

    # -- inputs
    def _gather_inputs(self, input_ids, arguments: dict) -> dict:
        """Merge a dict given as the first argument with the keyword arguments; convert to tensors.

        `arguments` is the caller's `locals()`: only the names in `_INPUT_NAMES` are kept.
        """
        accepted = [key for key in _INPUT_NAMES if key in arguments]
        values = {key: arguments[key] for key in accepted if key != "input_ids"}
        if is_input_list(input_ids):
            input_ids = self.input_dict(input_ids)
        if isinstance(input_ids, Mapping):
            unknown = sorted(set(input_ids) - set(accepted))
            if unknown:
                raise ValueError(
                    f"{type(self).__name__} got unexpected inputs {unknown}; it accepts {accepted}"
                )
            for key, value in input_ids.items():
                if values.get(key) is not None and value is not None:
                    raise ValueError(f"{key} was given both in the input dict and as an argument")
                if value is not None:
                    values[key] = value
        else:
            values["input_ids"] = input_ids
        values = {key: values.get(key) for key in _INPUT_NAMES}
        for key in _INPUT_NAMES:
            value = values.get(key)
            if value is None or key in ("past_key_values", *_STATIC_OPTIONS) or isinstance(value, bool):
                continue
            if not tf.is_tensor(value):
                value = tf.convert_to_tensor(value)
            if key in _INTEGER_INPUTS:
                if symbolic_ids(value):
                    value = as_index(value)
                check_integer(value, key)
            values[key] = value
        if values.get("past_key_values") is not None:
            values["past_key_values"] = tuple(
                tuple(tf.convert_to_tensor(t) for t in entry) for entry in values["past_key_values"]
            )
        return values

    def input_dict(self, inputs) -> dict:
        """The model's inputs as a dict: a dict as it is, a list of inputs by the reference's order
        (see `input_lists.py`), anything else as `input_ids`."""
        if isinstance(inputs, Mapping):
            return dict(inputs)
        if is_input_list(inputs):
            order = list_order(_call_parameters(type(self)), self.label_names)
            return as_input_dict(inputs, order, type(self).__name__)
        return {"input_ids": inputs}

    def _flags(self, values: dict) -> tuple[bool, bool, bool]:
        config = self.config
        pick = lambda key: getattr(config, key) if values.get(key) is None else bool(values[key])  # noqa: E731
        return pick("output_attentions"), pick("output_hidden_states"), pick("return_dict")

    def _packing(self, values: dict) -> Packing | None:
        """The `Packing` of this call when it runs unpadded (see `Packing`), else None.

        A concrete mask gives a bucketed budget (`xlmr_core.unpadding.token_budget`) or, without
        padding, the padded path itself. A traced mask without `token_budget` packs to its run-time
        count (dynamic shapes) in a plain `tf.function`, and to batch × seq under XLA (static).
        """
        mask = values.get("attention_mask")
        if not values.get("unpadded") or mask is None:
            return None
        budget = values.get("token_budget")
        concrete = tf.get_static_value(mask)
        if concrete is not None:
            real = int(concrete.astype(bool).sum())
            if real == concrete.size:
                return None
            if budget is None:
                budget = unpadding.token_budget(real, concrete.size)
        elif budget is None and _in_xla_compilation():
            budget = mask.shape.num_elements() or tf.size(mask)
        elif budget is not None and not _in_xla_compilation():
            # XLA drops assertions; a plain graph stops here rather than drop tokens.
            count = tf.reduce_sum(tf.cast(tf.cast(mask, tf.bool), tf.int32))
            check = tf.debugging.assert_less_equal(
                count, budget, message=f"token_budget={budget} is smaller than the batch's real tokens"
            )
            with tf.control_dependencies([check]):
                mask = tf.identity(mask)
        return Packing(mask, budget)

    def _body(self, values: dict, training: bool, output_attentions, output_hidden_states, **extra):
        """The main layer on `values`; `packing=` (from `_packing`) runs it unpadded."""
        return self.roberta(
            input_ids=values.get("input_ids"),
            attention_mask=values.get("attention_mask"),
            token_type_ids=values.get("token_type_ids"),
            position_ids=values.get("position_ids"),
            head_mask=values.get("head_mask"),
            inputs_embeds=values.get("inputs_embeds"),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
            **extra,
        )

    @staticmethod
    def _return(output, return_dict: bool):
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------- the models

# Registered under "xlmr_tf>ClassName", so `keras.models.load_model` finds them by name.
_serializable = keras.saving.register_keras_serializable(package="xlmr_tf")


@_serializable
class TFXLMRobertaModel(EncodingMixin, TFXLMRobertaPreTrainedModel):
    """The bare encoder (or decoder, with `config.is_decoder`), with an optional pooler."""

    strip_base_prefix = True

    def __init__(self, config: XLMRobertaConfig, add_pooling_layer: bool = True, **kwargs):
        super().__init__(config, **kwargs)
        self.add_pooling_layer = add_pooling_layer
        self.roberta = XLMRobertaMainLayer(config, add_pooling_layer, name="roberta")
        self._build_with_dummy_inputs()

    def get_config(self) -> dict:
        return {**super().get_config(), "add_pooling_layer": self.add_pooling_layer}

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        packing = self._packing(values)
        output = self._body(
            values,
            training,
            output_attentions,
            output_hidden_states,
            encoder_hidden_states=values.get("encoder_hidden_states"),
            encoder_attention_mask=values.get("encoder_attention_mask"),
            past_key_values=values.get("past_key_values"),
            use_cache=False if packing is not None else values.get("use_cache"),
            packing=packing,
        )
        return self._return(output, return_dict)


@_serializable
class TFXLMRobertaForCausalLM(TFXLMRobertaPreTrainedModel):
    """Decoder with a language-model head; `labels` give the next-token loss (shifted inside)."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(config, **kwargs)
        if not config.is_decoder:
            logger.warning("TFXLMRobertaForCausalLM is meant to run with is_decoder=True")
        self.roberta = XLMRobertaMainLayer(config, add_pooling_layer=False, name="roberta")
        self.lm_head = XLMRobertaLMHead(config, name="lm_head")
        self._build_with_dummy_inputs()

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        labels = values.get("labels")
        packing = self._packing(values)
        outputs = self._body(
            values,
            training,
            output_attentions,
            output_hidden_states,
            encoder_hidden_states=values.get("encoder_hidden_states"),
            encoder_attention_mask=values.get("encoder_attention_mask"),
            past_key_values=values.get("past_key_values"),
            use_cache=False if labels is not None or packing is not None else values.get("use_cache"),
            packing=packing,
        )
        word_embeddings = self.roberta.embeddings.word_embeddings.table
        loss = None
        if packing is None:
            logits = self.lm_head(outputs.last_hidden_state, word_embeddings=word_embeddings)
            if labels is not None:  # position t predicts token t + 1
                loss = _cross_entropy(logits[:, :-1], labels[:, 1:])
        else:
            packed_logits = self.lm_head(
                packing.pack(outputs.last_hidden_state), word_embeddings=word_embeddings
            )
            logits = packing.unpack(packed_logits)
            if labels is not None:
                # Position t predicts token t + 1 when both are real tokens: padding predicts nothing.
                mask = tf.cast(values["attention_mask"], tf.bool)
                both_real = tf.logical_and(mask[:, :-1], mask[:, 1:])
                following = tf.where(both_real, labels[:, 1:], tf.cast(IGNORE_INDEX, labels.dtype))
                following = tf.concat([following, tf.fill([_dim(labels, 0), 1], IGNORE_INDEX)], axis=1)
                loss = _cross_entropy(packed_logits, packing.pack_labels(tf.cast(following, tf.int32)))
        output = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return self._return(output, return_dict)

    def check_targets(self, values, batch_size, seq_length):
        return _check_token_labels(values, batch_size, seq_length, self.config.vocab_size)


def _check_token_labels(values: dict, batch_size, seq_length, size: int) -> dict:
    """`labels` of a per-token head: `[batch, sequence]`, each in [0, size) or ignored (-100)."""
    if values.get("labels") is not None:
        check_label_shapes(values["labels"], [(batch_size, seq_length)])
        values["labels"] = check_range(values["labels"], size, "labels", ignore_index=IGNORE_INDEX)
    return values


@_serializable
class TFXLMRobertaForMaskedLM(TFXLMRobertaPreTrainedModel):
    """Encoder with a masked-language-model head.

    `labelled_positions_only=True` (needs `labels`) runs the LM head only where
    `labels != -100`: the loss is the same, `logits` is `[num_labelled, vocab]` and
    `masked_positions` holds those rows' flat indices into `[batch * sequence]`. Its output
    size depends on the data, so that path does not run under XLA (`jit_compile=True`).
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(config, **kwargs)
        if config.is_decoder:
            logger.warning("TFXLMRobertaForMaskedLM attends both ways; set is_decoder=False")
        self.roberta = XLMRobertaMainLayer(config, add_pooling_layer=False, name="roberta")
        self.lm_head = XLMRobertaLMHead(config, name="lm_head")
        self._build_with_dummy_inputs()

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        labelled_positions_only=False,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        labels = values.get("labels")
        labelled_positions_only = bool(values.get("labelled_positions_only", False))
        packing = self._packing(values)
        outputs = self._body(
            values,
            training,
            output_attentions,
            output_hidden_states,
            encoder_hidden_states=values.get("encoder_hidden_states"),
            encoder_attention_mask=values.get("encoder_attention_mask"),
            use_cache=False,
            packing=packing,
        )
        sequence_output = outputs.last_hidden_state
        word_embeddings = self.roberta.embeddings.word_embeddings.table
        loss = masked_positions = None
        if labels is not None:
            flat_labels = tf.reshape(labels, [-1])
        if packing is not None:
            features = packing.pack(sequence_output)
            packed_labels = None if labels is None else packing.pack_labels(labels)
            if labelled_positions_only:
                rows = tf.where(packed_labels != IGNORE_INDEX)[:, 0]
                masked_positions = tf.cast(tf.gather(packing.flat_index, rows), tf.int64)
                logits = self.lm_head(tf.gather(features, rows), word_embeddings=word_embeddings)
                loss = _cross_entropy(logits, tf.gather(packed_labels, rows))
            else:
                packed_logits = self.lm_head(features, word_embeddings=word_embeddings)
                logits = packing.unpack(packed_logits)
                if labels is not None:
                    loss = _cross_entropy(packed_logits, packed_labels)
        elif labelled_positions_only:
            masked_positions = tf.where(flat_labels != IGNORE_INDEX)[:, 0]
            features = tf.gather(tf.reshape(sequence_output, [-1, self.config.hidden_size]), masked_positions)
            logits = self.lm_head(features, word_embeddings=word_embeddings)
            loss = _cross_entropy(logits, tf.gather(flat_labels, masked_positions))
        else:
            logits = self.lm_head(sequence_output, word_embeddings=word_embeddings)
            if labels is not None:
                loss = _cross_entropy(logits, labels)
        output = MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            masked_positions=masked_positions,
        )
        return self._return(output, return_dict)

    def check_targets(self, values, batch_size, seq_length):
        if values.get("labelled_positions_only") and values.get("labels") is None:
            raise ValueError("labelled_positions_only=True needs labels to know which positions are labelled")
        return _check_token_labels(values, batch_size, seq_length, self.config.vocab_size)


@_serializable
class TFXLMRobertaForSequenceClassification(TFXLMRobertaPreTrainedModel):
    """Classification or regression from the `<s>` token.

    The loss follows `config.problem_type`; when unset it is regression for one label,
    single-label classification for integer labels and multi-label otherwise.
    """

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaMainLayer(config, add_pooling_layer=False, name="roberta")
        self.classifier = XLMRobertaClassificationHead(config, name="classifier")
        self._build_with_dummy_inputs()

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        packing = self._packing(values)  # the head reads <s> from the unpacked output
        outputs = self._body(values, training, output_attentions, output_hidden_states, packing=packing)
        logits = self.classifier(outputs.last_hidden_state, training=training)
        labels = values.get("labels")
        loss = None if labels is None else self._loss(logits, labels)
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, return_dict)

    def check_targets(self, values, batch_size, seq_length):
        check_first_token(seq_length)  # the head reads the first token
        labels, num_labels = values.get("labels"), self.num_labels
        if labels is None:
            return values
        problem_type = classification_problem_type(self.config, labels.dtype.is_integer)
        if problem_type == "single_label_classification":
            check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
            values["labels"] = check_range(labels, num_labels, "labels", ignore_index=IGNORE_INDEX)
        elif problem_type == "regression" and num_labels == 1:
            check_label_shapes(labels, [(batch_size,), (batch_size, 1)])
        else:
            check_label_shapes(labels, [(batch_size, num_labels)])
        return values

    def _loss(self, logits, labels):
        # Decided per call, not written back into the config as the reference does.
        problem_type = classification_problem_type(self.config, labels.dtype.is_integer)
        if problem_type == "regression":
            if self.num_labels == 1:
                return _mse(tf.reshape(logits, [-1]), tf.reshape(labels, [-1]))
            return _mse(logits, labels)
        if problem_type == "single_label_classification":
            return _cross_entropy(logits, tf.reshape(labels, [-1]))
        return _binary_cross_entropy(logits, labels)


@_serializable
class TFXLMRobertaForMultipleChoice(TFXLMRobertaPreTrainedModel):
    """Scores `[batch, num_choices, sequence]` inputs; logits are `[batch, num_choices]`."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.roberta = XLMRobertaMainLayer(config, name="roberta")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.classifier = _dense(config, 1, "classifier")
        self._build_with_dummy_inputs()

    @property
    def dummy_inputs(self) -> dict:
        return {"input_ids": tf.constant([[[0, 2]]], tf.int32)}

    def call(
        self,
        input_ids=None,
        token_type_ids=None,
        attention_mask=None,
        labels=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        given = values["input_ids"] if values.get("input_ids") is not None else values["inputs_embeds"]
        batch_size, num_choices = _dim(given, 0), _dim(given, 1)
        flat = self._flatten_choices(values)
        packing = self._packing(flat)
        outputs = self._body(flat, training, output_attentions, output_hidden_states, packing=packing)
        pooled = self.dropout(outputs.pooler_output, training=training)
        logits = tf.reshape(self.classifier(pooled), [batch_size, num_choices])
        loss = None
        labels = values.get("labels")
        if labels is not None:
            loss = _cross_entropy(logits, labels)
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, return_dict)

    @staticmethod
    def _flatten_choices(values: dict) -> dict:
        """`[batch, num_choices, sequence, ...]` inputs -> `[batch * num_choices, sequence, ...]`."""
        flat = dict(values)
        for key in ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds"):
            if values.get(key) is not None:
                tensor = values[key]
                flat[key] = tf.reshape(tensor, tf.concat([[-1], tf.shape(tensor)[2:]], axis=0))
                flat[key].set_shape([None, *tensor.shape[2:]])
        return flat

    def check_inputs(self, values):
        input_ids, inputs_embeds = values.get("input_ids"), values.get("inputs_embeds")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            given, name, layout = input_ids, "input_ids", "[batch, num_choices, sequence]"
        else:
            given, name, layout = inputs_embeds, "inputs_embeds", "[batch, num_choices, sequence, hidden]"
        if given.shape.rank != layout.count(",") + 1:
            raise ValueError(f"{name} must be {layout}; got shape {tuple(given.shape)}")
        batch_size, num_choices, seq_length = (_dim(given, i) for i in range(3))
        for key in ("input_ids", "attention_mask", "token_type_ids", "position_ids"):
            if values.get(key) is not None:
                check_shape(values[key], (batch_size, num_choices, seq_length), key)
        # The body's checks see the choices flattened; the checked ids keep their shape.
        checked = self.roberta.check_inputs(self._flatten_choices(values))
        values = dict(values)
        for key in ("input_ids", "token_type_ids", "position_ids"):
            if values.get(key) is not None:
                values[key] = tf.reshape(checked[key], tf.shape(values[key]))
        labels = values.get("labels")
        if labels is not None:
            check_label_shapes(labels, [(batch_size,)])
            choices = num_choices if isinstance(num_choices, int) else tf.int32.max
            values["labels"] = check_range(labels, choices, "labels", ignore_index=IGNORE_INDEX)
        return values


@_serializable
class TFXLMRobertaForTokenClassification(TFXLMRobertaPreTrainedModel):
    """One label per token (e.g. NER); label -100 marks tokens the loss skips."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaMainLayer(config, add_pooling_layer=False, name="roberta")
        self.dropout = keras.layers.Dropout(_classifier_dropout(config))
        self.classifier = _dense(config, config.num_labels, "classifier")
        self._build_with_dummy_inputs()

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        packing = self._packing(values)
        outputs = self._body(values, training, output_attentions, output_hidden_states, packing=packing)
        loss = None
        labels = values.get("labels")
        if packing is None:
            logits = self.classifier(self.dropout(outputs.last_hidden_state, training=training))
            if labels is not None:
                loss = _cross_entropy(logits, labels)
        else:
            packed_logits = self.classifier(
                self.dropout(packing.pack(outputs.last_hidden_state), training=training)
            )
            logits = packing.unpack(packed_logits)
            if labels is not None:
                loss = _cross_entropy(packed_logits, packing.pack_labels(labels))
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, return_dict)

    def check_targets(self, values, batch_size, seq_length):
        return _check_token_labels(values, batch_size, seq_length, self.num_labels)


@_serializable
class TFXLMRobertaForQuestionAnswering(TFXLMRobertaPreTrainedModel):
    """Extractive QA: start and end logits per token.

    Positions outside the sequence are clamped to `sequence_length` and ignored by the loss,
    which is the mean of the start and end cross-entropies.
    """

    label_names = ("start_positions", "end_positions")

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        if config.num_labels != 2:
            raise ValueError(
                f"question answering needs num_labels=2 (start, end); config has {config.num_labels}"
            )
        super().__init__(config, **kwargs)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaMainLayer(config, add_pooling_layer=False, name="roberta")
        self.qa_outputs = _dense(config, config.num_labels, "qa_outputs")
        self._build_with_dummy_inputs()

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        unpadded=False,
        token_budget=None,
        training=False,
    ):
        values = self._gather_inputs(input_ids, dict(locals()))
        output_attentions, output_hidden_states, return_dict = self._flags(values)
        start_positions, end_positions = values.get("start_positions"), values.get("end_positions")
        packing = self._packing(values)
        outputs = self._body(values, training, output_attentions, output_hidden_states, packing=packing)
        if packing is None:
            logits = self.qa_outputs(outputs.last_hidden_state)
        else:
            logits = packing.unpack(self.qa_outputs(packing.pack(outputs.last_hidden_state)))
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None:
            seq_length = _dim(start_logits, 1)
            losses = []
            for positions, position_logits in ((start_positions, start_logits), (end_positions, end_logits)):
                if packing is not None:  # unpadded: a padded position is no candidate answer
                    real = tf.cast(values["attention_mask"], tf.bool)
                    position_logits = tf.where(real, tf.cast(position_logits, tf.float32), tf.float32.min)
                positions = tf.clip_by_value(tf.reshape(positions, [-1]), 0, seq_length)
                losses.append(_cross_entropy(position_logits, positions, ignore_index=seq_length))
            loss = (losses[0] + losses[1]) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return self._return(output, return_dict)

    def check_targets(self, values, batch_size, seq_length):
        start_positions, end_positions = values.get("start_positions"), values.get("end_positions")
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        for name in self.label_names:
            positions = values.get(name)
            if positions is not None:
                check_label_shapes(positions, [(batch_size,), (batch_size, 1)], name)
                check_integer(positions, name)
                # Clamped to the length before the int32 cast, exactly: int64 holds every other
                # dtype's values, uint64 is clamped in its own dtype.
                wide = positions if positions.dtype == tf.uint64 else tf.cast(positions, tf.int64)
                values[name] = tf.minimum(wide, tf.cast(seq_length, wide.dtype))
        return values
