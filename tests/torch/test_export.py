"""The models under torch's own tools: torch.export, jit.trace, torch.compile, pytrees, Accelerate.

Every exported or traced program is run at shapes other than its example's (a longer and a
shorter sequence, another batch, padding) and compared with the eager model. The default
run exports six heads (strict and non-strict, absolute and relative positions; the other
heads go through torch.export in tests/cross/test_export_cli.py); `XLMR_HEAVY=1` runs every
head x strict and non-strict x every position kind, jit.trace of every head and
torch.compile with inductor.
"""

from __future__ import annotations

import functools
import os
import warnings

import pytest
import torch
import torch.utils._pytree as pytree
from torch.export import Dim

import xlmr_torch
from xlmr_core import outputs as core_outputs
from xlmr_core.checkpoint import load_checkpoint

from .conftest import HEADS, POSITION_KINDS, build, inputs_for, tiny_config, token_ids

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
# (batch, sequence) the programs are run at; the example is (2, 7); 38 is the longest the
# tiny config's 40-row position table allows.
SHAPES = ((2, 7), (3, 38), (1, 5), (4, 12))
MAX_LENGTH = tiny_config().max_sequence_length


def _padded_inputs(head, batch, length):
    inputs = inputs_for(head, batch=batch, length=length)
    inputs["attention_mask"][-1, ..., length // 2 :] = 0  # the last row is padded
    return inputs


def _dynamic_shapes(head, model):
    batch, seq = Dim("batch"), Dim("seq", max=model.config.max_position_embeddings - 2)
    axes = (
        {0: batch, 1: Dim("choices"), 2: seq} if head == "XLMRobertaForMultipleChoice" else {0: batch, 1: seq}
    )
    return {"input_ids": axes, "attention_mask": axes}


def _assert_same_outputs(got, want, tolerance=1e-5):
    assert type(got) is type(want)
    assert list(got.keys()) == list(want.keys())
    got_leaves, want_leaves = pytree.tree_leaves(got), pytree.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves) > 0
    for g, w in zip(got_leaves, want_leaves):
        assert g.shape == w.shape
        assert (g - w).abs().max().item() <= tolerance * max(1.0, w.abs().max().item())


def _cases():
    if HEAVY:
        return [(h, k, s) for h in HEADS for k in POSITION_KINDS for s in (False, True)]
    # The default slice: both modes and both position families. The other heads go through
    # torch.export non-strict in tests/cross/test_export_cli.py (ONNX: masked LM and question
    # answering; torch_export: sequence classification).
    return [
        ("XLMRobertaModel", "absolute", False),
        ("XLMRobertaForCausalLM", "absolute", False),
        ("XLMRobertaForMultipleChoice", "absolute", False),
        ("XLMRobertaForTokenClassification", "relative_key_query", False),
        ("XLMRobertaForQuestionAnswering", "absolute", True),
        ("XLMRobertaForSequenceClassification", "relative_key", True),
    ]


# ----------------------------------------------------------------------------- torch.export


@functools.cache
def _exported(head, position_kind="absolute", strict=False):
    """`(model, program)`: `head` exported once with a dynamic batch and sequence, shared by the tests."""
    model = build(head, position_embedding_type=position_kind)
    example = inputs_for(head, batch=2, length=7)
    program = torch.export.export(
        model, (), example, dynamic_shapes=_dynamic_shapes(head, model), strict=strict
    )
    return model, program


@pytest.mark.parametrize("head, position_kind, strict", _cases())
def test_torch_export_gives_one_program_for_every_length(head, position_kind, strict):
    model, program = _exported(head, position_kind, strict)
    # The sequence axis stays symbolic, bounded by the position table (not fixed to 7).
    bounds = sorted((r.lower, r.upper) for r in program.range_constraints.values())
    assert (0, MAX_LENGTH) in bounds or (2, MAX_LENGTH) in bounds, bounds
    exported = program.module()
    for batch, length in SHAPES:
        inputs = _padded_inputs(head, batch, length)
        with torch.no_grad():
            _assert_same_outputs(exported(**inputs), model(**inputs))


def test_an_exported_program_refuses_a_length_past_the_position_table():
    head = "XLMRobertaForQuestionAnswering"
    _, program = _exported(head, "absolute", True)
    with pytest.raises((RuntimeError, AssertionError), match="seq|<= 38|input_ids"):
        program.module()(**inputs_for(head, length=MAX_LENGTH + 1))


def test_over_long_input_still_raises_the_clear_error_in_eager_mode():
    model = build("XLMRobertaForMaskedLM")
    with pytest.raises(ValueError, match=rf"sequence of {MAX_LENGTH + 1} positions .* at most {MAX_LENGTH}"):
        model(token_ids(1, MAX_LENGTH + 1))


