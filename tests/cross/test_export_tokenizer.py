"""A torch export artifact carries a tokenizer that says the model's length limit, and takes what
that tokenizer returns as it is (int64 `input_ids` and `attention_mask`: numpy for ONNX, torch
tensors for torch.export and TorchScript). The default run exports TorchScript (the quickest);
`XLMR_HEAVY=1` adds ONNX and torch.export."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conversion.cli import main
from xlmr_core import XLMRobertaTokenizerFast
from xlmr_core.pretrained import bundled_checkpoint
from xlmr_core.tokenization_base import VERY_LARGE_INTEGER

torch = pytest.importorskip("torch")
import xlmr_torch  # noqa: E402

HEAVY = os.environ.get("XLMR_HEAVY") == "1"
FORMATS = ("torchscript", "onnx", "torch_export") if HEAVY else ("torchscript",)
TEXTS = ["Hello, how are <mask>?", "あなたの名前は<mask>ですか？ " * 30]  # the second is truncated


def _run(fmt: str, path, batch: dict):
    """The artifact's logits for the tokenizer's batch, served by the tool the README names."""
    if fmt == "onnx":
        onnxruntime = pytest.importorskip("onnxruntime")
        session = onnxruntime.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {name: np.asarray(value) for name, value in batch.items()})
        return logits
    inputs = {name: torch.as_tensor(value) for name, value in batch.items()}
    if fmt == "torch_export":
        return torch.export.load(path / "model.pt2").module()(**inputs)["logits"].detach().numpy()
    return torch.jit.load(path / "model.pt")(**inputs)["logits"].detach().numpy()


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_exported_artifact_carries_the_limit_and_takes_the_tokenizers_output(fmt, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(bundled_checkpoint(), source)
    config_path = source / "tokenizer_config.json"
    config_path.write_text(
        json.dumps(json.loads(config_path.read_text()) | {"model_max_length": VERY_LARGE_INTEGER})
    )
    out = tmp_path / fmt
    assert main(["export", str(source), str(out), "--format", fmt, "-q"]) == 0
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(out)
    assert tokenizer.model_max_length == 64
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="np")
    assert batch["input_ids"].shape[1] == 64 and batch["input_ids"].dtype == np.int64
    model = xlmr_torch.XLMRobertaForMaskedLM.from_pretrained(source)
    with torch.no_grad():
        want = model(**{name: torch.as_tensor(value) for name, value in batch.items()}).logits.numpy()
    np.testing.assert_allclose(_run(fmt, out, dict(batch)), want, rtol=0, atol=1e-4)
