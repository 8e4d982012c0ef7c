"""The Linen modules of the six task heads: the backbone plus a head, and its loss.

On the unpadded path (`token_budget`) the backbone returns packed rows and a `Packing`;
each head runs on the packed rows, computes its loss there and unpacks its output once.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from xlmr_core import (
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from xlmr_core.modeling_utils import IGNORE_INDEX

from .backbone import XLMRobertaModule
from .heads import XLMRobertaClassificationHead, XLMRobertaLMHead, classifier_dropout
from .initialisation import Block, dense
from .losses import cross_entropy, question_answering_loss, sequence_classification_loss


class TaskModule(Block):
    """A task head's module: the backbone, named `roberta` as in the checkpoints, under a head."""

    pooled = False  # whether the backbone has its pooler (only multiple choice reads it)

    def setup(self):
        self.roberta = XLMRobertaModule(
            self.config, self.dtype, self.param_dtype, add_pooling_layer=self.pooled
        )
        self.setup_head()

    def setup_head(self):
        """Create the head's own layers (a `setup` run after the backbone's)."""
        raise NotImplementedError

    def rows(self, inputs: dict, deterministic: bool):
        """`(output, packing)`: the backbone's output, its last hidden state packed when `packing` is set."""
        return self.roberta(**inputs, deterministic=deterministic, keep_packed=True)


class XLMRobertaForCausalLMModule(TaskModule):
    def setup_head(self):
        self.lm_head = XLMRobertaLMHead(self.config, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        outputs, packing = self.rows(inputs, deterministic)
        logits = self.lm_head(outputs.last_hidden_state, self.roberta.word_embeddings())
        loss = None
        if labels is not None and packing is None:
            # Position t predicts token t + 1.
            loss = cross_entropy(logits[:, :-1], labels[:, 1:])
        elif labels is not None:
            # The same pairs, where both t and t + 1 are real tokens.
            mask = inputs["attention_mask"].astype(bool)
            ignored = jnp.full_like(labels[:, :1], IGNORE_INDEX)
            targets = jnp.concatenate([jnp.where(mask, labels, IGNORE_INDEX)[:, 1:], ignored], axis=1)
            loss = cross_entropy(logits, packing.pack_labels(targets))
        if packing is not None:
            logits = packing.unpack(logits)
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )


class XLMRobertaForMaskedLMModule(TaskModule):
    def setup_head(self):
        self.lm_head = XLMRobertaLMHead(self.config, self.dtype, self.param_dtype)

    def __call__(self, labels=None, max_predictions: int | None = None, deterministic=True, **inputs):
        """With `max_predictions` (static), the LM head runs only on the labelled positions."""
        outputs, packing = self.rows(inputs, deterministic)
        sequence_output = outputs.last_hidden_state
        word_embeddings = self.roberta.word_embeddings()
        loss = masked_positions = None
        if max_predictions is not None:
            flat_labels = labels.reshape(-1)
            labelled = flat_labels != IGNORE_INDEX
            if packing is not None:  # padded positions are never labelled
                labelled = labelled & inputs["attention_mask"].reshape(-1).astype(bool)
            # Static size for jit: the first `max_predictions` labelled positions, padded with -1.
            (masked_positions,) = jnp.nonzero(labelled, size=max_predictions, fill_value=-1)
            real = masked_positions >= 0
            rows = jnp.where(real, masked_positions, 0)
            if packing is None:
                features = sequence_output.reshape(-1, sequence_output.shape[-1])[rows]
            else:
                features = packing.take_rows(sequence_output, packing.rows_of(masked_positions))
            logits = self.lm_head(features, word_embeddings)
            loss = cross_entropy(logits, jnp.where(real, flat_labels[rows], IGNORE_INDEX))
            # More labelled positions than room: say so with NaN rather than a silently partial loss.
            loss = jnp.where(jnp.sum(labelled) > max_predictions, jnp.nan, loss)
        else:
            logits = self.lm_head(sequence_output, word_embeddings)
            if labels is not None:
                loss = cross_entropy(logits, labels if packing is None else packing.pack_labels(labels))
            if packing is not None:
                logits = packing.unpack(logits)
        return MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            masked_positions=masked_positions,
        )


class XLMRobertaForSequenceClassificationModule(TaskModule):
    def setup_head(self):
        self.classifier = XLMRobertaClassificationHead(self.config, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        outputs, packing = self.rows(inputs, deterministic)
        features = outputs.last_hidden_state
        if packing is not None:
            features = packing.first_tokens(features)
        logits = self.classifier(features, deterministic=deterministic)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class XLMRobertaForMultipleChoiceModule(TaskModule):
    pooled = True

    def setup_head(self):
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = dense(self.config, 1, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        """Inputs are `[batch, num_choices, sequence(, hidden)]`; each choice is encoded on its own."""
        given = inputs["input_ids"] if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
        batch_size, num_choices, seq_length = given.shape[:3]
        per_choice = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")
        flat = dict(inputs)
        for name in per_choice:
            if inputs.get(name) is not None:
                flat[name] = inputs[name].reshape(batch_size * num_choices, *inputs[name].shape[2:])
        outputs = self.roberta(**flat, deterministic=deterministic)
        pooled = self.dropout(outputs.pooler_output, deterministic=deterministic)
        logits = self.classifier(pooled).reshape(batch_size, num_choices)
        loss = None if labels is None else cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class XLMRobertaForTokenClassificationModule(TaskModule):
    def setup_head(self):
        self.dropout = nn.Dropout(classifier_dropout(self.config))
        self.classifier = dense(self.config, self.config.num_labels, self.dtype, self.param_dtype)

    def __call__(self, labels=None, deterministic=True, **inputs):
        outputs, packing = self.rows(inputs, deterministic)
        logits = self.classifier(self.dropout(outputs.last_hidden_state, deterministic=deterministic))
        loss = None
        if labels is not None:
            loss = cross_entropy(logits, labels if packing is None else packing.pack_labels(labels))
        if packing is not None:
            logits = packing.unpack(logits)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class XLMRobertaForQuestionAnsweringModule(TaskModule):
    def setup_head(self):
        self.qa_outputs = dense(self.config, self.config.num_labels, self.dtype, self.param_dtype)

    def __call__(self, start_positions=None, end_positions=None, deterministic=True, **inputs):
        outputs, packing = self.rows(inputs, deterministic)
        logits = self.qa_outputs(outputs.last_hidden_state)
        if packing is not None:
            logits = packing.unpack(logits)
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        loss = None
        if start_positions is not None:
            real = None if packing is None else inputs["attention_mask"]
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions, real)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
