"""`unpadded=True` in the TF models: the padded path's numbers at real positions, zeros elsewhere.

Expected values come from the same model called padded (dropout off), with the labels of
padded positions set to -100 where a token-level loss leaves them out, or from numpy.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import xlmr_tf
from tests.block_batches import BLOCK, block_batch
from xlmr_core.modeling_utils import IGNORE_INDEX

from .conftest import HEADS, PAD, POSITION_KINDS, VOCAB, tiny_config

HEAVY = bool(os.environ.get("XLMR_HEAVY"))
# (position kind, padding side) of the default run; XLMR_HEAVY=1 runs every pair.
DEFAULT_CASES = {("absolute", "right"), ("absolute", "left"), ("relative_key_query", "left")}
LENGTH = 9
TOKEN_HEADS = ("TFXLMRobertaForCausalLM", "TFXLMRobertaForMaskedLM", "TFXLMRobertaForTokenClassification")
TOKEN_FIELDS = ("last_hidden_state", "logits", "start_logits", "end_logits")
SENTENCE_FIELDS = ("pooler_output",)  # and `logits` of the sentence-level heads


def _mask(layout: str) -> np.ndarray:
    """Four rows: padded (right or left), all real, one real token, padded at the other length."""
    rows = {
        "right": [[1] * 6 + [0] * 3, [1] * LENGTH, [1] + [0] * 8, [1] * 4 + [0] * 5],
        "left": [[0] * 3 + [1] * 6, [1] * LENGTH, [0] * 8 + [1], [0] * 5 + [1] * 4],
    }[layout]
    return np.array(rows, np.int32)


def _config(head: str, **overrides):
    if head == "TFXLMRobertaForCausalLM":
        overrides = {"is_decoder": True, **overrides}
    if head == "TFXLMRobertaForQuestionAnswering":
        overrides = {"num_labels": 2, **overrides}
    return tiny_config(**overrides)


def _model(head: str, **overrides):
    keras.utils.set_random_seed(0)
    return getattr(xlmr_tf, head)(_config(head, **overrides))


def _inputs(head: str, layout: str = "right") -> dict:
    mask = _mask(layout)
    ids = np.random.default_rng(1).integers(3, VOCAB, mask.shape).astype(np.int32)
    ids = np.where(mask == 1, ids, PAD).astype(np.int32)
    types = np.random.default_rng(4).integers(0, 2, mask.shape).astype(np.int32)
    if head == "TFXLMRobertaForMultipleChoice":  # [batch 2, choices 2, length]
        return {k: v.reshape(2, 2, LENGTH) for k, v in (("input_ids", ids), ("attention_mask", mask))}
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _labels(head: str, mask: np.ndarray) -> dict:
    """Targets for `head`; token labels are random everywhere (the unpadded loss must skip padding)."""
    rng = np.random.default_rng(2)
    if head in ("TFXLMRobertaForCausalLM", "TFXLMRobertaForMaskedLM"):
        return {"labels": rng.integers(0, VOCAB, mask.shape).astype(np.int32)}
    if head == "TFXLMRobertaForTokenClassification":
        return {"labels": rng.integers(0, 3, mask.shape).astype(np.int32)}
    if head == "TFXLMRobertaForQuestionAnswering":  # answers inside each row's real tokens
        first = mask.argmax(axis=1)
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
        return {
            "start_positions": np.array([rng.integers(a, b + 1) for a, b in zip(first, last)], np.int32),
            "end_positions": last.astype(np.int32),
        }
    if head == "TFXLMRobertaForMultipleChoice":
        return {"labels": np.array([1, 0], np.int32)}
    if head == "TFXLMRobertaForSequenceClassification":
        return {"labels": rng.integers(0, 3, mask.shape[0]).astype(np.int32)}
    return {}


def _padded_labels(head: str, labels: dict, mask: np.ndarray) -> dict:
    """The labels under which the padded path's loss leaves padding out, as unpadded does."""
    labels = dict(labels)
    if head in ("TFXLMRobertaForMaskedLM", "TFXLMRobertaForTokenClassification"):
        labels["labels"] = np.where(mask == 1, labels["labels"], IGNORE_INDEX).astype(np.int32)
    if head == "TFXLMRobertaForCausalLM":  # position t predicts t + 1 only when both are real
        both = np.concatenate([np.zeros_like(mask[:, :1]), mask[:, :-1] * mask[:, 1:]], axis=1)
        labels["labels"] = np.where(both == 1, labels["labels"], IGNORE_INDEX).astype(np.int32)
    return labels


