"""`unpadded=True` in Flax: the padded path's numbers at real positions, zeros at padding, one
compilation per token budget under `jit`, gradients, the option checks and `encode`.

The expected values come from the padded path (`unpadded=False`) of the same model on the
same batch; losses and sentence-level outputs where the contract differs from the padded path
(pairs or targets at padded positions, left-padded `<s>`) come from a hand calculation on the
padded path's logits, or of a zero vector for a left-padded row's sentence-level output.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from tests.block_batches import BLOCK, block_batch
from tests.flax.conftest import HEADS, model_class, tiny_config
from xlmr_core.unpadding import UNPADDED_CONFLICTS, conflict_message, token_budget

POSITION_KINDS = ("absolute", "relative_key", "relative_key_query")
TOLERANCE, GRADIENT_TOLERANCE = 1e-5, 1e-4
HEAVY = pytest.mark.skipif(not os.environ.get("XLMR_HEAVY"), reason="bigger matrix: set XLMR_HEAVY=1")
LENGTH = 9


def padded_batch(config, seed=0, rows=4):
    """Rows: right-padded, left-padded, all real, a single real token (then more right-padded rows)."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(3, config.vocab_size, size=(rows, LENGTH))
    mask = np.zeros((rows, LENGTH), np.int32)
    spans = [(0, 6), (4, LENGTH), (0, LENGTH), (0, 1)] + [(0, 3 + i % 5) for i in range(rows - 4)]
    for row, (start, stop) in enumerate(spans):
        mask[row, start:stop] = 1
        input_ids[row, start] = config.bos_token_id
    input_ids[mask == 0] = config.pad_token_id
    return input_ids.astype(np.int32), mask


def nll(logits, targets, valid):
    """Mean cross-entropy over `valid` positions, in numpy float64 (the hand calculation)."""
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(valid, targets, 0)[..., None], -1)[..., 0]
    return -picked[valid].mean()


def make(head, kind="absolute", **overrides):
    if head == "ForQuestionAnswering":
        overrides.setdefault("num_labels", 2)
    if head == "ForCausalLM":
        overrides.setdefault("is_decoder", True)
    config = tiny_config(position_embedding_type=kind, hidden_dropout_prob=0.0, **overrides)
    config.attention_probs_dropout_prob = 0.0
    return model_class(head)(config, seed=1)


def labels_for(head, config, input_ids, mask, seed=1):
    """Labels for `head`; token labels are -100 at padded positions, as the padded path's reference."""
    rng = np.random.default_rng(seed)
    batch = input_ids.shape[0]
    if head in ("ForMaskedLM", "ForCausalLM", "ForTokenClassification"):
        size = config.vocab_size if head != "ForTokenClassification" else config.num_labels
        labels = rng.integers(0, size, input_ids.shape)
        return {"labels": np.where(mask.astype(bool), labels, -100).astype(np.int32)}
    if head == "ForQuestionAnswering":
        return {
            "start_positions": np.array([1, 5, 0, 0] + [1] * (batch - 4), np.int32),
            "end_positions": np.array([3, 8, 8, 0] + [2] * (batch - 4), np.int32),
        }
    if head == "ForMultipleChoice":
        return {"labels": np.array([0, 1], np.int32)[:batch]}
    if head == "Model":
        return {}
    return {"labels": rng.integers(0, config.num_labels, batch).astype(np.int32)}


def inputs_for(head, model, seed=0):
    input_ids, mask = padded_batch(model.config, seed)
    if head == "ForMultipleChoice":  # two choices per example
        return input_ids.reshape(2, 2, LENGTH), mask.reshape(2, 2, LENGTH)
    return input_ids, mask


def sentence_outputs(head, model, padded, first_is_real, labels):
    """The padded path's sentence-level outputs where position 0 is real; where it is padding
    (left padding) the head of a zero vector, by hand (the contract: position 0 reads zeros)."""
    params = jax.tree_util.tree_map(np.asarray, model.params)
    if head == "Model":
        zero = np.tanh(params["pooler"]["dense"]["bias"])
        return {"pooler_output": np.where(first_is_real[:, None], padded["pooler_output"], zero)}
    if head == "ForSequenceClassification":
        head_params = params["classifier"]
        hidden = np.tanh(head_params["dense"]["bias"])
        zero = hidden @ head_params["out_proj"]["kernel"] + head_params["out_proj"]["bias"]
        logits = np.where(first_is_real[:, None], padded["logits"], zero)
        return {"logits": logits, "loss": nll(logits, labels["labels"], np.ones(len(logits), bool))}
    pooled = np.tanh(params["roberta"]["pooler"]["dense"]["bias"])
    zero = (pooled @ params["classifier"]["kernel"] + params["classifier"]["bias"])[0]
    logits = np.where(first_is_real.reshape(padded["logits"].shape), padded["logits"], zero)
    return {"logits": logits, "loss": nll(logits, labels["labels"], np.ones(len(logits), bool))}


