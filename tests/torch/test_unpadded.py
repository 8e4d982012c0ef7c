"""`unpadded=True`: the real tokens only, with the padded path's numbers (`xlmr_core.unpadding`).

Every expected value comes from the padded path of the same model (or, for the question-answering
loss, a hand calculation from its logits): outputs at real positions to 1e-5, gradients to 1e-4.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xlmr_core.modeling_utils import IGNORE_INDEX
from xlmr_core.unpadding import UNPADDED_CONFLICTS

from .conftest import HEADS, HIDDEN, PAD, POSITION_KINDS, VOCAB, build, tiny_config, token_ids

OUTPUT_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4
LENGTH = 9

# Right padding, left padding, all real, one real token (right and left), a run in the middle.
MIXED_MASK = torch.tensor(
    [
        [1, 1, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0, 0, 1, 1, 1, 0, 0, 0, 0],
    ]
)
# Sentence-level heads read position 0, which a left-padded row does not hold: right padding only.
RIGHT_MASK = torch.tensor(
    [
        [1, 1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0],
    ]
)
SENTENCE_HEADS = ("XLMRobertaForSequenceClassification", "XLMRobertaForMultipleChoice")


def batch_for(head: str, pad_ids: bool = True) -> dict:
    """Inputs with padding for `head`: pad ids at padded positions unless `pad_ids=False`."""
    mask = RIGHT_MASK if head in SENTENCE_HEADS else MIXED_MASK
    ids = token_ids(mask.shape[0], LENGTH, seed=3)
    if pad_ids:
        ids = ids.masked_fill(mask == 0, PAD)
    if head == "XLMRobertaForMultipleChoice":
        return {"input_ids": ids.view(2, 2, LENGTH), "attention_mask": mask.view(2, 2, LENGTH)}
    return {"input_ids": ids, "attention_mask": mask}


def labels_for(head: str, inputs: dict) -> dict:
    """Labels for every position (padded ones too: unpadded=True must leave those out)."""
    mask = inputs["attention_mask"]
    generator = torch.Generator().manual_seed(5)
    if head in ("XLMRobertaForMaskedLM", "XLMRobertaForCausalLM"):
        return {"labels": torch.randint(0, VOCAB, mask.shape, generator=generator)}
    if head == "XLMRobertaForTokenClassification":
        return {"labels": torch.randint(0, 2, mask.shape, generator=generator)}
    if head == "XLMRobertaForQuestionAnswering":
        # per row: a real answer, and one row whose start lies in the padding (ignored)
        return {
            "start_positions": torch.tensor([1, 4, 0, 0, 8, 7]),
            "end_positions": torch.tensor([3, 6, 8, 0, 8, 4]),
        }
    if head == "XLMRobertaForSequenceClassification":
        return {"labels": torch.tensor([1, 0, 1, 0])}
    if head == "XLMRobertaForMultipleChoice":
        return {"labels": torch.tensor([1, 0])}
    return {}


def padded_labels(head: str, inputs: dict, labels: dict) -> dict:
    """What the padded path needs to compute the unpadded path's token-level loss: -100 at padding."""
    keep = inputs["attention_mask"].bool()
    if head in ("XLMRobertaForMaskedLM", "XLMRobertaForTokenClassification"):
        return {"labels": labels["labels"].masked_fill(~keep, IGNORE_INDEX)}
    if head == "XLMRobertaForCausalLM":  # target t + 1 predicted at t: both must be real
        usable = keep.clone()
        usable[:, 1:] &= keep[:, :-1]
        return {"labels": labels["labels"].masked_fill(~usable, IGNORE_INDEX)}
    return labels


def padded_loss(head: str, model, inputs: dict, labels: dict) -> torch.Tensor:
    """The unpadded path's loss, computed on the padded path: padding unlabelled (and, for question
    answering, by hand: each row's softmax over its real positions, an answer in the padding ignored)."""
    output = model(**inputs, **padded_labels(head, inputs, labels))
    if head != "XLMRobertaForQuestionAnswering":
        return output.loss
    keep = inputs["attention_mask"].bool()
    losses = []
    for logits, positions in (
        (output.start_logits, labels["start_positions"]),
        (output.end_logits, labels["end_positions"]),
    ):
        positions = positions.masked_fill(~keep.gather(1, positions[:, None])[:, 0], LENGTH)
        losses.append(F.cross_entropy(logits.masked_fill(~keep, -1e9), positions, ignore_index=LENGTH))
    return (losses[0] + losses[1]) / 2


