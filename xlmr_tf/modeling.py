"""XLM-RoBERTa in TensorFlow with Keras 3: the seven public models.

The network reads top to bottom in its own modules: `embeddings`, `attention`, `layer`,
`encoder`, `pooler`, `heads`, assembled in `backbone` (`XLMRobertaMainLayer`); `pretrained`
holds the base class (input handling, serialisation, serving), `checkpoint_io` loading and
saving, `training` Keras training, `losses` the heads' losses, `packing` unpadded execution.
It mirrors `xlmr_torch` and `xlmr_flax` module by module. Layer and weight names reproduce the
reference TF port's (`roberta/encoder/layer_._0/attention/self/query/kernel`), and the one
table in `xlmr_core.weight_mapping` turns them into canonical checkpoint names.

Every model is a `keras.Model` whose variables exist as soon as it is constructed (it
runs once on a dummy input), so weights load before the first real call. A call takes
a dict (what a tokenizer returns with `return_tensors="tf"`) or keyword arguments.

Key/value cache (decoders only): `past_key_values` is a tuple with one entry per layer,
`(self_key, self_value)` or `(self_key, self_value, cross_key, cross_value)`, each
`[batch, heads, length, head_dim]`, exactly as in the PyTorch models (rules in `xlmr_core.caching`).

Input checks: the models' `__call__` runs them all (`check_inputs`) before Keras's call
wrapper, so an error is the one line raised here. Ids of any integer dtype are accepted and
cast to int32 after the checks; other dtypes are a `TypeError`. Shapes are checked whenever
they are known while tracing (always in eager mode) and raise `ValueError`. Value checks
(ids inside their tables, labels in range, the sequence fitting the position table)
raise `ValueError` in eager mode; inside a `tf.function` they become `tf.debugging`
assertions that stop the step with an `InvalidArgumentError` carrying the same message.
XLA (`jit_compile=True`) drops assertions, so compiled steps run unchecked: validate data
in eager mode first.

Unpadded execution (`unpadded=True`, contract in `xlmr_core.unpadding`): the call packs once
from the mask (`Packing`), the embeddings, every layer and the head run on the real tokens as
`[tokens, hidden]`, and the outputs are unpacked once. A concrete mask packs to its bucketed
`token_budget`; a traced one packs to its run-time count in a plain `tf.function`, and under
XLA to `token_budget` when given, else batch × seq (correct, no saving): pass `token_budget`
for compiled calls, one compilation per bucket. Under XLA a traced mask's attention pays the
worst case of block pairs the budget allows unless `pair_budget` bounds them; both come from
`xlmr_core.unpadding.static_budgets(mask)`. `model.unpadded`, `model.token_budget` and
`model.pair_budget` are what calls that do not say use (`fit`, `evaluate`, `predict`).
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from xlmr_core import (
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    XLMRobertaConfig,
)
from xlmr_core.modeling_utils import (
    CROSS_ATTENTION_INPUTS,
    IGNORE_INDEX,
    TOKEN_INPUTS,
    check_first_token,
    classification_problem_type,
)

from .backbone import XLMRobertaMainLayer
from .encoding import EncodingMixin
from .heads import XLMRobertaClassificationHead, XLMRobertaLMHead, classifier_dropout
from .initialisation import dense
from .inputs import check_integer, check_label_shapes, check_range, check_shape, dim
from .losses import answer_loss, binary_cross_entropy, cross_entropy, mse
from .pretrained import (
    OUTPUT_OPTIONS,
    UNPADDED_OPTIONS,
    TFXLMRobertaPreTrainedModel,
    forward_arguments,
)

__all__ = [
    "TFXLMRobertaModel",
    "TFXLMRobertaForCausalLM",
    "TFXLMRobertaForMaskedLM",
    "TFXLMRobertaForSequenceClassification",
    "TFXLMRobertaForMultipleChoice",
    "TFXLMRobertaForTokenClassification",
    "TFXLMRobertaForQuestionAnswering",
    "TFXLMRobertaPreTrainedModel",
]

logger = logging.getLogger(__name__)

# Registered under "xlmr_tf>ClassName", so `keras.models.load_model` finds them by name.
_serializable = keras.saving.register_keras_serializable(package="xlmr_tf")
# The cache arguments of the decoders.
_CACHE = ("past_key_values", "use_cache")


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

    @forward_arguments(*TOKEN_INPUTS, *CROSS_ATTENTION_INPUTS, *_CACHE, *OUTPUT_OPTIONS, *UNPADDED_OPTIONS)
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        output, _ = self._body(values, training, keep_packed=False, **_decoder_inputs(values))
        return self._return(output, values)


def _decoder_inputs(values: dict) -> dict:
    """The main layer's arguments of a decoder: cross-attention inputs and the cache."""
    return {key: values.get(key) for key in (*CROSS_ATTENTION_INPUTS, *_CACHE)}


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

    @forward_arguments(
        *TOKEN_INPUTS, *CROSS_ATTENTION_INPUTS, "labels", *_CACHE, *OUTPUT_OPTIONS, *UNPADDED_OPTIONS
    )
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        labels = values.get("labels")
        body_inputs = _decoder_inputs(values)
        if labels is not None:
            body_inputs["use_cache"] = False
        outputs, packing = self._body(values, training, **body_inputs)
        word_embeddings = self.roberta.embeddings.word_embeddings.table
        logits = self.lm_head(outputs.last_hidden_state, word_embeddings=word_embeddings)
        loss = None
        if packing is None:
            if labels is not None:  # position t predicts token t + 1
                loss = cross_entropy(logits[:, :-1], labels[:, 1:])
        else:
            packed_logits, logits = logits, packing.unpack_output(logits)
            if labels is not None:
                # Position t predicts token t + 1 when both are real tokens: padding predicts nothing.
                mask = tf.cast(values["attention_mask"], tf.bool)
                both_real = tf.logical_and(mask[:, :-1], mask[:, 1:])
                following = tf.where(both_real, labels[:, 1:], tf.cast(IGNORE_INDEX, labels.dtype))
                following = tf.concat([following, tf.fill([dim(labels, 0), 1], IGNORE_INDEX)], axis=1)
                loss = cross_entropy(packed_logits, packing.pack_labels(tf.cast(following, tf.int32)))
        output = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return self._return(output, values)

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

    @forward_arguments(
        *TOKEN_INPUTS,
        *CROSS_ATTENTION_INPUTS,
        "labels",
        *OUTPUT_OPTIONS,
        "labelled_positions_only",
        *UNPADDED_OPTIONS,
    )
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        labels = values.get("labels")
        labelled_positions_only = bool(values.get("labelled_positions_only", False))
        outputs, packing = self._body(
            values,
            training,
            encoder_hidden_states=values.get("encoder_hidden_states"),
            encoder_attention_mask=values.get("encoder_attention_mask"),
            use_cache=False,
        )
        features = outputs.last_hidden_state  # packed rows when unpadded
        word_embeddings = self.roberta.embeddings.word_embeddings.table
        loss = masked_positions = None
        if labelled_positions_only:
            if packing is None:
                flat_labels = tf.reshape(labels, [-1])
                features = tf.reshape(features, [-1, self.config.hidden_size])
                masked_positions = tf.where(flat_labels != IGNORE_INDEX)[:, 0]
                rows = masked_positions
            else:
                flat_labels = packing.pack_labels(labels)
                rows = tf.where(flat_labels != IGNORE_INDEX)[:, 0]
                masked_positions = tf.cast(tf.gather(packing.flat_index, rows), tf.int64)
            logits = self.lm_head(tf.gather(features, rows), word_embeddings=word_embeddings)
            loss = cross_entropy(logits, tf.gather(flat_labels, rows))
        else:
            logits = self.lm_head(features, word_embeddings=word_embeddings)
            if labels is not None:
                loss = cross_entropy(logits, labels if packing is None else packing.pack_labels(labels))
            if packing is not None:
                logits = packing.unpack_output(logits)
        output = MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            masked_positions=masked_positions,
        )
        return self._return(output, values)

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

    @forward_arguments(*TOKEN_INPUTS, "labels", *OUTPUT_OPTIONS, *UNPADDED_OPTIONS)
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        outputs, packing = self._body(values, training)
        features = outputs.last_hidden_state
        if packing is not None:
            features = packing.first_tokens(features)
        logits = self.classifier(features, training=training)
        labels = values.get("labels")
        loss = None if labels is None else self._loss(logits, labels)
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, values)

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
                return mse(tf.reshape(logits, [-1]), tf.reshape(labels, [-1]))
            return mse(logits, labels)
        if problem_type == "single_label_classification":
            return cross_entropy(logits, tf.reshape(labels, [-1]))
        return binary_cross_entropy(logits, labels)