def expected_loss(head, padded, labels, mask, aligned):
    """The contract's loss from the padded path's outputs (see the module docstring)."""
    real = mask.astype(bool)
    if head in ("ForMaskedLM", "ForTokenClassification"):
        return nll(padded["logits"], labels["labels"], labels["labels"] != -100)
    if head == "ForCausalLM":  # pairs (t, t + 1) with both real
        valid = real[:, :-1] & real[:, 1:] & (labels["labels"][:, 1:] != -100)
        return nll(padded["logits"][:, :-1], labels["labels"][:, 1:], valid)
    if head == "ForQuestionAnswering":  # the softmax over real positions only
        losses = []
        for name, key in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
            scores = np.where(real, np.asarray(padded[name], np.float64), -np.inf)
            targets = labels[key]
            valid = real[np.arange(len(targets)), targets]
            losses.append(nll(scores, targets, valid))
        return sum(losses) / 2
    return float(aligned["loss"])  # sentence-level: see `sentence_outputs`


# ----------------------------------------------------------------------------- equality


# The default run: every head with absolute positions, the relative kinds on two heads (the
# bigger-batch test below runs every pair under XLMR_HEAVY=1).
EQUALITY_CASES = [
    (head, kind)
    for head in HEADS
    for kind in POSITION_KINDS
    if kind == "absolute" or head in ("Model", "ForMaskedLM")
]


@pytest.mark.parametrize(("head", "kind"), EQUALITY_CASES)
def test_real_positions_equal_the_padded_path(head, kind):
    model = make(head, kind)
    input_ids, mask = inputs_for(head, model)
    labels = labels_for(head, model.config, input_ids, mask)
    padded = model(input_ids, mask, **labels, output_hidden_states=True)
    unpadded = model(input_ids, mask, **labels, output_hidden_states=True, unpadded=True)
    mask2 = mask.reshape(-1, LENGTH)
    aligned = None
    if head in ("Model", "ForSequenceClassification", "ForMultipleChoice"):  # sentence-level outputs
        aligned = sentence_outputs(head, model, padded, mask2[:, 0].astype(bool), labels)
    real = mask2.astype(bool)

    token_fields = {
        "Model": ["last_hidden_state"],
        "ForQuestionAnswering": ["start_logits", "end_logits"],
        "ForMaskedLM": ["logits"],
        "ForCausalLM": ["logits"],
        "ForTokenClassification": ["logits"],
    }.get(head, [])
    for field in token_fields:
        got, want = np.asarray(unpadded[field]), np.asarray(padded[field])
        np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE, err_msg=field)
    for layer, (got, want) in enumerate(zip(unpadded["hidden_states"], padded["hidden_states"])):
        got, want = np.asarray(got).reshape(*real.shape, -1), np.asarray(want).reshape(*real.shape, -1)
        np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE, err_msg=f"hidden_states[{layer}]")
    sentence_fields = {"Model": ["pooler_output"], "ForSequenceClassification": ["logits"]}
    for field in sentence_fields.get(head, ["logits"] if head == "ForMultipleChoice" else []):
        np.testing.assert_allclose(unpadded[field], aligned[field], atol=TOLERANCE, err_msg=field)
    if labels:
        want = expected_loss(head, padded, labels, mask2, aligned)
        np.testing.assert_allclose(float(unpadded["loss"]), want, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("head", ["Model", "ForMaskedLM", "ForTokenClassification", "ForQuestionAnswering"])
def test_padded_positions_come_back_as_zeros(head):
    model = make(head)
    input_ids, mask = inputs_for(head, model)
    out = model(input_ids, mask, unpadded=True, output_hidden_states=True)
    padding = ~mask.astype(bool)
    fields = ["start_logits", "end_logits"] if head == "ForQuestionAnswering" else ["logits"]
    fields = ["last_hidden_state"] if head == "Model" else fields
    for value in [out[f] for f in fields] + list(out["hidden_states"]):
        value = np.asarray(value)
        assert value[padding].size and not value[padding].any()
        assert np.abs(value[~padding]).max() > 0


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_without_padding_it_is_the_padded_path(kind):
    model = make("ForMaskedLM", kind)
    input_ids, _ = padded_batch(model.config)
    input_ids = np.where(input_ids == model.config.pad_token_id, 5, input_ids)
    full = np.ones_like(input_ids)
    want = np.asarray(model(input_ids, full).logits)
    np.testing.assert_array_equal(model(input_ids, full, unpadded=True).logits, want)
    np.testing.assert_array_equal(model(input_ids, unpadded=True).logits, want)


def test_inputs_embeds_and_token_types_are_gathered_like_the_ids():
    model = make("Model", type_vocab_size=2)
    input_ids, mask = padded_batch(model.config)
    embeds = np.asarray(model.params["embeddings"]["word_embeddings"]["embedding"])[input_ids]
    types = (np.arange(LENGTH)[None] >= 3).astype(np.int32).repeat(4, 0)
    want = model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types).last_hidden_state
    got = model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types, unpadded=True)
    real = mask.astype(bool)
    np.testing.assert_allclose(
        np.asarray(got.last_hidden_state)[real], np.asarray(want)[real], atol=TOLERANCE
    )


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_labelled_positions_only_combines_with_unpadded(kind):
    model = make("ForMaskedLM", kind)
    input_ids, mask = padded_batch(model.config)
    labels = np.full(input_ids.shape, -100, np.int32)
    labels[0, 2], labels[1, 5], labels[1, 8], labels[3, 0] = 7, 8, 9, 10
    want = model(input_ids, mask, labels=labels, labelled_positions_only=True)
    got = model(input_ids, mask, labels=labels, labelled_positions_only=True, unpadded=True)
    np.testing.assert_array_equal(got.masked_positions, want.masked_positions)
    np.testing.assert_allclose(got.logits, want.logits, atol=TOLERANCE)
    np.testing.assert_allclose(got.loss, want.loss, atol=TOLERANCE)