def model_for(head: str, kind: str, **overrides):
    config = tiny_config(
        position_embedding_type=kind, is_decoder=head == "XLMRobertaForCausalLM", **overrides
    )
    return build(head, config)


def is_token_level(value: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether `value` has a row per position (`[batch, seq, ...]`, choices flattened into the batch)."""
    return tuple(value.shape[:2]) == tuple(mask.reshape(-1, mask.shape[-1]).shape)


def real(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A token-level tensor with its padded positions set to 0; anything else as it is."""
    if not is_token_level(value, mask):
        return value
    keep = mask.reshape(value.shape[:2]).bool()
    return value * keep.reshape(*keep.shape, *[1] * (value.dim() - 2))


def fields(output) -> dict:
    """Every tensor of an output, hidden states by layer."""
    flat = {}
    for name, value in output.items():
        if name == "hidden_states":
            flat.update({f"hidden_states.{i}": h for i, h in enumerate(value)})
        elif isinstance(value, torch.Tensor):
            flat[name] = value
    return flat


def assert_within(actual, expected, tolerance, what):
    difference = (actual.double() - expected.double()).abs().max().item()
    assert difference <= tolerance, f"{what}: max |diff| {difference:.3g} > {tolerance}"


@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_outputs_at_real_positions_equal_the_padded_path(head, kind):
    model = model_for(head, kind)
    inputs = batch_for(head)
    with torch.no_grad():
        padded = fields(model(**inputs, output_hidden_states=True))
        unpadded = fields(model(**inputs, output_hidden_states=True, unpadded=True))
    assert padded.keys() == unpadded.keys()
    mask = inputs["attention_mask"]
    for name in padded:
        expected = padded[name]
        if name == "pooler_output":  # reads position 0: compare the rows that hold a real token there
            expected, unpadded[name] = expected[mask[:, 0] == 1], unpadded[name][mask[:, 0] == 1]
        assert_within(real(unpadded[name], mask), real(expected, mask), OUTPUT_TOLERANCE, name)


@pytest.mark.parametrize("head", [h for h in HEADS if h not in SENTENCE_HEADS])
def test_padded_positions_come_back_as_zeros(head):
    model = model_for(head, "absolute")
    inputs = batch_for(head)
    with torch.no_grad():
        output = fields(model(**inputs, output_hidden_states=True, unpadded=True))
    padding = inputs["attention_mask"] == 0
    token_level = [name for name, value in output.items() if is_token_level(value, padding)]
    assert "hidden_states.0" in token_level and len(token_level) > 2
    for name in token_level:
        assert torch.count_nonzero(output[name][padding]) == 0, name


@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", [h for h in HEADS if h != "XLMRobertaModel"])
def test_losses_equal_the_padded_path_with_padding_unlabelled(head, kind):
    model = model_for(head, kind)
    inputs = batch_for(head)
    labels = labels_for(head, inputs)
    with torch.no_grad():
        unpadded = model(**inputs, **labels, unpadded=True).loss
        expected = padded_loss(head, model, inputs, labels)
    assert_within(unpadded, expected, OUTPUT_TOLERANCE, "loss")


@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", [h for h in HEADS if h != "XLMRobertaModel"])
def test_gradients_equal_the_padded_path(head, kind):
    inputs = batch_for(head)
    labels = labels_for(head, inputs)
    gradients = []
    for unpadded in (False, True):
        model = model_for(head, kind)
        model.train()  # dropout is 0 in the tiny config
        loss = (
            model(**inputs, **labels, unpadded=True).loss
            if unpadded
            else padded_loss(head, model, inputs, labels)
        )
        loss.backward()
        gradients.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name, expected in gradients[0].items():
        assert_within(gradients[1][name], expected, GRADIENT_TOLERANCE, name)


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_gradient_checkpointing_keeps_the_gradients(kind):
    head = "XLMRobertaForTokenClassification"
    inputs = batch_for(head)
    labels = labels_for(head, inputs)
    gradients = []
    for checkpointing, given in ((False, padded_labels(head, inputs, labels)), (True, labels)):
        model = model_for(head, kind)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**inputs, **given, unpadded=checkpointing).loss.backward()
        gradients.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for name, expected in gradients[0].items():
        assert_within(gradients[1][name], expected, GRADIENT_TOLERANCE, name)


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_masked_lm_labelled_positions_only_combines_with_unpadded(kind):
    model = model_for("XLMRobertaForMaskedLM", kind)
    inputs = batch_for("XLMRobertaForMaskedLM")
    labels = labels_for("XLMRobertaForMaskedLM", inputs)["labels"]
    labels[:, ::2] = IGNORE_INDEX  # some real positions unlabelled too
    with torch.no_grad():
        unpadded = model(**inputs, labels=labels, labelled_positions_only=True, unpadded=True)
        padded = model(**inputs, labels=labels.masked_fill(inputs["attention_mask"] == 0, IGNORE_INDEX))
    labelled = torch.flatten((labels != IGNORE_INDEX) & (inputs["attention_mask"] == 1)).nonzero()[:, 0]
    torch.testing.assert_close(unpadded.masked_positions, labelled)
    assert_within(unpadded.logits, padded.logits.reshape(-1, VOCAB)[labelled], OUTPUT_TOLERANCE, "logits")
    assert_within(unpadded.loss, padded.loss, OUTPUT_TOLERANCE, "loss")


