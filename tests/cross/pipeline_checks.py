"""Helpers for the pipeline tests: loaded models per framework, and comparing answers."""

from __future__ import annotations

import importlib

import numpy as np

from xlmr_core import XLMRobertaTokenizerFast

PREFIX = {"torch": "", "tf": "TF", "flax": "Flax"}
# The tasks whose TF and Flax answers tests/cross/test_pipelines.py holds to torch's by default (one
# answer per text; per token with several rows per input); the parity tests cover the others there.
CROSS_TASKS = ("text-classification", "question-answering")


class Models:
    """`get(framework, head, directory)` -> a loaded model, each loaded once; `tokenizer(directory)`."""

    def __init__(self):
        self._models, self._tokenizers = {}, {}

    def get(self, framework, head, directory):
        key = (framework, head, str(directory))
        if key not in self._models:
            package = importlib.import_module(f"xlmr_{framework}")
            cls = getattr(package, f"{PREFIX[framework]}XLMRoberta{head}")
            self._models[key] = cls.from_pretrained(directory)
        return self._models[key]

    def tokenizer(self, directory):
        if str(directory) not in self._tokenizers:
            self._tokenizers[str(directory)] = XLMRobertaTokenizerFast.from_pretrained(directory)
        return self._tokenizers[str(directory)]

    def pipeline(self, framework, task, directory, **options):
        from xlmr_core.pipelines import TASKS

        module = importlib.import_module(f"xlmr_{framework}.pipeline")
        model = self.get(framework, TASKS[task].head, directory)
        return module.pipeline(task, model, self.tokenizer(directory), **options)


def assert_same(ours, reference, tolerance: float, path: str = "answer", relative: bool = False) -> None:
    """Equal structure, strings and integers; floats (and arrays) within `tolerance` (`relative`:
    within `tolerance * max(1, |reference|)`, for raw vectors whose entries reach 10 or more)."""
    if isinstance(reference, dict):
        assert isinstance(ours, dict) and ours.keys() == reference.keys(), (path, ours, reference)
        for key in reference:
            assert_same(ours[key], reference[key], tolerance, f"{path}[{key!r}]", relative)
    elif isinstance(reference, (list, tuple)) and not _numeric_nest(reference):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(reference), (path, ours, reference)
        for i, (a, b) in enumerate(zip(ours, reference)):
            assert_same(a, b, tolerance, f"{path}[{i}]", relative)
    elif isinstance(reference, (str, bool)) or reference is None:
        assert ours == reference, (path, ours, reference)
    elif isinstance(reference, (int, np.integer)):
        assert isinstance(ours, (int, np.integer)) and int(ours) == int(reference), (path, ours, reference)
    else:
        a, b = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
        assert a.shape == b.shape, (path, a.shape, b.shape)
        bound = tolerance * (np.maximum(1.0, np.abs(b)) if relative else 1.0)
        assert (np.abs(a - b) <= bound).all(), (path, np.abs(a - b).max(initial=0.0))


def _numeric_nest(value) -> bool:
    """A flat list of numbers, compared as one array."""
    return bool(value) and all(isinstance(v, (float, np.floating)) for v in value)