# ----------------------------------------------------------------------------- under jit


def test_jitted_path_compiles_once_per_budget_and_matches_eager():
    model = make("ForTokenClassification", "relative_key")
    traces = []

    def forward(params, ids, mask, budget):
        traces.append(budget)
        return model(ids, mask, params=params, unpadded=True, token_budget=budget).logits

    step = jax.jit(forward, static_argnums=3)
    padded = jax.jit(lambda params, ids, mask: model(ids, mask, params=params).logits)
    first_ids, first_mask = padded_batch(model.config, seed=0, rows=12)
    other_ids, other_mask = padded_batch(model.config, seed=1, rows=12)
    other_mask[4:, 2:] = 0  # fewer real tokens, the same bucket
    for ids, mask in ((first_ids, first_mask), (other_ids, other_mask)):
        budget = token_budget(int(mask.sum()), mask.size)
        assert budget == 64  # both fall in the smallest bucket: one compilation
        got = np.asarray(step(model.params, ids, mask, budget))
        real = mask.astype(bool)
        want = np.asarray(padded(model.params, ids, mask))
        np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE)
        assert not got[~real].any()
    assert traces == [64]


def test_traced_mask_without_budget_is_correct():
    model = make("Model")
    input_ids, mask = padded_batch(model.config)
    got = jax.jit(lambda ids, m: model(ids, m, unpadded=True).last_hidden_state)(input_ids, mask)
    want = model(input_ids, mask).last_hidden_state
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], atol=TOLERANCE)
    assert not np.asarray(got)[~real].any()


def test_a_budget_too_small_under_jit_gives_nan():
    model = make("ForMaskedLM")
    input_ids, mask = padded_batch(model.config)
    labels = np.where(mask.astype(bool), 5, -100).astype(np.int32)
    loss = jax.jit(lambda ids, m: model(ids, m, labels=labels, unpadded=True, token_budget=8).loss)(
        input_ids, mask
    )
    assert np.isnan(loss)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    ("head", "kind"),
    [("ForMaskedLM", "relative_key_query")]
    + [pytest.param("ForMaskedLM", kind, marks=HEAVY) for kind in POSITION_KINDS[:2]]
    + [pytest.param("ForSequenceClassification", kind, marks=HEAVY) for kind in POSITION_KINDS],
)
def test_gradients_equal_the_padded_path(head, kind):
    model = make(head, kind)
    input_ids, mask = padded_batch(model.config)
    input_ids, mask = input_ids[[0, 2, 3]], mask[[0, 2, 3]]  # right padding: the same loss both ways
    labels = labels_for(head, model.config, input_ids, mask)["labels"][: len(input_ids)]

    def loss(params, unpadded):
        return model(input_ids, mask, labels=labels, params=params, unpadded=unpadded).loss

    gradient = jax.jit(jax.grad(loss), static_argnums=1)  # mask is a constant: the bucketed budget
    want, got = gradient(model.params, False), gradient(model.params, True)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, atol=GRADIENT_TOLERANCE, err_msg=jax.tree_util.keystr(path))