def _qa_loss(output, labels, mask) -> float:
    """Mean start/end cross-entropy over each row's real positions only (numpy).

    A row whose answer position is padding is left out of that position's mean (ignored).
    """
    total = 0.0
    for key, name in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
        logits = np.where(mask == 1, np.asarray(output[key], np.float64), -np.inf)
        log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        log_probs -= logits.max(1, keepdims=True)
        rows = np.arange(len(mask))
        answered = mask[rows, labels[name]] == 1
        total += -log_probs[rows, labels[name]][answered].mean()
    return total / 2


def _real(mask, value):
    return np.asarray(value)[mask.astype(bool)]


def _compare(head, padded, unpadded, mask, sentence_rows):
    """Token-level fields at real positions and zero at padding; sentence-level fields on `sentence_rows`."""
    token_mask = mask.reshape(-1, LENGTH)
    for field, value in padded.items():
        if value is None or field in ("loss", "masked_positions", "past_key_values"):
            continue
        got = unpadded[field]
        if field == "hidden_states":
            pairs = zip(value, got)
        elif field in TOKEN_FIELDS and (field != "logits" or head in TOKEN_HEADS):
            pairs = [(value, got)]
        else:  # sentence level: as before, on rows whose first position is a real token
            np.testing.assert_allclose(
                np.asarray(got)[sentence_rows], np.asarray(value)[sentence_rows], atol=1e-5, err_msg=field
            )
            continue
        for want, have in pairs:
            have = np.asarray(have).reshape(*token_mask.shape, *np.shape(have)[np.ndim(token_mask) :])
            want = np.asarray(want).reshape(have.shape)
            np.testing.assert_allclose(
                _real(token_mask, have), _real(token_mask, want), atol=1e-5, err_msg=field
            )
            assert not np.any(have[token_mask == 0]), f"{field}: padded positions must be zeros"


# ----------------------------------------------------------------------------- outputs and losses


@pytest.mark.parametrize("layout", ["right", "left"])
@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_outputs_and_losses_equal_the_padded_path_at_real_positions(head, kind, layout):
    if not HEAVY and (kind, layout) not in DEFAULT_CASES:
        pytest.skip("the default run covers absolute and relative_key_query left padding; XLMR_HEAVY=1 all")
    model = _model(head, position_embedding_type=kind)
    inputs = _inputs(head, layout)
    mask = inputs["attention_mask"]
    labels = _labels(head, mask.reshape(-1, LENGTH) if head != "TFXLMRobertaForMultipleChoice" else mask)
    padded = model(**inputs, **_padded_labels(head, labels, mask), output_hidden_states=True)
    unpadded = model(**inputs, **labels, output_hidden_states=True, unpadded=True)
    sentence_rows = mask.reshape(-1, LENGTH)[:, 0] == 1
    if head == "TFXLMRobertaForMultipleChoice":
        sentence_rows = sentence_rows.reshape(2, 2).all(axis=1)
    _compare(head, padded, unpadded, mask, sentence_rows)
    if head == "TFXLMRobertaForQuestionAnswering":
        np.testing.assert_allclose(float(unpadded.loss), _qa_loss(padded, labels, mask), atol=1e-5)
    elif padded.get("loss") is not None and (sentence_rows.all() or head in TOKEN_HEADS):
        np.testing.assert_allclose(float(unpadded.loss), float(padded.loss), atol=1e-5)