def test_an_exported_program_saves_and_loads_with_its_output_class(tmp_path):
    head = "XLMRobertaForQuestionAnswering"
    model, program = _exported(head, "absolute", True)
    torch.export.save(program, tmp_path / "qa.pt2")
    loaded = torch.export.load(tmp_path / "qa.pt2").module()
    inputs = _padded_inputs(head, 3, 11)
    with torch.no_grad():
        _assert_same_outputs(loaded(**inputs), model(**inputs))


# ----------------------------------------------------------------------------- jit.trace, compile


@pytest.mark.parametrize(
    "head",
    HEADS if HEAVY else ("XLMRobertaModel", "XLMRobertaForCausalLM"),  # + multiple choice via the CLI
)
def test_jit_trace_works_with_default_arguments(head):
    model = build(head, position_embedding_type="relative_key")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example_kwarg_inputs=inputs_for(head))
    # Nothing of ours was baked in from the example (torch's own functional code warns regardless).
    ours = [str(w.message) for w in caught if "xlmr_torch" in w.filename]
    assert not ours, ours
    for batch, length in ((3, 11), (1, 4)):
        inputs = _padded_inputs(head, batch, length)
        with torch.no_grad():
            got, want = traced(**inputs), model(**inputs)
        assert isinstance(got, tuple)  # a traced model returns the tuple form
        got_leaves, want_leaves = pytree.tree_leaves(got), pytree.tree_leaves(want.to_tuple())
        assert len(got_leaves) == len(want_leaves)
        for g, w in zip(got_leaves, want_leaves):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_torch_compile_carries_the_output_class():
    head = "XLMRobertaForTokenClassification"
    model = build(head)
    # aot_eager runs dynamo and AOTAutograd (the graph capture) without inductor's C++ build;
    # XLMR_HEAVY=1 compiles with inductor.
    compiled = torch.compile(
        model, dynamic=True, fullgraph=True, backend="inductor" if HEAVY else "aot_eager"
    )
    for batch, length in ((2, 7), (3, 20)):
        inputs = _padded_inputs(head, batch, length)
        with torch.no_grad():
            _assert_same_outputs(compiled(**inputs), model(**inputs))


# ----------------------------------------------------------------------------- outputs as pytrees


def _sample_output():
    model = build("XLMRobertaForSequenceClassification")
    return model(
        **inputs_for("XLMRobertaForSequenceClassification"),
        labels=torch.tensor([0, 1]),
        output_hidden_states=True,
    )


def test_an_output_rebuilds_from_a_mapping_or_pairs_field_by_field():
    out = _sample_output()
    for rebuilt in (
        type(out)(dict(out)),
        type(out)((key, out[key]) for key in out),
        type(out)(list(out.items())),
    ):
        assert type(rebuilt) is type(out)
        assert list(rebuilt) == ["loss", "logits", "hidden_states"]
        assert (
            rebuilt.loss is out.loss
            and rebuilt.logits is out.logits
            and rebuilt.hidden_states is out.hidden_states
        )
    assert type(out)(out.loss).loss is out.loss  # a tensor alone is still the first field
    with pytest.raises(TypeError, match="no field 'bogus'"):
        type(out)({"bogus": out.loss})


def test_outputs_are_torch_pytree_nodes():
    out = _sample_output()
    leaves, spec = pytree.tree_flatten(out)
    assert len(leaves) == 2 + len(out.hidden_states)
    rebuilt = pytree.tree_unflatten([leaf * 2 for leaf in leaves], spec)
    assert type(rebuilt) is type(out) and list(rebuilt) == list(out)
    torch.testing.assert_close(rebuilt.logits, out.logits * 2)
    paths = [pytree.keystr(path) for path, _ in pytree.tree_flatten_with_path(out)[0]]
    assert paths[:2] == ["['loss']", "['logits']"]
    for cls in xlmr_torch.outputs.OUTPUT_CLASSES:
        assert cls in pytree.SUPPORTED_NODES
        assert issubclass(cls, core_outputs.ModelOutput)


def test_accelerate_fp32_output_conversion_keeps_every_field():
    """Accelerate's mixed precision rebuilds outputs as `type(out)(dict)`: the loss must stay the loss."""
    operations = pytest.importorskip("accelerate.utils.operations")
    head = "XLMRobertaForSequenceClassification"
    model = build(head).train()
    forward = operations.convert_outputs_to_fp32(model.forward)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = forward(**inputs_for(head), labels=torch.tensor([0, 1]))
    assert type(out).__name__ == "SequenceClassifierOutput" and list(out) == ["loss", "logits"]
    assert out.loss.dim() == 0 and out.logits.dtype == torch.float32
    out.loss.backward()
    assert model.classifier.out_proj.weight.grad is not None


