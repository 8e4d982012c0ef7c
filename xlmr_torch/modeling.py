"""XLM-RoBERTa in PyTorch: the seven public models.

The network reads top to bottom in its own modules: `embeddings`, `attention`, `layer`,
`encoder`, `pooler`, `heads` (and `packing`, `losses`); `backbone` assembles the encoder as
`XLMRobertaModel` and `pretrained` holds the shared base class. Input checks are in
`inputs.py`, loading and saving in `checkpoint_io.py`. Module attribute names reproduce the
reference state-dict names exactly, so published checkpoints load without renaming.

Unpadded execution (`unpadded=True` on every model, the contract of `xlmr_core.unpadding`):
with padding in `attention_mask`, the batch is packed once (`Packing`); the embeddings,
every layer and the heads run on the real tokens packed as `[tokens, hidden]`, attention
runs per sequence (one fused SDPA call each), and each output is unpacked once. Outputs
come back in the padded layout with zeros at padded positions; token-level losses leave
padded positions out (the causal LM also leaves out the prediction made from a padded
position; question answering keeps padded positions out of the softmax and treats an
answer there as ignored); the pooler and sentence-level heads read position 0 as before
(zeros for a left-padded row). Tracers see the padded path. Mask rows must be one run of 1s
(right or left padding).

Where we deliberately differ from the reference:
- relative position kinds place the new queries after the cached ones, so a cached call
  with several new tokens (or a first call that merely creates a cache) gives the same
  result as a full recompute; the reference puts every query at the last position;
- positions derived from `inputs_embeds` continue after the cached length;
- `encoder_hidden_states` given to a model without cross-attention, out-of-range ids and
  over-long inputs raise `ValueError` instead of being ignored or failing in an index op;
- sequence classification decides its `problem_type` per call and leaves the config alone;
- losses are computed in float32 even for float16 / bfloat16 models.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from xlmr_core import (
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    XLMRobertaConfig,
)
from xlmr_core.modeling_utils import IGNORE_INDEX

from .backbone import XLMRobertaModel, backbone_arguments
from .heads import XLMRobertaClassificationHead, XLMRobertaLMHead, classifier_dropout
from .inputs import as_labels, as_positions, check_label_shapes, check_shape
from .losses import cross_entropy, sequence_classification_loss
from .pretrained import XLMRobertaPreTrainedModel

__all__ = [
    "XLMRobertaPreTrainedModel",
    "XLMRobertaModel",
    "XLMRobertaForCausalLM",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaForMultipleChoice",
    "XLMRobertaForTokenClassification",
    "XLMRobertaForQuestionAnswering",
]

logger = logging.getLogger(__name__)


class XLMRobertaForCausalLM(XLMRobertaPreTrainedModel):
    """Decoder with a language-model head; `labels` give the next-token loss (shifted inside)."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        if not config.is_decoder:
            logger.warning("XLMRobertaForCausalLM is meant to run with is_decoder=True")
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.lm_head = XLMRobertaLMHead(config)
        self.post_init()

    def forward(
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
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        if labels is not None:
            use_cache = False
        out = self.roberta.forward_rows(**backbone_arguments(locals()))
        row_logits = self.lm_head(out.rows)
        logits = out.unpack(row_logits)
        loss = None
        if labels is not None:
            check_label_shapes(labels, [logits.shape[:2]])
            labels = as_labels(labels, self.config.vocab_size, "labels", IGNORE_INDEX).to(logits.device)
            # Position t predicts token t + 1; the last position predicts nothing.
            targets = torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), IGNORE_INDEX)], dim=1)
            if out.packing is not None:  # unpadded: no prediction of a padded position
                keep = out.packing.keep.view(labels.shape)
                next_is_real = torch.cat([keep[:, 1:], torch.zeros_like(keep[:, :1])], dim=1)
                targets = targets.masked_fill(~next_is_real, IGNORE_INDEX)
            loss = cross_entropy(row_logits, out.pack_labels(targets))
        output = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cross_attentions=out.cross_attentions,
        )
        return self._format_output(output, return_dict)