@pytest.mark.parametrize("layout", ["right", "left"])
def test_question_answering_ignores_an_answer_on_padding(layout):
    head = "TFXLMRobertaForQuestionAnswering"
    model = _model(head)
    inputs = _inputs(head, layout)
    mask = inputs["attention_mask"]
    labels = _labels(head, mask)
    padding = np.argmin(mask, axis=1)  # a padded position of each padded row (0 in a full row)
    on_padding = mask[np.arange(len(mask)), padding] == 0
    labels["start_positions"] = np.where(on_padding, padding, labels["start_positions"]).astype(np.int32)
    labels["end_positions"][0] = padding[0]  # one end on padding, the other ends real
    padded = model(**inputs)
    unpadded = model(**inputs, **labels, unpadded=True)
    assert on_padding.sum() == 3 and np.isfinite(float(unpadded.loss))
    np.testing.assert_allclose(float(unpadded.loss), _qa_loss(padded, labels, mask), atol=1e-5)


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_labelled_positions_only_combines_with_unpadded(kind):
    head = "TFXLMRobertaForMaskedLM"
    model = _model(head, position_embedding_type=kind)
    inputs = _inputs(head)
    labels = _labels(head, inputs["attention_mask"])["labels"]
    labels = np.where(np.random.default_rng(5).random(labels.shape) < 0.5, labels, IGNORE_INDEX)
    padded_labels = _padded_labels(head, {"labels": labels}, inputs["attention_mask"])["labels"]
    padded = model(**inputs, labels=padded_labels, labelled_positions_only=True)
    unpadded = model(**inputs, labels=labels, labelled_positions_only=True, unpadded=True)
    np.testing.assert_array_equal(unpadded.masked_positions, padded.masked_positions)
    np.testing.assert_allclose(unpadded.logits, padded.logits, atol=1e-5)
    np.testing.assert_allclose(float(unpadded.loss), float(padded.loss), atol=1e-5)


@pytest.mark.parametrize("mask", ["none", "all real"])
def test_without_padding_unpadded_is_exactly_the_padded_path(mask):
    model = _model("TFXLMRobertaForMaskedLM")
    inputs = _inputs("TFXLMRobertaForMaskedLM")
    inputs["attention_mask"] = np.ones_like(inputs["input_ids"])
    if mask == "none":
        del inputs["attention_mask"]
    np.testing.assert_array_equal(model(**inputs, unpadded=True).logits, model(**inputs).logits)


# ----------------------------------------------------------------------------- gradients


def _padded_qa_loss(output, labels, mask):
    """The QA loss over real positions only, from the padded path's logits (in TF, for gradients)."""
    loss = 0.0
    for key, name in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
        logits = tf.where(tf.constant(mask, tf.bool), output[key], -1e30)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels[name], logits=logits)
        loss += tf.reduce_mean(losses)
    return loss / 2


def _gradients(model, inputs, loss_of=None, **options):
    with tf.GradientTape() as tape:
        output = model(**inputs, training=True, **options)
        loss = output.loss if loss_of is None else loss_of(output)
    grads = tape.gradient(loss, model.trainable_variables)
    return {
        v.path: tf.convert_to_tensor(g).numpy()
        for v, g in zip(model.trainable_variables, grads)
        if g is not None
    }


@pytest.mark.parametrize("kind", POSITION_KINDS)
@pytest.mark.parametrize(
    "head", [*TOKEN_HEADS, "TFXLMRobertaForQuestionAnswering", "TFXLMRobertaForSequenceClassification"]
)
def test_gradients_equal_the_padded_path(head, kind):
    if not HEAVY and kind != "absolute" and head != "TFXLMRobertaForMaskedLM":
        pytest.skip("the default run covers the relative kinds on the masked LM; XLMR_HEAVY=1 runs all")
    model = _model(head, position_embedding_type=kind)
    inputs = _inputs(head, "right")
    labels = _labels(head, inputs["attention_mask"])
    if head == "TFXLMRobertaForQuestionAnswering":  # padded logits at padding are no candidates either
        padded = _gradients(model, inputs, lambda out: _padded_qa_loss(out, labels, inputs["attention_mask"]))
    else:
        padded = _gradients(model, {**inputs, **_padded_labels(head, labels, inputs["attention_mask"])})
    unpadded = _gradients(model, {**inputs, **labels}, unpadded=True)
    assert unpadded.keys() == padded.keys()
    for name in padded:
        np.testing.assert_allclose(unpadded[name], padded[name], atol=1e-4, err_msg=name)


