"""Each head's loss against the same loss computed by hand from its logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from .conftest import HIDDEN, VOCAB, build, token_ids


def _sequence_classifier(num_labels, problem_type=None):
    return build("XLMRobertaForSequenceClassification", num_labels=num_labels, problem_type=problem_type)


def test_one_label_means_regression():
    model = _sequence_classifier(1)
    labels = torch.tensor([0.5, -1.5])
    with torch.no_grad():
        out = model(input_ids=token_ids(), labels=labels)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), labels))


def test_integer_labels_mean_single_label_classification():
    model = _sequence_classifier(3)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        out = model(input_ids=token_ids(), labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_float_labels_mean_multi_label_classification():
    model = _sequence_classifier(3)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        out = model(input_ids=token_ids(), labels=labels)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, labels))


def test_explicit_problem_type_wins_over_the_label_dtype():
    model = _sequence_classifier(3, problem_type="regression")
    labels = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    with torch.no_grad():
        out = model(input_ids=token_ids(), labels=labels)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits, labels))
    model = _sequence_classifier(3, problem_type="multi_label_classification")
    integer_labels = torch.tensor([[1, 0, 1], [0, 1, 1]])
    with torch.no_grad():
        out = model(input_ids=token_ids(), labels=integer_labels)
    torch.testing.assert_close(
        out.loss, F.binary_cross_entropy_with_logits(out.logits, integer_labels.float())
    )


def test_the_problem_type_is_not_written_back_into_the_config():
    model = _sequence_classifier(3)
    model(input_ids=token_ids(), labels=torch.tensor([1, 2]))
    assert model.config.problem_type is None


def test_sequence_classification_reads_the_first_token():
    model = _sequence_classifier(2)
    hidden = torch.randn(2, 5, HIDDEN)
    classifier = model.classifier
    expected = classifier.out_proj(torch.tanh(classifier.dense(hidden[:, 0])))
    torch.testing.assert_close(classifier(hidden), expected)


def test_token_classification_skips_minus_100():
    model = build("XLMRobertaForTokenClassification", num_labels=4)
    labels = torch.tensor([[0, 3, -100, 1, 2, -100, 0], [-100, 1, 1, 2, 3, 0, -100]])
    with torch.no_grad():
        out = model(input_ids=token_ids(), labels=labels)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_masked_lm_skips_minus_100():
    model = build("XLMRobertaForMaskedLM")
    ids = token_ids()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[1, 0] = 11, 42, 7
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_causal_lm_predicts_the_next_token():
    model = build("XLMRobertaForCausalLM")
    ids = token_ids()
    labels = ids.clone()
    labels[0, 3] = -100
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    logits, targets = out.logits[:, :-1], labels[:, 1:]
    keep = targets != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(logits[keep], targets[keep]))


def test_question_answering_loss_is_the_mean_of_start_and_end():
    model = build("XLMRobertaForQuestionAnswering")
    start, end = torch.tensor([1, 4]), torch.tensor([2, 6])
    with torch.no_grad():
        out = model(input_ids=token_ids(), start_positions=start, end_positions=end)
    expected = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    torch.testing.assert_close(out.loss, expected)


def test_question_answering_ignores_positions_outside_the_sequence():
    model = build("XLMRobertaForQuestionAnswering")
    length = 7
    start, end = torch.tensor([1, 50]), torch.tensor([[2], [length]])  # [batch, 1] is accepted too
    with torch.no_grad():
        out = model(input_ids=token_ids(2, length), start_positions=start, end_positions=end)
    # Only the first example has both ends inside; the second is clamped to `length` and ignored.
    expected = (
        F.cross_entropy(out.start_logits[:1], start[:1]) + F.cross_entropy(out.end_logits[:1], end[:1, 0])
    ) / 2
    torch.testing.assert_close(out.loss, expected)


def test_question_answering_clamps_negative_positions_to_zero():
    model = build("XLMRobertaForQuestionAnswering")
    with torch.no_grad():
        out = model(
            input_ids=token_ids(), start_positions=torch.tensor([-3, 2]), end_positions=torch.tensor([1, 1])
        )
    start = torch.tensor([0, 2])
    expected = (
        F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, torch.tensor([1, 1]))
    ) / 2
    torch.testing.assert_close(out.loss, expected)


def test_multiple_choice_scores_each_choice_independently():
    model = build("XLMRobertaForMultipleChoice")
    ids = token_ids(2 * 3, 6).view(2, 3, 6)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
        one_by_one = torch.stack(
            [
                torch.cat(
                    [
                        model.classifier(model.roberta(input_ids=ids[b, c][None]).pooler_output)
                        for c in range(3)
                    ]
                )
                for b in range(2)
            ]
        ).squeeze(-1)
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.logits, one_by_one, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_multiple_choice_flattens_masks_and_token_types_with_the_ids():
    model = build("XLMRobertaForMultipleChoice")
    ids = token_ids(2 * 3, 6).view(2, 3, 6)
    mask = torch.ones_like(ids)
    mask[1, 2, 4:] = 0
    types = torch.zeros_like(ids)
    types[0, 1, 3:] = 1
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        alone = model.classifier(
            model.roberta(input_ids=ids[1, 2][None], attention_mask=mask[1, 2][None]).pooler_output
        )
        typed = model.classifier(
            model.roberta(input_ids=ids[0, 1][None], token_type_ids=types[0, 1][None]).pooler_output
        )
    torch.testing.assert_close(out[1, 2], alone[0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1], typed[0, 0], atol=1e-5, rtol=0)


def test_multiple_choice_accepts_inputs_embeds():
    model = build("XLMRobertaForMultipleChoice")
    ids = token_ids(2 * 3, 6).view(2, 3, 6)
    embeds = model.roberta.embeddings.word_embeddings(ids).detach()
    with torch.no_grad():
        torch.testing.assert_close(model(inputs_embeds=embeds).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_are_computed_in_float32_for_half_models(dtype):
    model = build("XLMRobertaForMaskedLM").to(dtype)
    ids = token_ids()
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == dtype and out.loss.dtype == torch.float32
    torch.testing.assert_close(
        out.loss, F.cross_entropy(out.logits.float().reshape(-1, VOCAB), ids.reshape(-1))
    )