@HEAVY
def test_the_train_step_takes_unpadded_call_options():
    from xlmr_flax.training import create_optimizer, create_train_state, make_train_step

    model = make("ForTokenClassification")
    input_ids, mask = padded_batch(model.config)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    batch.update(labels_for("ForTokenClassification", model.config, input_ids, mask))
    states = {}
    for unpadded in (False, True):
        options = {"unpadded": True, "token_budget": 64} if unpadded else {}
        state = create_train_state(model, create_optimizer(1e-3), seed=0)
        state, metrics = make_train_step(model, **options)(state, batch)
        states[unpadded] = (state.params, float(metrics["loss"]))
    assert states[True][1] == pytest.approx(states[False][1], abs=TOLERANCE)
    for a, b in zip(jax.tree_util.tree_leaves(states[True][0]), jax.tree_util.tree_leaves(states[False][0])):
        np.testing.assert_allclose(a, b, atol=GRADIENT_TOLERANCE)


# ----------------------------------------------------------------------------- the option checks


@pytest.mark.parametrize("option", UNPADDED_CONFLICTS)
def test_options_that_need_the_padded_layout_are_refused(option):
    model = make("Model", is_decoder=True, add_cross_attention=option == "encoder_hidden_states")
    input_ids, mask = padded_batch(model.config)
    values = {
        "past_key_values": model(input_ids, mask, use_cache=True).past_key_values,
        "use_cache": True,
        "encoder_hidden_states": np.zeros((4, 3, 32), np.float32),
        "output_attentions": True,
        "head_mask": np.ones(4, np.float32),
    }
    with pytest.raises(ValueError, match=conflict_message(option).replace("[", r"\[").replace("]", r"\]")):
        model(input_ids, mask, unpadded=True, **{option: values[option]})


def test_padding_between_real_tokens_is_refused():
    model = make("Model")
    input_ids, mask = padded_batch(model.config)
    mask[2, 4] = 0
    with pytest.raises(ValueError, match="row 2 has padding between real tokens"):
        model(input_ids, mask, unpadded=True)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (10, "token_budget=10 is smaller than the batch's 21 real tokens"),
        (0, "token_budget must be a positive integer or None, got 0"),
        (2.5, "token_budget must be a positive integer or None, got 2.5"),
        (True, "token_budget must be a positive integer or None, got True"),
    ],
)
def test_a_bad_token_budget_is_refused(budget, message):
    model = make("Model")
    input_ids, mask = padded_batch(model.config)
    with pytest.raises(ValueError, match=message):
        model(input_ids, mask, unpadded=True, token_budget=budget)


def test_token_budget_needs_unpadded():
    model = make("Model")
    input_ids, mask = padded_batch(model.config)
    with pytest.raises(
        ValueError, match="token_budget is the packed length of unpadded=True; pass unpadded=True with it"
    ):
        model(input_ids, mask, token_budget=64)


# ----------------------------------------------------------------------------- encode


def test_encode_runs_unpadded_by_default_and_gives_the_same_embeddings():
    from xlmr_core import XLMRobertaTokenizerFast
    from xlmr_core.pretrained import bundled_checkpoint
    from xlmr_flax import FlaxXLMRobertaModel

    tokenizer = XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())
    model = FlaxXLMRobertaModel.from_pretrained(bundled_checkpoint())
    texts = [
        "Hello, how are you?",
        "ok",
        "Je suis un robot et j'aime parler avec les gens.",
        "",
        "Das Essen.",
    ]
    step, budgets = model._encode_step(), []
    model._jitted_encode_step = lambda *args: budgets.append(args[3]) or step(*args)
    for pooling in ("max", "cls"):  # max sees the zeros at padding if pooling did not mask them
        budgets.clear()
        got = model.encode(texts, tokenizer, pooling=pooling, batch_size=4)
        assert budgets and all(b is not None for b in budgets)  # every batch here has padding
        budgets.clear()
        want = model.encode(texts, tokenizer, pooling=pooling, batch_size=4, unpadded=False)
        assert budgets and all(b is None for b in budgets)
        np.testing.assert_allclose(got, want, atol=TOLERANCE)