# ----------------------------------------------------------------------------- graphs and XLA


def test_a_tf_function_runs_with_dynamic_shapes_and_equals_eager():
    model = _model("TFXLMRobertaModel", position_embedding_type="relative_key_query")
    inputs = _inputs("TFXLMRobertaModel", "left")
    spec = {k: tf.TensorSpec([None, None], tf.int32) for k in inputs}
    function = tf.function(lambda x: model(x, unpadded=True).last_hidden_state, input_signature=[spec])
    np.testing.assert_allclose(function(inputs), model(**inputs, unpadded=True).last_hidden_state, atol=1e-6)


@pytest.mark.parametrize(
    ("head", "budget"), [("TFXLMRobertaForMaskedLM", 24), ("TFXLMRobertaForQuestionAnswering", None)]
)
def test_xla_with_and_without_a_token_budget_equals_eager(head, budget):
    model = _model(head, position_embedding_type="relative_key")
    inputs = _inputs(head)
    fields = ("logits",) if head == "TFXLMRobertaForMaskedLM" else ("start_logits", "end_logits")
    function = tf.function(
        lambda x: [model(x, unpadded=True, token_budget=budget)[f] for f in fields], jit_compile=True
    )
    eager = model(**inputs, unpadded=True)
    for got, field in zip(function(inputs), fields):
        np.testing.assert_allclose(got, eager[field], atol=1e-5, err_msg=field)


def test_xla_compiles_once_per_token_budget():
    model = _model("TFXLMRobertaModel")
    traces = []

    @tf.function(jit_compile=True)
    def forward(inputs):
        traces.append(1)
        return model(inputs, unpadded=True, token_budget=32).last_hidden_state

    first = _inputs("TFXLMRobertaModel")
    second = dict(first, attention_mask=np.roll(first["attention_mask"], 1, axis=0))
    for inputs in (first, second):
        np.testing.assert_allclose(
            forward(inputs), model(**inputs, unpadded=True).last_hidden_state, atol=1e-5
        )
    assert len(traces) == 1


def test_under_xla_a_budget_too_small_for_the_batch_gives_nan_not_dropped_tokens():
    model = _model("TFXLMRobertaModel")
    forward = tf.function(
        lambda x: model(x, unpadded=True, token_budget=8).last_hidden_state, jit_compile=True
    )
    assert np.isnan(forward(_inputs("TFXLMRobertaModel"))).all()  # 20 real tokens


def test_fit_trains_unpadded_when_the_model_says_so():
    head = "TFXLMRobertaForTokenClassification"
    inputs = _inputs(head)
    labels = _labels(head, inputs["attention_mask"])
    weights = []
    for unpadded in (False, True):
        model = _model(head, position_embedding_type="relative_key_query")
        model.unpadded = unpadded
        batch_labels = labels if unpadded else _padded_labels(head, labels, inputs["attention_mask"])
        data = tf.data.Dataset.from_tensor_slices({**inputs, **batch_labels}).batch(2)
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
        model.fit(data, epochs=1, shuffle=False, verbose=0)
        weights.append(model.canonical_state())
    for name in weights[0]:
        np.testing.assert_allclose(weights[1][name], weights[0][name], atol=1e-5, err_msg=name)