def test_left_padded_row_pools_the_zeros_at_position_zero():
    model = model_for("XLMRobertaModel", "absolute")
    inputs = batch_for("XLMRobertaModel")
    with torch.no_grad():
        pooled = model(**inputs, unpadded=True).pooler_output
    expected = torch.tanh(model.pooler.dense.bias)  # the pooler of a zero vector
    left_padded = inputs["attention_mask"][:, 0] == 0
    assert_within(pooled[left_padded], expected.expand(int(left_padded.sum()), HIDDEN), 0.0, "pooler")


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_position_ids_come_from_the_padded_layout(kind):
    # Masked positions holding real ids (not <pad>) move the padded path's positions; packing keeps them.
    model = model_for("XLMRobertaModel", kind)
    inputs = batch_for("XLMRobertaModel", pad_ids=False)
    with torch.no_grad():
        padded = model(**inputs).last_hidden_state
        unpadded = model(**inputs, unpadded=True).last_hidden_state
    mask = inputs["attention_mask"]
    assert_within(real(unpadded, mask), real(padded, mask), 1e-5, "")


def test_inputs_embeds_are_packed_too():
    model = model_for("XLMRobertaModel", "absolute")
    inputs = batch_for("XLMRobertaModel")
    embeds = model.embeddings.word_embeddings(inputs["input_ids"])
    mask = inputs["attention_mask"]
    with torch.no_grad():
        padded = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        unpadded = model(inputs_embeds=embeds, attention_mask=mask, unpadded=True).last_hidden_state
    assert_within(real(unpadded, mask), real(padded, mask), 1e-5, "")


def test_a_row_without_real_tokens_comes_back_as_zeros():
    model = model_for("XLMRobertaModel", "relative_key")
    mask = MIXED_MASK.clone()
    mask[1] = 0
    ids = token_ids(mask.shape[0], LENGTH).masked_fill(mask == 0, PAD)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).last_hidden_state
        unpadded = model(input_ids=ids, attention_mask=mask, unpadded=True).last_hidden_state
    assert torch.count_nonzero(unpadded[1]) == 0
    assert_within(real(unpadded, mask), real(padded, mask), 1e-5, "")


