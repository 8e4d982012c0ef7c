"""`pipeline(task, model, tokenizer=None, **options)` on Keras models.

Everything but the forward call is `xlmr_core.pipelines`, shared with `xlmr_torch` and `xlmr_flax`.
"""

from __future__ import annotations

import numpy as np

from xlmr_core.pipelines import Backend, Pipeline, build_pipeline

from . import modeling

_FIELDS = {"Model": ("last_hidden_state",), "ForQuestionAnswering": ("start_logits", "end_logits")}


def _load(head: str, directory):
    cls = getattr(modeling, f"TFXLMRoberta{head}")
    return cls.from_pretrained(directory, output_loading_info=True)


def _forward(model, head: str):
    fields = _FIELDS.get(head, ("logits",))

    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict:
        output = model(
            {"input_ids": input_ids, "attention_mask": attention_mask}, training=False, unpadded=True
        )
        return {name: np.asarray(output[name], dtype=np.float32) for name in fields}

    return forward


BACKEND = Backend(prefix="TF", load=_load, forward=_forward)


def pipeline(task: str, model, tokenizer=None, **options) -> Pipeline:
    """A pipeline of `task` ("fill-mask", "text-classification", ...) over `model`, a checkpoint
    directory or a loaded model; `tokenizer` defaults to the directory's fast tokenizer. Options
    (as the reference library's pipelines, plus `batch_size`) apply at construction and per call."""
    return build_pipeline(task, model, tokenizer, BACKEND, **options)
