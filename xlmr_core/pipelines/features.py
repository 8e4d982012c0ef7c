"""`feature-extraction` (each token's vector, as the reference) and `sentence-embedding` (one
pooled vector per text: the base model's `encode`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

from ..embeddings import encode_texts
from ..errors import short
from .base import Pipeline, Prepared, check_tokenizer_options
from .errors import PipelineError, check_bool, check_text


class FeatureExtractionPipeline(Pipeline):
    """The last hidden state of every token: `[1, tokens, hidden]` nested lists per text
    (`return_tensors=True`: a float32 numpy array)."""

    task = "feature-extraction"
    head = "Model"
    defaults = {"truncation": False, "max_length": None, "tokenize_kwargs": None, "return_tensors": False}

    def check_options(self, options):
        kwargs = options["tokenize_kwargs"] or {}
        if not isinstance(kwargs, dict) or set(kwargs) - {"truncation", "max_length"}:
            raise PipelineError(f"tokenize_kwargs takes truncation and max_length, got {short(kwargs, 80)}")
        options.update(kwargs)
        check_bool(options["return_tensors"], "return_tensors")
        return check_tokenizer_options(options)

    def preprocess(self, item, options, where):
        return Prepared([self.encode(item, where, options)["input_ids"]])

    def postprocess(self, prepared, outputs, options):
        hidden = np.asarray(outputs[0]["last_hidden_state"], dtype=np.float32)[None]
        return hidden if options["return_tensors"] else hidden.tolist()


class SentenceEmbeddingPipeline(Pipeline):
    """One vector per text, pooled and normalised as `encode` does (the directory's
    sentence-transformers settings when it has them): `[hidden]` for a string, `[n, hidden]` for a
    list, and vectors one by one for any other iterable."""

    task = "sentence-embedding"
    head = "Model"
    defaults = {"pooling": None, "normalize": None, "max_length": None, "show_progress_bar": None}

    def answer(self, inputs, options, call=frozenset()):
        if isinstance(inputs, str):
            return self._encode(inputs, options)
        if isinstance(inputs, (list, tuple)):
            for i, text in enumerate(inputs):
                check_text(text, f"inputs[{i}]")
            return self._encode(list(inputs), options)
        if isinstance(inputs, Iterable):
            return self._lazy(iter(inputs), options)
        raise PipelineError(
            f"inputs must be a string, a list or an iterable of strings, got {type(inputs).__name__}"
        )

    def _lazy(self, iterator, options):
        start = 0
        while chunk := list(itertools.islice(iterator, options["batch_size"])):
            for i, text in enumerate(chunk):
                check_text(text, f"inputs[{start + i}]")
            yield from self._encode(chunk, options)
            start += len(chunk)

    def _encode(self, texts, options):
        try:
            return encode_texts(
                texts,
                self.tokenizer,
                lambda ids, mask: self._forward(ids, mask)["last_hidden_state"],
                self.config,
                getattr(self.model, "sentence_transformers", None),
                pooling=options["pooling"],
                normalize=options["normalize"],
                batch_size=options["batch_size"],
                max_length=options["max_length"],
                show_progress_bar=options["show_progress_bar"],
            )
        except PipelineError:
            raise
        except (ValueError, TypeError) as error:  # encode's own checks, one line each
            raise PipelineError(str(error)) from None