# ----------------------------------------------------------------------------- id dtypes


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64"])
def test_ids_of_every_integer_dtype_give_the_int64_result(dtype):
    model = build("XLMRobertaForMaskedLM")
    ids = token_ids(2, 6)
    types = torch.zeros_like(ids)
    positions = torch.arange(2, 8)[None].expand(2, 6)
    cast = getattr(torch, dtype)
    with torch.no_grad():
        want = model(ids, token_type_ids=types, position_ids=positions).logits
        got = model(ids.to(cast), token_type_ids=types.to(cast), position_ids=positions.to(cast)).logits
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["input_ids", "token_type_ids", "position_ids"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "bool", "complex64"])
def test_ids_of_other_dtypes_are_a_type_error(name, dtype):
    model = build("XLMRobertaModel")
    ids = token_ids(2, 6)
    inputs = {
        "input_ids": ids,
        name: (ids if name == "input_ids" else torch.ones_like(ids)).to(getattr(torch, dtype)),
    }
    with pytest.raises(TypeError) as caught:
        model(**inputs)
    assert str(caught.value) == f"{name} must hold integers (any integer dtype), got dtype {dtype}"


def test_float_position_ids_are_a_type_error_with_relative_positions_too():
    model = build("XLMRobertaModel", position_embedding_type="relative_key")
    ids = token_ids(2, 6)
    with pytest.raises(TypeError, match="position_ids must hold integers .* got dtype float32"):
        model(ids, position_ids=torch.ones(2, 6))


def test_unsigned_ids_past_the_table_are_the_clear_value_error():
    model = build("XLMRobertaModel")
    with pytest.raises(ValueError, match="input_ids contains 18446744073709551615, outside the vocabulary"):
        model(torch.tensor([[0, 2**64 - 1]], dtype=torch.uint64))
    with pytest.raises(ValueError, match="input_ids contains 400, outside the vocabulary"):
        model(torch.tensor([[0, 400]], dtype=torch.uint16))


def test_integer_labels_of_any_dtype_give_the_same_loss():
    model = build("XLMRobertaForTokenClassification")
    inputs = inputs_for("XLMRobertaForTokenClassification")
    labels = torch.tensor([[0, 1, 1, 0, 1, 0, 1], [1, 1, 0, 0, 1, 0, 0]])
    with torch.no_grad():
        want = model(**inputs, labels=labels).loss
        assert torch.equal(model(**inputs, labels=labels.to(torch.uint8)).loss, want)
        with pytest.raises(TypeError, match="labels must hold integers"):
            model(**inputs, labels=labels.float())


# ----------------------------------------------------------------------------- quantized and half


def test_a_dynamically_quantized_model_saves_dequantized_and_loads_back(tmp_path):
    head = "XLMRobertaForMaskedLM"
    model = build(head)
    quantized = torch.ao.quantization.quantize_dynamic(build(head), {torch.nn.Linear}, dtype=torch.qint8)
    quantized.save_pretrained(tmp_path)
    saved = load_checkpoint(tmp_path)
    linear = quantized.roberta.encoder.layer[0].attention.self.query
    assert saved["roberta.encoder.layer.0.attention.self.query.weight"].dtype.name == "float32"
    assert torch.equal(
        torch.from_numpy(saved["roberta.encoder.layer.0.attention.self.query.weight"]),
        linear.weight().dequantize(),
    )
    reloaded, info = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    # The independent path: the float model with every Linear weight replaced by its dequantized value.
    with torch.no_grad():
        for name, module in quantized.named_modules():
            if isinstance(module, torch.ao.nn.quantized.dynamic.Linear) and name != "lm_head.decoder":
                target = model.get_submodule(name)
                target.weight.copy_(module.weight().dequantize())
                target.bias.copy_(module.bias())
        inputs = inputs_for(head)
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-6)
        # ... and it runs as a float32 model close to the quantized one.
        assert (reloaded(**inputs).logits - quantized(**inputs).logits).abs().max() < 0.5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cast", ["method", "to"])
def test_half_and_bfloat16_models_run_and_round_trip(dtype, cast, tmp_path):
    head = "XLMRobertaForSequenceClassification"
    model = build(head)
    inputs = _padded_inputs(head, 2, 7)
    with torch.no_grad():
        want = model(**inputs).logits
        low = (
            (model.half() if dtype == torch.float16 else model.bfloat16())
            if cast == "method"
            else model.to(dtype)
        )
        got = low(**inputs, labels=torch.tensor([0, 1]))
    assert got.logits.dtype == dtype and got.loss.dtype == torch.float32
    # bound of the README's bfloat16 row: 8 roundings per layer at the format's epsilon
    epsilon = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11
    assert (got.logits.float() - want).abs().max() <= 8 * epsilon * 3 * max(1.0, want.abs().max().item())
    low.save_pretrained(tmp_path)
    reloaded = xlmr_torch.XLMRobertaForSequenceClassification.from_pretrained(tmp_path, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, got.logits)