class XLMRobertaForMaskedLM(XLMRobertaPreTrainedModel):
    """Encoder with a masked-language-model head.

    `labelled_positions_only=True` (needs `labels`) runs the LM head only where
    `labels != -100`: the loss is the same, `logits` is `[num_labelled, vocab]` and
    `masked_positions` holds those rows' flat indices into `[batch * sequence]`.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        if config.is_decoder:
            logger.warning("XLMRobertaForMaskedLM attends both ways; set is_decoder=False")
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.lm_head = XLMRobertaLMHead(config)
        self.post_init()

    def forward(
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
        labelled_positions_only: bool = False,
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        if labelled_positions_only and labels is None:
            raise ValueError("labelled_positions_only=True needs labels to know which positions are labelled")
        # The head's dense gradient of the tied matrix absorbs the lookup's rows (see there).
        with self.lm_head.sparse_tied_lookup(self.roberta.embeddings.word_embeddings):
            out = self.roberta.forward_rows(**backbone_arguments(locals(), use_cache=False))
        rows = out.rows
        loss = masked_positions = None
        if labels is not None:
            check_label_shapes(labels, [out.padded_shape])
            labels = as_labels(labels, self.config.vocab_size, "labels", IGNORE_INDEX)
            # Packed rows hold no padded position: an unpadded call neither predicts nor scores one.
            row_labels = out.pack_labels(labels.to(rows.device)).reshape(-1)
        if labelled_positions_only:
            labelled_rows = (row_labels != IGNORE_INDEX).nonzero().squeeze(-1)
            logits = self.lm_head(rows.reshape(-1, rows.shape[-1]).index_select(0, labelled_rows))
            loss = cross_entropy(logits, row_labels[labelled_rows])
            masked_positions = labelled_rows if out.packing is None else out.packing.indices[labelled_rows]
        else:
            row_logits = self.lm_head(rows)
            logits = out.unpack(row_logits)
            if labels is not None:
                loss = cross_entropy(row_logits, row_labels)
        output = MaskedLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            masked_positions=masked_positions,
        )
        return self._format_output(output, return_dict)


class XLMRobertaForSequenceClassification(XLMRobertaPreTrainedModel):
    """Classification or regression from the `<s>` token.

    The loss follows `config.problem_type`; when unset it is regression for one label,
    single-label classification for integer labels and multi-label otherwise.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.classifier = XLMRobertaClassificationHead(config)
        self.post_init()

    def forward(
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
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        out = self.roberta.forward_rows(**backbone_arguments(locals()))
        logits = self.classifier(out.first_tokens())
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(self.config, logits, labels.to(logits.device))
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return self._format_output(output, return_dict)


class XLMRobertaForMultipleChoice(XLMRobertaPreTrainedModel):
    """Scores `[batch, num_choices, sequence]` inputs; logits are `[batch, num_choices]`."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.roberta = XLMRobertaModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
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
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            given, name, layout = input_ids, "input_ids", "[batch, num_choices, sequence]"
        else:
            given, name, layout = inputs_embeds, "inputs_embeds", "[batch, num_choices, sequence, hidden]"
        if given.dim() != layout.count(",") + 1:
            raise ValueError(f"{name} must be {layout}; got shape {tuple(given.shape)}")
        batch_size, num_choices, seq_length = given.shape[:3]

        def flatten(tensor, name):
            if tensor is None:
                return None
            check_shape(tensor, (batch_size, num_choices, seq_length), name)
            return tensor.reshape(batch_size * num_choices, seq_length)

        out = self.roberta.forward_rows(
            **backbone_arguments(
                locals(),
                input_ids=flatten(input_ids, "input_ids"),
                attention_mask=flatten(attention_mask, "attention_mask"),
                token_type_ids=flatten(token_type_ids, "token_type_ids"),
                position_ids=flatten(position_ids, "position_ids"),
                inputs_embeds=None
                if inputs_embeds is None
                else inputs_embeds.reshape(-1, *inputs_embeds.shape[2:]),
            )
        )
        logits = self.classifier(self.dropout(out.pooler_output)).view(batch_size, num_choices)
        loss = None
        if labels is not None:
            check_label_shapes(labels, [(batch_size,)])
            labels = as_labels(labels, num_choices, "labels", IGNORE_INDEX)
            loss = cross_entropy(logits, labels.to(logits.device))
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return self._format_output(output, return_dict)


class XLMRobertaForTokenClassification(XLMRobertaPreTrainedModel):
    """One label per token (e.g. NER); label -100 marks tokens the loss skips."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
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
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        out = self.roberta.forward_rows(**backbone_arguments(locals()))
        row_logits = self.classifier(self.dropout(out.rows))
        logits = out.unpack(row_logits)
        loss = None
        if labels is not None:
            check_label_shapes(labels, [logits.shape[:2]])
            labels = as_labels(labels, self.num_labels, "labels", IGNORE_INDEX)
            # Packed rows hold no padded position: an unpadded call does not score one.
            loss = cross_entropy(row_logits, out.pack_labels(labels.to(logits.device)))
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return self._format_output(output, return_dict)


class XLMRobertaForQuestionAnswering(XLMRobertaPreTrainedModel):
    """Extractive QA: start and end logits per token.

    Positions outside the sequence are clamped to `sequence_length` and ignored by the loss,
    which is the mean of the start and end cross-entropies.
    """

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
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
        unpadded: bool = False,
        token_budget: int | None = None,
        pair_budget: int | None = None,
    ):
        if self.num_labels != 2:
            raise ValueError(
                f"question answering needs num_labels=2 (start, end); config has {self.num_labels}"
            )
        out = self.roberta.forward_rows(**backbone_arguments(locals()))
        # A span's softmax runs over its whole sequence: the loss reads the unpacked logits.
        start_end = out.unpack(self.qa_outputs(out.rows))
        start_logits, end_logits = start_end.unbind(dim=-1)
        start_logits, end_logits = start_logits.contiguous(), end_logits.contiguous()
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        if start_positions is not None:
            keep = None if out.packing is None else out.packing.keep.view(start_logits.shape)
            loss = (
                self._span_loss(start_logits, start_positions, "start_positions", keep)
                + self._span_loss(end_logits, end_positions, "end_positions", keep)
            ) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
        return self._format_output(output, return_dict)

    @staticmethod
    def _span_loss(logits, positions, name, keep):
        """Cross entropy of one end of the answer span; `keep` (unpadded): the real positions."""
        batch_size, seq_length = logits.shape
        check_label_shapes(positions, [(batch_size,), (batch_size, 1)], name)
        positions = as_positions(positions.reshape(-1), seq_length, name).to(logits.device)
        logits = logits.float()
        if keep is not None:
            # unpadded: padded positions are no answer (out of the softmax) and no label
            logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
            at_padding = ~keep.gather(1, positions.clamp(max=seq_length - 1)[:, None])[:, 0]
            positions = positions.masked_fill(at_padding, seq_length)
        return cross_entropy(logits, positions, ignore_index=seq_length)
