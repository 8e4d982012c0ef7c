"""`unpadded=True` gives, in every framework, what another framework's padded path gives.

The expected values are PyTorch's padded outputs with padded positions set to zero (the
unpadded contract, `xlmr_core.unpadding`): an independent path from the packed one under
test. Rows cover no padding, right padding, left padding and a single real token.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.cross.harness import (
    FRAMEWORKS,
    GRADIENT_TOLERANCE,
    HEADS,
    OUTPUT_TOLERANCE,
    POSITION_KINDS,
    example_inputs,
    load_adapter,
    max_abs_diff,
)
from xlmr_core.unpadding import TOKEN_LOGIT_HEADS, zero_padded_positions

HEAVY = bool(os.environ.get("XLMR_HEAVY"))
# The default run: every head with absolute positions, relative_key_query on the bare model
# (each framework's own tests cover every kind); XLMR_HEAVY=1 runs every head with every kind.
CASES = [
    (head, kind)
    for head in HEADS
    for kind in POSITION_KINDS
    if HEAVY or kind == "absolute" or (head, kind) == ("Model", "relative_key_query")
]
LENGTHS = (7, 4, 5, 1)  # per row: full, right-padded, left-padded, one token


def ragged_inputs(head: str, config) -> dict:
    """`example_inputs` for `head` with the rows of `LENGTHS`.

    Row 2 is padded on the left for the token-level heads. Sentence-level heads read position
    0, which left padding makes a pad token in the padded path and a zero in the unpadded one,
    so they get right padding only.
    """
    inputs = example_inputs(head, config, batch=len(LENGTHS), length=max(LENGTHS))
    mask = np.zeros(inputs["attention_mask"].shape, np.int64)
    left = head in TOKEN_LOGIT_HEADS or head == "ForQuestionAnswering"
    for row, length in enumerate(LENGTHS):
        if row == 2 and left:
            mask[row, ..., -length:] = 1
        else:
            mask[row, ..., :length] = 1
    inputs["attention_mask"] = mask
    inputs["input_ids"] = np.where(mask == 1, np.maximum(inputs["input_ids"], 3), config.pad_token_id)
    inputs["input_ids"][2, ..., -LENGTHS[2] if left else 0] = 0  # <s> where row 2's text starts
    if "labels" in inputs and inputs["labels"].shape == mask.shape:
        inputs["labels"] = np.where(mask == 1, inputs["labels"], -100)
        if head == "ForCausalLM":
            # The padded path predicts row 2's first token from the pad before it; the unpadded
            # path has no such prediction. Unlabelled, the two losses are the same sum.
            inputs["labels"][2, -LENGTHS[2]] = -100
    if head == "ForQuestionAnswering":  # answers at real positions; 100 lies beyond: ignored
        inputs["start_positions"] = np.array([1, 100, 2, 0])
        inputs["end_positions"] = np.array([3, 2, 4, 0])
    return inputs


def masked_span_loss(outputs: dict, inputs: dict) -> float:
    """The question-answering loss with padded positions left out of each softmax.

    (The padded path keeps them in, as the reference does; unpadded=True never computes logits
    there.) Positions beyond the sequence are ignored, as in the padded path.
    """
    keep = inputs["attention_mask"].astype(bool)
    length = keep.shape[1]
    losses = []
    for field, positions in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
        logits = np.where(keep, outputs[field], -np.inf)
        log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        log_probs -= logits.max(1, keepdims=True)
        targets = np.clip(inputs[positions], 0, length)
        # An answer beyond the sequence or on padding is ignored.
        rows = np.flatnonzero(
            (targets < length) & keep[np.arange(len(targets)), np.minimum(targets, length - 1)]
        )
        losses.append(-log_probs[rows, targets[rows]].mean())
    return float(np.mean(losses))


@pytest.fixture(scope="module")
def padded_torch(checkpoint):
    """`padded_torch(head, kind)` -> (directory, config, inputs, torch's padded outputs, zeroed)."""
    made = {}

    def make(head, kind):
        if (head, kind) not in made:
            directory, config = checkpoint(head, position_embedding_type=kind)
            inputs = ragged_inputs(head, config)
            torch_adapter = load_adapter("torch")
            model = torch_adapter.load(directory, head)
            outputs = torch_adapter.forward(model, inputs)
            expected = zero_padded_positions(head, outputs, inputs["attention_mask"])
            if head == "ForQuestionAnswering":
                expected["loss"] = np.float64(masked_span_loss(outputs, inputs))
            made[head, kind] = (directory, config, inputs, expected)
        return made[head, kind]

    return make


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(("head", "kind"), CASES)
def test_unpadded_outputs_equal_the_padded_path_of_torch(framework, head, kind, padded_torch):
    directory, _, inputs, expected = padded_torch(head, kind)
    adapter = load_adapter(framework)
    model = adapter.load(directory, head)
    outputs = adapter.forward(model, inputs, unpadded=True)
    diffs = max_abs_diff(outputs, expected)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= OUTPUT_TOLERANCE, (
        f"{framework} {head} {kind}: {worst} differs by {diffs[worst]:.3g}"
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("head", ["ForMaskedLM", "ForSequenceClassification"])
def test_unpadded_gradients_equal_the_padded_path_of_torch(framework, head, checkpoint):
    directory, config = checkpoint(head)
    inputs = ragged_inputs(head, config)
    torch_adapter = load_adapter("torch")
    expected_loss, expected = torch_adapter.loss_and_grads(torch_adapter.load(directory, head), inputs)
    adapter = load_adapter(framework)
    loss, grads = adapter.loss_and_grads(adapter.load(directory, head), inputs, unpadded=True)
    assert abs(loss - expected_loss) <= OUTPUT_TOLERANCE
    assert grads.keys() == expected.keys()
    worst = max(grads, key=lambda name: float(np.abs(grads[name] - expected[name]).max()))
    difference = float(np.abs(grads[worst] - expected[worst]).max())
    assert difference <= GRADIENT_TOLERANCE, (
        f"{framework} {head}: gradient of {worst} differs by {difference:.3g}"
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(("head", "kind"), [("Model", "relative_key_query"), ("ForCausalLM", "relative_key")])
def test_unpadded_in_small_attention_blocks_equals_torch(framework, head, kind, padded_torch, monkeypatch):
    """Blocks of 3 rows (`xlmr_core.unpadding.ATTENTION_BLOCK`, where a framework's packed
    attention works in blocks): rows of 7, 4, 5 and 1 tokens span 3, 2, 2 and 1 blocks."""
    from xlmr_core import unpadding

    directory, _, inputs, expected = padded_torch(head, kind)
    monkeypatch.setattr(unpadding, "ATTENTION_BLOCK", 3)
    adapter = load_adapter(framework)
    outputs = adapter.forward(adapter.load(directory, head), inputs, unpadded=True)
    diffs = max_abs_diff(outputs, expected)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= OUTPUT_TOLERANCE, (
        f"{framework} {head} {kind}: {worst} differs by {diffs[worst]:.3g}"
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_answer_on_padding_is_ignored_by_the_unpadded_loss(framework, padded_torch):
    directory, config, inputs, _ = padded_torch("ForQuestionAnswering", "absolute")
    inputs = dict(inputs)
    # Row 1 is real at 0-3, row 2 (left-padded) at 2-6: starts at 5 and 0 and an end at 1 lie on
    # padding; the other answers are real.
    inputs["start_positions"] = np.array([1, 5, 0, 0])
    inputs["end_positions"] = np.array([6, 2, 1, 0])
    torch_adapter = load_adapter("torch")
    padded = torch_adapter.forward(torch_adapter.load(directory, "ForQuestionAnswering"), inputs)
    expected = masked_span_loss(padded, inputs)
    adapter = load_adapter(framework)
    model = adapter.load(directory, "ForQuestionAnswering")
    loss = float(adapter.forward(model, inputs, unpadded=True)["loss"])
    assert abs(loss - expected) <= OUTPUT_TOLERANCE * max(1.0, abs(expected)), (loss, expected)
