"""What a torch model call takes besides torch tensors: numpy arrays and lists, and the arguments
torch's older tools pass (the legacy ONNX exporter's tensors for defaulted flags, jit.trace with
positional inputs). Each is compared with the eager call on torch tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlmr_core.modeling_utils import array_argument_message

from .conftest import build, inputs_for, token_ids

HEADS = ("XLMRobertaForSequenceClassification", "XLMRobertaForMaskedLM")


def _padded(batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = token_ids(batch, length, seed=batch + length)
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[-1, length // 2 :] = 0
        ids[-1, length // 2 :] = 1
    return ids, mask


@pytest.mark.parametrize("head", HEADS)
def test_legacy_onnx_export_runs_in_onnxruntime_like_eager(head, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = build(head)
    ids, mask = _padded(2, 7)
    axes = {0: "batch", 1: "sequence"}
    path = tmp_path / "model.onnx"
    # Positional inputs: the legacy exporter fills every defaulted argument itself (as tensors).
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        dynamo=False,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in ((3, 11), (1, 4)):
        ids, mask = _padded(batch, length)
        (got,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            want = model(ids, mask).logits.numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_jit_trace_with_positional_inputs_matches_eager(head):
    model = build(head)
    traced = torch.jit.trace(model, _padded(2, 7))
    for batch, length in ((3, 11), (1, 4)):
        ids, mask = _padded(batch, length)
        with torch.no_grad():
            got, want = traced(ids, mask), model(ids, mask)
        torch.testing.assert_close(got[0], want.logits, rtol=0, atol=1e-5)  # the tuple form


@pytest.mark.parametrize(
    "convert",
    [np.asarray, lambda t: t.numpy().astype(np.int32), lambda t: t.tolist()],
    ids=["numpy-int64", "numpy-int32", "list"],
)
@pytest.mark.parametrize("head", ("XLMRobertaForSequenceClassification", "XLMRobertaForMultipleChoice"))
def test_numpy_arrays_and_lists_give_the_tensor_result(head, convert):
    model = build(head)
    inputs = inputs_for(head)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        want = model(**inputs, labels=labels)
        by_keyword = model(**{k: convert(v) for k, v in inputs.items()}, labels=convert(labels))
        positional = model(convert(inputs["input_ids"]), attention_mask=convert(inputs["attention_mask"]))
    torch.testing.assert_close(by_keyword.logits, want.logits, rtol=0, atol=0)
    torch.testing.assert_close(by_keyword.loss, want.loss, rtol=0, atol=0)
    torch.testing.assert_close(positional.logits, want.logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("value", "kind"), [([[5, 6, 7], [5, 6]], "list"), ("5 6 7", "str"), ({"ids": [5]}, "dict")]
)
def test_inputs_that_are_no_array_are_the_documented_type_error(value, kind):
    model = build("XLMRobertaModel")
    with pytest.raises(TypeError) as caught:
        model(input_ids=value)
    assert str(caught.value) == array_argument_message("input_ids", value)
    assert f"got {kind}" in str(caught.value) and len(str(caught.value)) <= 300
