"""Bad inputs fail with a ValueError that names the problem."""

from __future__ import annotations

import pytest
import torch

from .conftest import HIDDEN, LAYERS, POSITION_KINDS, VOCAB, build, decoder_config, tiny_config, token_ids

IDS = token_ids(2, 6)


def _expect_error(model, match, **inputs):
    with pytest.raises(ValueError, match=match):
        with torch.no_grad():
            model(**inputs)


BASE_MODEL_CASES = {
    "token id above the vocabulary": (dict(input_ids=torch.tensor([[0, VOCAB]])), rf"input_ids.*{VOCAB}"),
    "negative token id": (dict(input_ids=torch.tensor([[0, -2]])), r"input_ids.*-2"),
    "token type outside the table": (
        dict(input_ids=IDS, token_type_ids=torch.full_like(IDS, 2)),
        r"token_type_ids",
    ),
    "position id outside the table": (
        dict(input_ids=IDS, position_ids=torch.full_like(IDS, 40)),
        r"position_ids",
    ),
    "both ids and embeddings": (dict(input_ids=IDS, inputs_embeds=torch.zeros(2, 6, HIDDEN)), r"exactly one"),
    "neither ids nor embeddings": (dict(), r"exactly one"),
    "one-dimensional ids": (dict(input_ids=IDS[0]), r"input_ids must be \[batch, sequence\]"),
    "embeddings of the wrong width": (dict(inputs_embeds=torch.zeros(2, 6, HIDDEN + 1)), r"inputs_embeds"),
    "mask shorter than the input": (
        dict(input_ids=IDS, attention_mask=torch.ones(2, 5)),
        r"attention_mask.*\(2, 5\)",
    ),
    "token types of another shape": (
        dict(input_ids=IDS, token_type_ids=torch.zeros(2, 5).long()),
        "token_type_ids",
    ),
    "position ids of another shape": (
        dict(input_ids=IDS, position_ids=torch.arange(5)[None]),
        "position_ids",
    ),
    "head mask of the wrong shape": (dict(input_ids=IDS, head_mask=torch.ones(LAYERS, 3)), "head_mask"),
    "encoder states without cross-attention": (
        dict(input_ids=IDS, encoder_hidden_states=torch.zeros(2, 3, HIDDEN)),
        "add_cross_attention",
    ),
    "encoder mask without encoder states": (
        dict(input_ids=IDS, encoder_attention_mask=torch.ones(2, 3)),
        "encoder",
    ),
    "a cache for an encoder": (
        dict(input_ids=IDS, past_key_values=((torch.zeros(2, 4, 1, 8),) * 2,) * LAYERS),
        "is_decoder",
    ),
}


@pytest.mark.parametrize("case", list(BASE_MODEL_CASES))
def test_bad_base_model_inputs(case):
    inputs, match = BASE_MODEL_CASES[case]
    _expect_error(build("XLMRobertaModel"), match, **inputs)


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_a_sequence_longer_than_the_position_table_is_a_value_error(position_kind):
    model = build("XLMRobertaModel", position_embedding_type=position_kind)
    longest = model.config.max_sequence_length
    assert longest == (38 if position_kind == "absolute" else 40)
    with torch.no_grad():
        model(input_ids=token_ids(1, longest))  # the longest allowed input works
    _expect_error(model, rf"{longest + 1}.*{longest}", input_ids=token_ids(1, longest + 1))


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
def test_cached_plus_new_tokens_beyond_the_position_table_is_a_value_error(position_kind):
    config = decoder_config(position_embedding_type=position_kind, add_cross_attention=False)
    model = build("XLMRobertaForCausalLM", config)
    longest = config.max_sequence_length
    with torch.no_grad():
        past = model(input_ids=token_ids(1, longest - 1)).past_key_values
        model(input_ids=token_ids(1, 1), past_key_values=past)
    _expect_error(model, "cached", input_ids=token_ids(1, 2), past_key_values=past)