@pytest.mark.parametrize("mask", [None, "ones"], ids=["no mask", "no padding"])
def test_without_padding_it_is_the_padded_path(mask):
    model = model_for("XLMRobertaForMaskedLM", "relative_key_query")
    ids = token_ids(3, LENGTH)
    extra = {} if mask is None else {"attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        padded = model(input_ids=ids, **extra).logits
        unpadded = model(input_ids=ids, **extra, unpadded=True).logits
    assert torch.equal(padded, unpadded)


@pytest.mark.parametrize("budget", [26, 40, 1000])
def test_a_token_budget_adds_filler_that_changes_nothing(budget):
    model = model_for("XLMRobertaForTokenClassification", "relative_key")
    inputs = batch_for("XLMRobertaForTokenClassification")  # 26 real tokens
    with torch.no_grad():
        exact = model(**inputs, unpadded=True).logits
        budgeted = model(**inputs, unpadded=True, token_budget=budget).logits
    assert_within(budgeted, exact, 1e-6, "logits")


def test_a_budget_below_the_real_tokens_is_refused():
    model = model_for("XLMRobertaModel", "absolute")
    with pytest.raises(ValueError, match="token_budget=25 is smaller than the batch's 26 real tokens"):
        model(**batch_for("XLMRobertaModel"), unpadded=True, token_budget=25)


@pytest.mark.parametrize("budget", [0, -4, 2.5, True, "64"])
def test_a_budget_that_is_not_a_positive_integer_is_refused(budget):
    model = model_for("XLMRobertaModel", "absolute")
    with pytest.raises(ValueError, match="token_budget must be a positive integer or None"):
        model(**batch_for("XLMRobertaModel"), unpadded=True, token_budget=budget)


def test_a_budget_without_unpadded_is_refused():
    model = model_for("XLMRobertaModel", "absolute")
    with pytest.raises(ValueError, match="token_budget is the packed length of unpadded=True"):
        model(**batch_for("XLMRobertaModel"), token_budget=64)


def test_unpadded_must_be_a_bool():
    model = model_for("XLMRobertaModel", "absolute")
    with pytest.raises(TypeError, match="unpadded must be True or False, got str"):
        model(**batch_for("XLMRobertaModel"), unpadded="yes")


def test_padding_between_real_tokens_is_refused():
    model = model_for("XLMRobertaModel", "absolute")
    mask = MIXED_MASK.clone()
    mask[2, 4] = 0
    with pytest.raises(ValueError, match="row 2 has padding between real tokens"):
        model(input_ids=token_ids(mask.shape[0], LENGTH), attention_mask=mask, unpadded=True)


def conflicting(option: str, model) -> dict:
    """Arguments that set `option` (to something the padded path accepts)."""
    config = model.config
    if option == "past_key_values":
        with torch.no_grad():
            past = model(input_ids=token_ids(6, 2), use_cache=True).past_key_values
        return {"past_key_values": past, "attention_mask": torch.ones(6, LENGTH + 2, dtype=torch.long)}
    return {
        "use_cache": {"use_cache": True},
        "encoder_hidden_states": {"encoder_hidden_states": torch.randn(6, 3, HIDDEN)},
        "output_attentions": {"output_attentions": True},
        "head_mask": {"head_mask": torch.ones(config.num_attention_heads)},
    }[option]


@pytest.mark.parametrize("option", UNPADDED_CONFLICTS)
def test_options_that_need_the_padded_layout_are_refused(option):
    model = model_for("XLMRobertaForCausalLM", "absolute", add_cross_attention=True)
    arguments = {"input_ids": batch_for("XLMRobertaModel")["input_ids"], **conflicting(option, model)}
    arguments.setdefault("attention_mask", MIXED_MASK)
    with torch.no_grad():
        model(**arguments)  # the padded path takes it
        with pytest.raises(ValueError, match=f"unpadded=True does not combine with {option}"):
            model(**arguments, unpadded=True)


def test_a_decoder_does_not_cache_when_unpadded():
    model = model_for("XLMRobertaForCausalLM", "absolute")  # config.use_cache is True
    with torch.no_grad():
        output = model(**batch_for("XLMRobertaForCausalLM"), unpadded=True)
    assert output.past_key_values is None


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_encode_is_unpadded_by_default_and_unchanged(pooling):
    from xlmr_core import XLMRobertaTokenizerFast
    from xlmr_core.pretrained import bundled_checkpoint
    from xlmr_torch import XLMRobertaModel

    texts = ["Hello, how are you?", "ok", "Je suis un robot et j'aime parler avec les gens.", ""]
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())
    model = XLMRobertaModel.from_pretrained(bundled_checkpoint())
    calls = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["unpadded"]), with_kwargs=True
    )
    unpadded = model.encode(texts, tokenizer, pooling=pooling, normalize=False)
    padded = model.encode(texts, tokenizer, pooling=pooling, normalize=False, unpadded=False)
    assert calls == [True, False]
    assert_within(torch.from_numpy(unpadded), torch.from_numpy(padded), OUTPUT_TOLERANCE, "embeddings")
