"""The machinery every task shares: options, inputs, and batched forward passes.

A task (`FillMaskPipeline`, ...) says how one input becomes model rows (`preprocess`) and how
those rows' outputs become its answer (`postprocess`). This class does the rest, the same way
for every framework: it merges construction and call options, accepts a single input, a list or
any iterable (answered lazily, `batch_size` inputs at a time), sorts rows by length into batches
of `batch_size`, pads them on the right, runs the framework's forward call (which runs them
unpadded), and gives each input its own rows back, trimmed to their real length. So an answer
never depends on what else was in its batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import short
from .errors import PipelineError, check_bool, check_known_options, check_positive_int, check_text

DEFAULT_BATCH_SIZE = 32

# forward(input_ids [rows, length], attention_mask [rows, length]) -> {"logits": array, ...}, numpy.
Forward = Callable[[np.ndarray, np.ndarray], dict]


@dataclass
class Prepared:
    """One input made ready for the model: its rows of token ids (several for long QA contexts)
    and what postprocessing needs to read them back."""

    rows: list[list[int]]
    meta: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """A task over a loaded model: `pipeline(inputs, **options)` as the reference library's."""

    task: ClassVar[str] = ""
    # The model the task runs: a head name of `xlmr_core.architecture.HEADS`, or "Model" (base).
    head: ClassVar[str] = ""
    # Whether the model's outputs are per token (trimmed to each row's length) or per row.
    token_level: ClassVar[bool] = True
    # Option -> default; `batch_size` is every task's.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, model, tokenizer, forward: Forward, config, **options):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self._forward = forward
        self._options = self._checked(options)
        self.prepare()

    def prepare(self) -> None:
        """Checks of the model that depend on the task (an entailment label, ...): refuse early."""

    # ------------------------------------------------------------------ options

    def _checked(self, options: dict) -> dict:
        check_known_options(self.task, options, {*self.defaults, "batch_size"})
        return dict(options)

    def resolve(self, options: dict) -> dict:
        """Construction options overridden by call options over the defaults, each checked."""
        merged = {
            **self.defaults,
            "batch_size": DEFAULT_BATCH_SIZE,
            **self._options,
            **self._checked(options),
        }
        merged["batch_size"] = check_positive_int(merged["batch_size"], "batch_size")
        return self.check_options(merged)

    def check_options(self, options: dict) -> dict:
        """Validate (and normalise) the merged options of a call."""
        return options

    # ------------------------------------------------------------------ calling

    def __call__(self, inputs, **options):
        return self.answer(inputs, self.resolve(options), frozenset(options))

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (str, dict))

    def answer(self, inputs, options: dict, call: frozenset = frozenset()):
        """A single input's answer, a list's answers, or an iterator of an iterable's answers
        (`call`: the option names this call gave, which some answers' shapes depend on)."""
        if self.is_single(inputs):
            return self.single_result(self.run_chunk([inputs], options, None)[0], inputs, options, call)
        if isinstance(inputs, (list, tuple)):
            return self.list_result(self.run_chunk(list(inputs), options, 0), inputs, options, call)
        if isinstance(inputs, Iterable):
            return self._lazy(iter(inputs), options)
        raise PipelineError(
            f"inputs must be {self.input_kind()}, a list or an iterable of them, got "
            f"{type(inputs).__name__} ({short(inputs, 60)})"
        )

    def input_kind(self) -> str:
        return "a string"

    def single_result(self, answer, inputs, options, call):
        return answer

    def list_result(self, answers, inputs, options, call):
        return answers

    def _lazy(self, iterator: Iterator, options: dict) -> Iterator:
        start = 0
        while chunk := list(itertools.islice(iterator, options["batch_size"])):
            yield from self.run_chunk(chunk, options, start)
            start += len(chunk)

    def run_chunk(self, items: list, options: dict, start: int | None) -> list:
        """Answers for `items` in order; `start` numbers them in messages (None: a single input)."""
        where = ["inputs" if start is None else f"inputs[{start + i}]" for i in range(len(items))]
        prepared = [self.preprocess(item, options, name) for item, name in zip(items, where)]
        outputs = self.run_rows([p.rows for p in prepared], options["batch_size"])
        return [self.postprocess(p, out, options) for p, out in zip(prepared, outputs)]

    def run_rows(self, rows_per_item: list[list[list[int]]], batch_size: int) -> list[list[dict]]:
        """The model's outputs for every row, grouped as the rows were, each trimmed to its length.

        Rows are sorted longest first (stable) into batches of `batch_size`, so similar lengths
        share a batch; the forward call runs them unpadded, so a row's outputs are its own.
        """
        flat = [(i, j, row) for i, rows in enumerate(rows_per_item) for j, row in enumerate(rows)]
        results: list[list[dict | None]] = [[None] * len(rows) for rows in rows_per_item]
        order = sorted(range(len(flat)), key=lambda k: -len(flat[k][2]))
        pad = self.config.pad_token_id
        for begin in range(0, len(order), batch_size):
            batch = [flat[k] for k in order[begin : begin + batch_size]]
            length = max(len(row) for _, _, row in batch)
            input_ids = np.full((len(batch), length), pad, np.int64)
            attention_mask = np.zeros((len(batch), length), np.int64)
            for r, (_, _, row) in enumerate(batch):
                input_ids[r, : len(row)] = row
                attention_mask[r, : len(row)] = 1
            outputs = self._forward(input_ids, attention_mask)
            for r, (i, j, row) in enumerate(batch):
                results[i][j] = {
                    name: (np.asarray(value[r, : len(row)]) if self.token_level else np.asarray(value[r]))
                    for name, value in outputs.items()
                }
        return results

    # ------------------------------------------------------------------ per task

    def preprocess(self, item, options: dict, where: str) -> Prepared:
        raise NotImplementedError

    def postprocess(self, prepared: Prepared, outputs: list[dict], options: dict):
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for tasks

    def encode(self, text, where: str, options: dict, pair=None, pair_where: str = "", **kwargs):
        """The tokenizer's encoding of `text` (and `pair`): ids within the model's length, or an error."""
        check_text(text, where)
        if pair is not None:
            check_text(pair, pair_where)
        truncation = options.get("truncation", False)
        limit = self.max_length(options)
        encoding = self.tokenizer(
            text, pair, truncation=bool(truncation), max_length=limit if truncation else None, **kwargs
        )
        if len(encoding["input_ids"]) > self.config.max_sequence_length:
            raise PipelineError(
                f"{where} is {len(encoding['input_ids'])} tokens, more than the model's "
                f"{self.config.max_sequence_length}: pass truncation=True or shorten it"
            )
        return encoding

    def max_length(self, options: dict) -> int:
        """Truncation length: `max_length` when given, else the model's, never beyond the positions."""
        limit = self.config.max_sequence_length
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < limit:
            limit = model_max
        chosen = options.get("max_length")
        return limit if chosen is None else min(chosen, limit)


def check_tokenizer_options(options: dict) -> dict:
    """`truncation` (bool) and `max_length` (positive int or None), the tokenizer options tasks pass on."""
    if "truncation" in options:
        check_bool(options["truncation"], "truncation")
    if options.get("max_length") is not None:
        check_positive_int(options["max_length"], "max_length")
    return options