@_serializable
class TFXLMRobertaForMultipleChoice(TFXLMRobertaPreTrainedModel):
    """Scores `[batch, num_choices, sequence]` inputs; logits are `[batch, num_choices]`."""

    def __init__(self, config: XLMRobertaConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.roberta = XLMRobertaMainLayer(config, name="roberta")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.classifier = dense(config, 1, "classifier")
        self._build_with_dummy_inputs()

    @property
    def dummy_inputs(self) -> dict:
        return {"input_ids": tf.constant([[[0, 2]]], tf.int32)}

    @forward_arguments(
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "labels",
        "position_ids",
        "head_mask",
        "inputs_embeds",
        *OUTPUT_OPTIONS,
        *UNPADDED_OPTIONS,
    )
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        given = values["input_ids"] if values.get("input_ids") is not None else values["inputs_embeds"]
        batch_size, num_choices = dim(given, 0), dim(given, 1)
        outputs, _ = self._body(self._flatten_choices(values), training)
        pooled = self.dropout(outputs.pooler_output, training=training)
        logits = tf.reshape(self.classifier(pooled), [batch_size, num_choices])
        loss = None
        labels = values.get("labels")
        if labels is not None:
            loss = cross_entropy(logits, labels)
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, values)

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
        batch_size, num_choices, seq_length = (dim(given, i) for i in range(3))
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
        self.dropout = keras.layers.Dropout(classifier_dropout(config))
        self.classifier = dense(config, config.num_labels, "classifier")
        self._build_with_dummy_inputs()

    @forward_arguments(*TOKEN_INPUTS, "labels", *OUTPUT_OPTIONS, *UNPADDED_OPTIONS)
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        outputs, packing = self._body(values, training)
        logits = self.classifier(self.dropout(outputs.last_hidden_state, training=training))
        loss = None
        labels = values.get("labels")
        if labels is not None:
            loss = cross_entropy(logits, labels if packing is None else packing.pack_labels(labels))
        if packing is not None:
            logits = packing.unpack_output(logits)
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._return(output, values)

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
        self.qa_outputs = dense(config, config.num_labels, "qa_outputs")
        self._build_with_dummy_inputs()

    @forward_arguments(*TOKEN_INPUTS, "start_positions", "end_positions", *OUTPUT_OPTIONS, *UNPADDED_OPTIONS)
    def call(self, *args, training=False, **inputs):
        values = self._call_values(args, inputs)
        outputs, packing = self._body(values, training)
        logits = self.qa_outputs(outputs.last_hidden_state)
        if packing is not None:
            logits = packing.unpack_output(logits)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if values.get("start_positions") is not None:
            # Unpadded, padding is no candidate answer and an answer on padding is ignored.
            real = None if packing is None else tf.cast(values["attention_mask"], tf.bool)
            start_loss = answer_loss(start_logits, values["start_positions"], real)
            loss = (start_loss + answer_loss(end_logits, values["end_positions"], real)) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return self._return(output, values)

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
