"""Answers for many records at a time, for `xlmr-predict` (JSON lines) and each framework's
`RayPredictor` (Ray Data batches): one value per record in, one answer per record out.

A record's value is what the task reads as one input (a string; a `{"text", "text_pair"}` or
`{"question", "context"}` dict), and for `text-ranking` a `{"query", "passages"}` dict. An
answer is the pipeline's, made plain: numbers are Python floats and ints, and arrays (embeddings)
are float32 numpy arrays for a column, lists for JSON. A NaN or infinite score is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import clip, short
from .base import Pipeline
from .errors import PipelineError


class RecordError(PipelineError):
    """One record of a batch cannot be answered: `index` is its place in the batch, `reason` why."""

    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index = index
        self.reason = str(self)


def _ranking(pipe: Pipeline, value):
    if not isinstance(value, dict) or set(value) != {"query", "passages"}:
        raise PipelineError(
            f'text-ranking reads a {{"query", "passages"}} object per record, got {short(value, 60)}'
        )
    return pipe(value["query"], value["passages"])


def _answers(pipe: Pipeline, values: list) -> list:
    if pipe.task == "text-ranking":
        return [_ranking(pipe, value) for value in values]
    # An iterator, not a list: a list of one is answered as that input alone by some tasks (as the
    # reference's), and a batch must give one answer per value whatever its size.
    return list(pipe(iter(values)))


def predict(pipe: Pipeline, values: list) -> list:
    """The answer of every value, in order. A value the task cannot read raises `RecordError`
    naming its index (the batch is answered again one value at a time to find it)."""
    try:
        return _answers(pipe, values)
    except PipelineError:
        for index, value in enumerate(values):
            try:
                _answers(pipe, [value])
            except PipelineError as error:
                # Asked alone, the value is the call's `inputs[0]`; in a batch it is "the input".
                raise RecordError(index, str(error).replace("inputs[0]", "the input")) from None
        raise


def plain(answer, arrays: bool):
    """`answer` with numpy scalars as Python numbers and arrays as float32 arrays (`arrays=True`)
    or nested lists; a NaN or infinite number raises `PipelineError`."""
    if isinstance(answer, np.ndarray):
        if answer.dtype.kind == "f":
            answer = answer.astype(np.float32)
            if not np.isfinite(answer).all():
                raise PipelineError("the model gave a NaN or infinite value")
        return answer if arrays else answer.tolist()
    if isinstance(answer, dict):
        return {str(key): plain(value, arrays) for key, value in answer.items()}
    if isinstance(answer, (list, tuple)):
        return [plain(value, arrays) for value in answer]
    if isinstance(answer, (np.floating, float)):
        if not math.isfinite(answer):
            raise PipelineError("the model gave a NaN or infinite score")
        return float(answer)
    if isinstance(answer, (np.integer, np.bool_)):
        return answer.item()
    return answer


def column(answers: list) -> np.ndarray:
    """A batch column of `answers`: a float32 matrix when every answer is a vector of one size
    (embeddings), otherwise a one-dimensional object array, one answer per row."""
    if answers and all(isinstance(a, np.ndarray) and a.ndim == 1 for a in answers):
        if len({a.shape for a in answers}) == 1:
            return np.stack(answers).astype(np.float32)
    out = np.empty(len(answers), dtype=object)
    for i, answer in enumerate(answers):  # element by element: numpy would broadcast nested lists
        out[i] = answer
    return out


class BatchPredictor:
    """`ds.map_batches(RayPredictor, fn_constructor_args=(task, directory),
    fn_constructor_kwargs=dict(input_column="text", output_column="answer"), concurrency=N,
    batch_size=B)`: each worker builds the pipeline once and adds to every batch a column with each
    row's answer (float32 vectors for embeddings, JSON-serialisable values otherwise). Further
    keyword arguments are the pipeline's options.

    Each framework's `RayPredictor` is this class with its own `pipeline` as `make_pipeline`."""

    make_pipeline: Callable[..., Pipeline]  # (task, directory, **options) -> Pipeline

    def __init__(
        self, task: str, directory, *, input_column: str = "text", output_column: str = "answer", **options
    ):
        for name, value in (("input_column", input_column), ("output_column", output_column)):
            if not isinstance(value, str) or not value:
                raise PipelineError(f"{name} must be a non-empty string, got {short(value, 60)}")
        if input_column == output_column:
            raise PipelineError(f"output_column must differ from input_column ({input_column!r})")
        self.input_column = input_column
        self.output_column = output_column
        self.pipeline = self.make_pipeline(task, directory, **options)
        self.pipeline.resolve({})  # the options' values are checked now, not at the first batch

    def __call__(self, batch: dict) -> dict:
        if not isinstance(batch, dict):
            raise PipelineError(
                f"a batch must be a dict of columns (batch_format='numpy'), got {type(batch).__name__}"
            )
        if self.input_column not in batch:
            raise PipelineError(
                f"the batch has no column {self.input_column!r} (columns: "
                f"{clip(', '.join(map(str, batch)), 120)}); pass input_column="
            )
        if self.output_column in batch:
            raise PipelineError(
                f"the batch already has a column {self.output_column!r}; pass another output_column="
            )
        values = [_value(v) for v in np.asarray(batch[self.input_column], dtype=object).tolist()]
        try:
            answers = [plain(answer, arrays=True) for answer in predict(self.pipeline, values)]
        except RecordError as error:
            raise PipelineError(
                f"{self.input_column} {short(values[error.index], 60)}: {error.reason}"
            ) from None
        return {**batch, self.output_column: column(answers)}


def _value(value):
    # Arrow hands text back as str, but numpy string scalars and bytes can reach a batch too.
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise PipelineError(f"a text is not UTF-8: {short(value, 60)}") from None
    return value
