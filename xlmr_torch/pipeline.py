"""`pipeline(task, model, tokenizer=None, **options)` on PyTorch models.

Everything but the forward call is `xlmr_core.pipelines`, shared with `xlmr_tf` and `xlmr_flax`.
"""

from __future__ import annotations

import numpy as np
import torch

from xlmr_core.pipelines import Backend, Pipeline, build_pipeline

from . import modeling
from .checkpoint_io import to_numpy

_FIELDS = {"Model": ("last_hidden_state",), "ForQuestionAnswering": ("start_logits", "end_logits")}


def _load(head: str, directory):
    cls = getattr(modeling, f"XLMRoberta{head}")
    return cls.from_pretrained(directory, output_loading_info=True)


def _forward(model, head: str):
    fields = _FIELDS.get(head, ("logits",))
    model.eval()
    device = next(model.parameters()).device

    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict:
        with torch.inference_mode():
            output = model(
                input_ids=torch.from_numpy(input_ids).to(device),
                attention_mask=torch.from_numpy(attention_mask).to(device),
                return_dict=True,
                unpadded=True,
            )
        return {name: to_numpy(output[name].float()) for name in fields}

    return forward


BACKEND = Backend(prefix="", load=_load, forward=_forward)


def pipeline(task: str, model, tokenizer=None, **options) -> Pipeline:
    """A pipeline of `task` ("fill-mask", "text-classification", ...) over `model`, a checkpoint
    directory or a loaded model; `tokenizer` defaults to the directory's fast tokenizer. Options
    (as the reference library's pipelines, plus `batch_size`) apply at construction and per call."""
    return build_pipeline(task, model, tokenizer, BACKEND, **options)
