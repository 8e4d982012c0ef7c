"""`pipeline(task, model, tokenizer=None, **options)` on Flax models.

Everything but the forward call is `xlmr_core.pipelines`, shared with `xlmr_torch` and `xlmr_tf`.
The forward call is jitted; each batch is padded to a power-of-two number of rows and a multiple
of 16 tokens (stand-in rows and padding that the answers never read), so it compiles once per
shape bucket, and it runs unpadded within its token budget. The jitted step is kept per model and
head, so every pipeline over the same model reuses what earlier ones compiled.
"""

from __future__ import annotations

import math
import weakref

import jax
import numpy as np

from xlmr_core.pipelines import Backend, Pipeline, build_pipeline
from xlmr_core.unpadding import token_budget

from . import modeling

_FIELDS = {"Model": ("last_hidden_state",), "ForQuestionAnswering": ("start_logits", "end_logits")}


def _load(head: str, directory):
    cls = getattr(modeling, f"FlaxXLMRoberta{head}")
    return cls.from_pretrained(directory, output_loading_info=True)


# model -> {head: jitted step}; the steps hold the model weakly, so a dropped model is freed.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _step(model, head: str):
    """The jitted forward of `model` for `head`, made once and shared by its pipelines."""
    steps = _STEPS.setdefault(model, {})
    if head not in steps:
        fields, ref = _FIELDS.get(head, ("logits",)), weakref.ref(model)

        def run(params, ids, mask, budget):
            output = ref()(ids, mask, params=params, unpadded=budget is not None, token_budget=budget)
            return {name: output[name] for name in fields}

        steps[head] = jax.jit(run, static_argnums=3)
    return steps[head]


def _forward(model, head: str):
    fields = _FIELDS.get(head, ("logits",))
    step = _step(model, head)

    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict:
        rows, length = input_ids.shape
        bucket_rows = 1 << max(rows - 1, 0).bit_length()
        bucket_length = min(math.ceil(length / 16) * 16, model.config.max_sequence_length)
        bucket_length = max(bucket_length, length)
        ids = np.full((bucket_rows, bucket_length), model.config.pad_token_id, np.int32)
        mask = np.zeros((bucket_rows, bucket_length), np.int32)
        ids[:rows, :length], mask[:rows, :length] = input_ids, attention_mask
        ids[rows:], mask[rows:] = ids[0], mask[0]  # stand-in rows: a mask row of zeros is not a sequence
        real, capacity = int(mask.sum()), mask.size
        budget = token_budget(real, capacity) if real < capacity else None
        output = step(model.params, ids, mask, budget)
        # Per-token outputs lose the bucket's extra columns; a classifier's logits have none.
        keep = (slice(rows),) if head == "ForSequenceClassification" else (slice(rows), slice(length))
        return {name: np.asarray(output[name], dtype=np.float32)[keep] for name in fields}

    return forward


BACKEND = Backend(prefix="Flax", load=_load, forward=_forward)


def pipeline(task: str, model, tokenizer=None, **options) -> Pipeline:
    """A pipeline of `task` ("fill-mask", "text-classification", ...) over `model`, a checkpoint
    directory or a loaded model; `tokenizer` defaults to the directory's fast tokenizer. Options
    (as the reference library's pipelines, plus `batch_size`) apply at construction and per call."""
    return build_pipeline(task, model, tokenizer, BACKEND, **options)