def test_fit_takes_the_pair_budget_the_model_says():
    """`model.pair_budget` reaches every step `fit` runs: one too small for a batch is refused."""
    head = "TFXLMRobertaForTokenClassification"
    inputs = _inputs(head)
    model = _model(head)
    model.unpadded, model.pair_budget = True, 1
    data = tf.data.Dataset.from_tensor_slices({**inputs, **_labels(head, inputs["attention_mask"])}).batch(2)
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    with pytest.raises(ValueError, match="pair_budget=1 is smaller than the batch's"):
        model.fit(data, epochs=1, shuffle=False, verbose=0)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "option",
    ["output_attentions", "head_mask", "use_cache", "past_key_values", "encoder_hidden_states"],
)
def test_options_that_need_the_padded_layout_are_refused(option):
    config = dict(is_decoder=True, add_cross_attention=option == "encoder_hidden_states")
    model = _model("TFXLMRobertaModel", **config)
    inputs = _inputs("TFXLMRobertaModel")
    if option == "past_key_values":
        past = model(**inputs, use_cache=True).past_key_values
        values = {"past_key_values": past, "attention_mask": np.ones((4, 2 * LENGTH), np.int32)}
    else:
        values = {
            "output_attentions": True,
            "head_mask": np.ones(4, np.float32),
            "use_cache": True,
            "encoder_hidden_states": np.zeros((4, 3, 32), np.float32),
        }
        values = {option: values[option]}
    with pytest.raises(ValueError, match=f"unpadded=True does not combine with {option}"):
        model(**{**inputs, **values}, unpadded=True)


def test_a_row_with_padding_between_real_tokens_is_refused():
    model = _model("TFXLMRobertaModel")
    inputs = _inputs("TFXLMRobertaModel")
    inputs["attention_mask"][0] = [1, 1, 0, 1, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="row 0 has padding between real tokens"):
        model(**inputs, unpadded=True)


@pytest.mark.parametrize(
    ("budget", "error", "match"),
    [
        (10, ValueError, "smaller than the batch's 20 real tokens"),
        (0, ValueError, "token_budget must be a positive integer or None, got 0"),
        (8.0, ValueError, "token_budget must be a positive integer or None, got 8.0"),
    ],
)
def test_a_bad_token_budget_is_refused(budget, error, match):
    model = _model("TFXLMRobertaModel")
    with pytest.raises(error, match=match):
        model(**_inputs("TFXLMRobertaModel"), unpadded=True, token_budget=budget)


@pytest.mark.parametrize("unpadded", [False, None])
def test_a_token_budget_without_unpadded_is_refused_not_ignored(unpadded):
    model = _model("TFXLMRobertaModel")
    options = {} if unpadded is None else {"unpadded": unpadded}
    with pytest.raises(
        ValueError, match="token_budget is the packed length of unpadded=True; pass unpadded=True"
    ):
        model(**_inputs("TFXLMRobertaModel"), token_budget=32, **options)


# ----------------------------------------------------------------------------- encode


def test_encode_is_unpadded_by_default_and_equals_the_padded_run(monkeypatch):
    from transformers import XLMRobertaTokenizerFast

    from xlmr_core.pretrained import bundled_checkpoint

    tokenizer = XLMRobertaTokenizerFast.from_pretrained(bundled_checkpoint())
    texts = ["a short one", "a somewhat longer sentence to pad the others", "x", "two words"]
    packed = []
    packing = xlmr_tf.TFXLMRobertaModel._packing
    monkeypatch.setattr(
        xlmr_tf.TFXLMRobertaModel, "_packing", lambda self, v: packed.append(packing(self, v)) or packed[-1]
    )
    for pooling in ("mean", "max"):
        # A fresh model each time: `encode` traces its graph once per model, and the packing is
        # chosen while tracing.
        keras.utils.set_random_seed(0)
        model = xlmr_tf.TFXLMRobertaModel(
            tiny_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=64)
        )
        packed.clear()
        default = model.encode(texts, tokenizer, pooling=pooling, batch_size=4)
        assert packed and all(p is not None for p in packed), "encode packs by default"
        padded = model.encode(texts, tokenizer, pooling=pooling, batch_size=4, unpadded=False)
        np.testing.assert_allclose(default, padded, atol=1e-5, err_msg=pooling)


