"""Pipelines, framework-neutral: from text to answers with the reference library's task names,
options and output structures, decoded once here (numpy only).

Each framework's `pipeline(task, model, tokenizer=None, **options)` (`xlmr_torch.pipeline`,
`xlmr_tf.pipeline`, `xlmr_flax.pipeline`) hands `build_pipeline` a `Backend`: how to load its
model class for a head, and its forward call. Everything else (tokenizing, batching, scores,
spans, aggregation, errors) is the same code for all three.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import short
from .base import DEFAULT_BATCH_SIZE, Forward, Pipeline
from .classification import TextClassificationPipeline, TextRankingPipeline
from .errors import PipelineError
from .features import FeatureExtractionPipeline, SentenceEmbeddingPipeline
from .fill_mask import FillMaskPipeline
from .question_answering import QuestionAnsweringPipeline
from .token_classification import TokenClassificationPipeline
from .zero_shot import ZeroShotClassificationPipeline

TASKS: dict[str, type[Pipeline]] = {
    cls.task: cls
    for cls in (
        FillMaskPipeline,
        TextClassificationPipeline,
        FeatureExtractionPipeline,
        SentenceEmbeddingPipeline,
        TextRankingPipeline,
        TokenClassificationPipeline,
        ZeroShotClassificationPipeline,
        QuestionAnsweringPipeline,
    )
}

# Where each head's own weights live in a checkpoint: missing there, the head would be random.
HEAD_WEIGHTS = {
    "ForMaskedLM": "lm_head.",
    "ForSequenceClassification": "classifier.",
    "ForTokenClassification": "classifier.",
    "ForQuestionAnswering": "qa_outputs.",
}
HEAD_NAMES = {
    "Model": "a base model (XLMRobertaModel)",
    "ForMaskedLM": "a masked-LM model (ForMaskedLM)",
    "ForSequenceClassification": "a sequence classifier (ForSequenceClassification)",
    "ForTokenClassification": "a token classifier (ForTokenClassification)",
    "ForQuestionAnswering": "a question-answering model (ForQuestionAnswering)",
}


@dataclass(frozen=True)
class Backend:
    """What a framework contributes: its class-name prefix ("", "TF", "Flax"), how it loads the
    model of a head from a directory (returning the model and its loading info), and its
    forward call on numpy batches (run unpadded, in inference mode)."""

    prefix: str
    load: Callable[[str, Path], tuple[object, dict]]
    forward: Callable[[object, str], Forward]


def head_of(model, prefix: str) -> str | None:
    """The head of a loaded model ("ForMaskedLM", "Model", ...), from its class or a base class."""
    stem = f"{prefix}XLMRoberta"
    for cls in type(model).__mro__:
        if cls.__name__.startswith(stem) and cls.__name__ != f"{stem}PreTrainedModel":
            return cls.__name__[len(stem) :]
    return None


def build_pipeline(task, model, tokenizer, backend: Backend, **options) -> Pipeline:
    """The pipeline of `task` over `model` (a checkpoint directory or a loaded model of `backend`)."""
    if not isinstance(task, str) or task not in TASKS:
        raise PipelineError(f"unknown task {short(task, 60)}; the tasks are: {', '.join(sorted(TASKS))}")
    cls = TASKS[task]
    if isinstance(model, (str, os.PathLike)):
        directory = Path(model)
        if not (directory / "config.json").is_file():
            raise PipelineError(
                f"model {short(str(directory), 120)} is not a checkpoint directory (no config.json)"
            )
        model, info = backend.load(cls.head, directory)
        prefix = HEAD_WEIGHTS.get(cls.head)
        missing = [key for key in info.get("missing_keys", []) if prefix and key.startswith(prefix)]
        if missing:
            raise PipelineError(
                f"{task} needs {HEAD_NAMES[cls.head]}, but {short(str(directory), 100)} has no {prefix}* "
                f"weights (missing {missing[0]})"
            )
        if tokenizer is None:
            from ..tokenization_fast import XLMRobertaTokenizerFast

            tokenizer = XLMRobertaTokenizerFast.from_pretrained(directory)
    else:
        head = head_of(model, backend.prefix)
        if head is None:
            raise PipelineError(
                f"model must be a checkpoint directory or an xlmr model, got {type(model).__name__}"
            )
        if head != cls.head:
            raise PipelineError(f"{task} needs {HEAD_NAMES[cls.head]}, got a {head} model")
        if tokenizer is None:
            raise PipelineError(
                "tokenizer is required when model is a loaded model (pass the directory instead)"
            )
    return cls(model, tokenizer, backend.forward(model, cls.head), model.config, **options)


__all__ = ["DEFAULT_BATCH_SIZE", "TASKS", "Backend", "Pipeline", "PipelineError", "build_pipeline"]