DECODER_CASES = {
    "encoder states of another width": (
        dict(encoder_hidden_states=torch.zeros(2, 3, HIDDEN + 2)),
        "encoder_hidden_states",
    ),
    "encoder states of another batch": (dict(encoder_hidden_states=torch.zeros(3, 3, HIDDEN)), "batch"),
    "encoder mask of another shape": (
        dict(encoder_hidden_states=torch.zeros(2, 3, HIDDEN), encoder_attention_mask=torch.ones(2, 4)),
        "encoder_attention_mask",
    ),
    "a cache with too few layers": (
        dict(past_key_values=((torch.zeros(2, 4, 1, 8),) * 2,)),
        "one entry per layer",
    ),
    "a cache of the wrong layout": (
        dict(past_key_values=((torch.zeros(2, 1, 4, 8),) * 2,) * LAYERS),
        r"\[batch, heads, length, head_dim\]",
    ),
    "labels of another shape": (dict(labels=torch.zeros(2, 5).long()), r"labels.*\(2, 5\)"),
    "labels beyond the vocabulary": (dict(labels=torch.full((2, 6), VOCAB)), "labels"),
}


@pytest.mark.parametrize("case", list(DECODER_CASES))
def test_bad_decoder_inputs(case):
    inputs, match = DECODER_CASES[case]
    _expect_error(build("XLMRobertaForCausalLM"), match, input_ids=IDS, **inputs)


def test_a_decoder_without_cross_attention_rejects_encoder_states():
    model = build("XLMRobertaForCausalLM", decoder_config(add_cross_attention=False))
    _expect_error(
        model, "add_cross_attention", input_ids=IDS, encoder_hidden_states=torch.zeros(2, 3, HIDDEN)
    )


def test_the_masked_lm_rejects_encoder_states():
    _expect_error(
        build("XLMRobertaForMaskedLM"),
        "add_cross_attention",
        input_ids=IDS,
        encoder_hidden_states=torch.zeros(2, 3, HIDDEN),
    )


HEAD_LABEL_CASES = [
    ("XLMRobertaForMaskedLM", dict(labels=torch.zeros(2, 7).long()), r"labels.*\(2, 7\)"),
    ("XLMRobertaForTokenClassification", dict(labels=torch.zeros(2).long()), r"labels.*\(2,\)"),
    ("XLMRobertaForTokenClassification", dict(labels=torch.full((2, 6), 5)), r"labels.*\[0, 2\)"),
    ("XLMRobertaForSequenceClassification", dict(labels=torch.zeros(3).long()), r"labels.*\(3,\)"),
    ("XLMRobertaForSequenceClassification", dict(labels=torch.tensor([0, 2])), r"labels.*\[0, 2\)"),
    ("XLMRobertaForSequenceClassification", dict(labels=torch.zeros(2, 3)), r"labels.*\(2, 3\)"),
    (
        "XLMRobertaForQuestionAnswering",
        dict(start_positions=torch.zeros(3).long(), end_positions=torch.zeros(2).long()),
        "start_positions",
    ),
    ("XLMRobertaForQuestionAnswering", dict(start_positions=torch.zeros(2).long()), "end_positions"),
]


@pytest.mark.parametrize(("head", "labels", "match"), HEAD_LABEL_CASES)
def test_labels_that_do_not_fit_the_head(head, labels, match):
    _expect_error(build(head), match, input_ids=IDS, **labels)


def test_regression_labels_must_match_the_outputs():
    model = build("XLMRobertaForSequenceClassification", num_labels=1)
    _expect_error(model, "labels", input_ids=IDS, labels=torch.zeros(2, 3))


def test_multiple_choice_needs_a_choices_axis():
    model = build("XLMRobertaForMultipleChoice")
    _expect_error(model, r"num_choices", input_ids=IDS)
    ids = token_ids(6, 5).view(2, 3, 5)
    _expect_error(model, "attention_mask", input_ids=ids, attention_mask=torch.ones(2, 3, 4))
    _expect_error(model, "labels", input_ids=ids, labels=torch.tensor([3, 0]))


def test_question_answering_needs_two_outputs():
    model = build("XLMRobertaForQuestionAnswering", tiny_config(num_labels=3))
    _expect_error(model, "num_labels=2", input_ids=IDS)