# ----------------------------------------------------------------------------- block-sparse attention


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_block_pairs_equal_the_padded_path(small_blocks, kind, decoder):
    """Eager (exact budgets), XLA with a traced mask (worst-case budgets: filler blocks and
    pairs) and a graph with run-time shapes (run-time counts) all give the padded numbers."""
    head = "TFXLMRobertaForCausalLM" if decoder else "TFXLMRobertaModel"
    model = _model(head, position_embedding_type=kind)
    input_ids, mask = block_batch(model.config)
    real = mask.astype(bool)
    field = "logits" if decoder else "last_hidden_state"
    want = np.asarray(model(input_ids=input_ids, attention_mask=mask)[field])
    eager = model(input_ids=input_ids, attention_mask=mask, unpadded=True)[field]

    def forward(ids, m):
        return model(input_ids=ids, attention_mask=m, unpadded=True, token_budget=48)[field]

    spec = tf.TensorSpec([None, None], tf.int32)
    xla = tf.function(forward, jit_compile=True)(input_ids, mask)
    dynamic = tf.function(forward, input_signature=[spec, spec])(input_ids, mask)
    scale = max(1.0, float(np.abs(want[real]).max()))
    for name, got in (("eager", eager), ("xla", xla), ("dynamic", dynamic)):
        got = np.asarray(got)
        np.testing.assert_allclose(got[real], want[real], atol=1e-5 * scale, err_msg=name)
        assert not got[~real].any(), f"{name}: padded positions must be zeros"


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "decoder"])
def test_the_layout_has_the_pairs_of_each_sequence_only(small_blocks, causal):
    """Σ ceil(L / block)² pairs (Σ n (n + 1) / 2 causal), counted by hand from `BLOCK_ROWS`."""
    from xlmr_tf.packing import Packing

    _, mask = block_batch(_config("TFXLMRobertaModel"))
    pairs = 6 + 1 + 1 + 3 + 3 if causal else 9 + 1 + 1 + 4 + 4
    layout = Packing.from_mask(tf.constant(mask), budget=32).block_layout(causal)
    assert layout.block == BLOCK
    combine = np.asarray(layout.combine)
    real = combine < len(layout.query_block)
    assert int(real.sum()) == pairs  # each real pair is combined into exactly one query block
    assert sorted(combine[real].tolist()) == list(range(pairs))
    assert combine.shape[0] >= 3 + 1 + 1 + 2 + 2  # blocks: ceil(L / 4) per sequence


def test_block_pair_gradients_equal_the_padded_path(small_blocks):
    head = "TFXLMRobertaForMaskedLM"
    model = _model(head, position_embedding_type="relative_key_query")
    input_ids, mask = block_batch(model.config)
    keep = [0, 1, 2, 3]  # right padding: the same loss both ways
    inputs = {"input_ids": input_ids[keep], "attention_mask": mask[keep]}
    labels = _labels(head, inputs["attention_mask"])
    padded = _gradients(model, {**inputs, **_padded_labels(head, labels, inputs["attention_mask"])})
    unpadded = _gradients(model, {**inputs, **labels}, unpadded=True)
    assert unpadded.keys() == padded.keys()
    for name in padded:
        np.testing.assert_allclose(unpadded[name], padded[name], atol=1e-4, err_msg=name)


def test_xla_with_shapes_unknown_while_tracing_attends_in_the_padded_layout(small_blocks):
    """No static block budgets there: the packed rows attend in `[batch, seq]`, still equal."""
    model = _model("TFXLMRobertaModel", position_embedding_type="relative_key")
    input_ids, mask = block_batch(model.config)
    spec = tf.TensorSpec([None, None], tf.int32)
    forward = tf.function(
        lambda i, m: model(input_ids=i, attention_mask=m, unpadded=True, token_budget=48).last_hidden_state,
        input_signature=[spec, spec],
        jit_compile=True,
    )
    want = np.asarray(model(input_ids=input_ids, attention_mask=mask).last_hidden_state)
    got = np.asarray(forward(input_ids, mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-5 * max(1.0, float(np.abs(want).max())))
    assert not got[~real].any()