@HEAVY
@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_bigger_batches_equal_the_padded_path(head, kind):
    model = make(head, kind)
    input_ids, mask = padded_batch(model.config, seed=3, rows=12)
    if head == "ForMultipleChoice":
        input_ids, mask = input_ids.reshape(6, 2, LENGTH), mask.reshape(6, 2, LENGTH)
    padded = model(input_ids, mask)
    unpadded = model(input_ids, mask, unpadded=True)
    real = mask.reshape(-1, LENGTH).astype(bool)
    field = {"Model": "last_hidden_state", "ForQuestionAnswering": "start_logits"}.get(head, "logits")
    got, want = np.asarray(unpadded[field]), np.asarray(padded[field])
    if got.shape[: real.ndim] == real.shape:
        np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE)
    else:  # sentence-level: right-padded rows only read position 0, the same token
        rows = real[:, 0].reshape(got.shape[0], -1).all(1)
        np.testing.assert_allclose(got[rows], want[rows], atol=TOLERANCE)


# ----------------------------------------------------------------------------- block-sparse attention


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_block_pairs_equal_the_padded_path(small_blocks, kind, decoder):
    model = make("ForCausalLM" if decoder else "Model", kind)
    input_ids, mask = block_batch(model.config)
    real = mask.astype(bool)
    field = "logits" if decoder else "last_hidden_state"
    want = np.asarray(model(input_ids, mask, output_hidden_states=True)[field])
    eager = model(input_ids, mask, unpadded=True, output_hidden_states=True)
    # Under jit the mask is traced: the block and pair budgets are the worst case of the budget.
    jitted = jax.jit(lambda ids, m: model(ids, m, unpadded=True, token_budget=64)[field])(input_ids, mask)
    for got in (np.asarray(eager[field]), np.asarray(jitted)):
        scale = max(1.0, float(np.abs(want[real]).max()))
        np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE * scale)
        assert not got[~real].any()


def test_the_layout_has_the_pairs_of_each_sequence_only(small_blocks):
    """Σ ceil(L / block)² pairs (Σ n (n + 1) / 2 causal), counted by hand from `BLOCK_ROWS`."""
    from xlmr_flax.packing import Packing

    _, mask = block_batch(make("Model").config)
    for causal, pairs in ((False, 9 + 1 + 1 + 4 + 4), (True, 6 + 1 + 1 + 3 + 3)):
        layout = Packing.from_mask(jax.numpy.asarray(mask), causal=causal).layout
        assert layout.block == BLOCK
        real = np.asarray(layout.combine) < layout.pairs
        assert int(real.sum()) == pairs  # each real pair is combined into exactly one query block
        assert layout.pairs >= pairs and len(layout.combine) >= 3 + 1 + 1 + 2 + 2


def test_block_pair_gradients_equal_the_padded_path(small_blocks):
    """Under `jit` with a traced mask (worst-case budgets: filler blocks and pairs), finite and equal."""
    model = make("ForMaskedLM", "relative_key_query")
    input_ids, mask = block_batch(model.config)
    keep = [0, 1, 2, 3, 5]  # right padding (and an empty row): the same loss both ways
    input_ids, mask = input_ids[keep], mask[keep]
    labels = labels_for("ForMaskedLM", model.config, input_ids, mask)["labels"]

    def loss(params, ids, m, unpadded):
        options = {"unpadded": True, "token_budget": 32} if unpadded else {}
        return model(ids, m, labels=labels, params=params, **options).loss

    gradient = jax.jit(jax.grad(loss), static_argnums=3)
    want, got = gradient(model.params, input_ids, mask, False), gradient(model.params, input_ids, mask, True)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, atol=GRADIENT_TOLERANCE, err_msg=jax.tree_util.keystr(path))


def test_a_symbolic_batch_under_jax_export_runs_unpadded():
    """Symbolic shapes have no static block budgets: attention in the padded layout, still equal."""
    from jax import export

    model = make("Model", "relative_key")
    input_ids, mask = padded_batch(model.config)
    (batch,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, LENGTH), np.int32)
    forward = jax.jit(lambda p, i, m: model(i, m, params=p, unpadded=True, token_budget=32).last_hidden_state)
    got = np.asarray(export.export(forward)(model.params, spec, spec).call(model.params, input_ids, mask))
    want = np.asarray(model(input_ids, mask).last_hidden_state)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=TOLERANCE)
