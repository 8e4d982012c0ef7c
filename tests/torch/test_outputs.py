"""What each head returns: fields, shapes, tuple form, dict inputs."""

from __future__ import annotations

import pytest
import torch

from .conftest import HEADS, HIDDEN, LAYERS, POSITION_KINDS, VOCAB, build, inputs_for

BATCH, LENGTH, CHOICES = 2, 7, 3

# Fields every head returns by default, and the shape of each.
EXPECTED = {
    "XLMRobertaModel": {"last_hidden_state": (BATCH, LENGTH, HIDDEN), "pooler_output": (BATCH, HIDDEN)},
    "XLMRobertaForCausalLM": {"logits": (BATCH, LENGTH, VOCAB)},
    "XLMRobertaForMaskedLM": {"logits": (BATCH, LENGTH, VOCAB)},
    "XLMRobertaForSequenceClassification": {"logits": (BATCH, 2)},
    "XLMRobertaForMultipleChoice": {"logits": (BATCH, CHOICES)},
    "XLMRobertaForTokenClassification": {"logits": (BATCH, LENGTH, 2)},
    "XLMRobertaForQuestionAnswering": {"start_logits": (BATCH, LENGTH), "end_logits": (BATCH, LENGTH)},
}


def _run(head, position_kind="absolute", **options):
    model = build(head, position_embedding_type=position_kind)
    with torch.no_grad():
        return model(**inputs_for(head, BATCH, LENGTH, CHOICES), **options)


@pytest.mark.parametrize("position_kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_default_fields_and_shapes(head, position_kind):
    options = {"use_cache": False} if head == "XLMRobertaForCausalLM" else {}
    out = _run(head, position_kind, **options)
    assert {k: tuple(v.shape) for k, v in out.items()} == EXPECTED[head]


@pytest.mark.parametrize("head", HEADS)
def test_hidden_states_and_attentions_on_request(head):
    out = _run(head, output_hidden_states=True, output_attentions=True)
    rows = BATCH * CHOICES if head == "XLMRobertaForMultipleChoice" else BATCH
    assert len(out.hidden_states) == LAYERS + 1
    assert all(h.shape == (rows, LENGTH, HIDDEN) for h in out.hidden_states)
    assert len(out.attentions) == LAYERS
    assert all(a.shape == (rows, 4, LENGTH, LENGTH) for a in out.attentions)


@pytest.mark.parametrize("head", HEADS)
def test_attention_rows_are_distributions(head):
    out = _run(head, output_attentions=True)
    for attention in out.attentions:
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))


def test_the_decoder_returns_a_cache_and_cross_attentions():
    model = build("XLMRobertaForCausalLM")
    encoder_states = torch.randn(BATCH, 5, HIDDEN)
    with torch.no_grad():
        out = model(
            **inputs_for("XLMRobertaForCausalLM"),
            encoder_hidden_states=encoder_states,
            output_attentions=True,
        )
    assert list(out) == ["logits", "past_key_values", "attentions", "cross_attentions"]
    assert len(out.past_key_values) == LAYERS
    self_key, self_value, cross_key, cross_value = out.past_key_values[0]
    assert self_key.shape == self_value.shape == (BATCH, 4, LENGTH, HIDDEN // 4)
    assert cross_key.shape == cross_value.shape == (BATCH, 4, 5, HIDDEN // 4)
    assert all(a.shape == (BATCH, 4, LENGTH, 5) for a in out.cross_attentions)


def test_an_encoder_never_returns_a_cache():
    out = _run("XLMRobertaModel", use_cache=True)
    assert "past_key_values" not in out


@pytest.mark.parametrize("head", HEADS)
def test_return_dict_false_gives_the_fields_as_a_tuple(head):
    as_dict = _run(head, output_hidden_states=True)
    as_tuple = _run(head, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_dict)
    for got, want in zip(as_tuple, as_dict.values()):
        if isinstance(want, tuple):
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w)
        else:
            torch.testing.assert_close(got, want)


def test_config_return_dict_false_is_the_default_for_the_call():
    model = build("XLMRobertaForSequenceClassification", return_dict=False)
    with torch.no_grad():
        assert isinstance(model(**inputs_for("XLMRobertaForSequenceClassification")), tuple)


def test_loss_comes_first_in_the_tuple():
    model = build("XLMRobertaForSequenceClassification")
    inputs = inputs_for("XLMRobertaForSequenceClassification")
    loss, logits = model(**inputs, labels=torch.tensor([0, 1]), return_dict=False)
    assert loss.dim() == 0 and logits.shape == (BATCH, 2)


def test_outputs_allow_key_and_attribute_access():
    out = _run("XLMRobertaForMaskedLM")
    assert out["logits"] is out.logits
    assert out.loss is None


def test_a_tokenizer_style_mapping_unpacks_into_the_call():
    """`model(**tokenizer(text, return_tensors="pt"))`: a BatchEncoding is a Mapping."""
    from collections import UserDict

    class BatchEncodingLike(UserDict):
        pass

    ids = torch.tensor([[0, 17, 42, 2, 1]])
    encoding = BatchEncodingLike(input_ids=ids, attention_mask=(ids != 1).long())
    model = build("XLMRobertaForMaskedLM")
    with torch.no_grad():
        assert model(**encoding).logits.shape == (1, 5, VOCAB)


def test_reference_batch_encoding_unpacks_into_the_call():
    transformers = pytest.importorskip("transformers")
    ids = [[0, 17, 42, 2], [0, 5, 2, 1]]
    encoding = transformers.BatchEncoding(
        {"input_ids": ids, "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 0]]}, tensor_type="pt"
    )
    model = build("XLMRobertaForSequenceClassification")
    with torch.no_grad():
        assert model(**encoding).logits.shape == (2, 2)
