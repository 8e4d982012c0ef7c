"""`fill-mask`: the likeliest tokens for each `<mask>` of a text, as the reference pipeline gives them."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import short
from . import scores
from .base import Pipeline, Prepared, check_tokenizer_options
from .errors import PipelineError, check_text, check_top_k

logger = logging.getLogger(__name__)


class FillMaskPipeline(Pipeline):
    """`[{"score", "token", "token_str", "sequence"}, ...]` per `<mask>`, best first."""

    task = "fill-mask"
    head = "ForMaskedLM"
    defaults = {"top_k": 5, "targets": None, "tokenizer_kwargs": None}

    def check_options(self, options):
        check_top_k(options["top_k"])
        kwargs = options["tokenizer_kwargs"] or {}
        if not isinstance(kwargs, dict) or set(kwargs) - {"truncation", "max_length"}:
            raise PipelineError(f"tokenizer_kwargs takes truncation and max_length, got {short(kwargs, 80)}")
        options.update(check_tokenizer_options(dict(kwargs)))
        if options["targets"] is not None:
            options["target_ids"] = self.target_ids(options["targets"])
        return options

    def target_ids(self, targets) -> np.ndarray:
        """Ids of `targets`: a vocabulary entry as it is, else the first token of its encoding."""
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, (list, tuple)):
            raise PipelineError(f"targets must be a string or a list of strings, got {short(targets, 60)}")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for i, target in enumerate(targets):
            check_text(target, f"targets[{i}]")
            if target in vocab:
                ids.append(vocab[target])
                continue
            encoded = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if not encoded:
                logger.warning("target %r is not in the vocabulary and encodes to nothing: ignored", target)
                continue
            logger.warning(
                "target %r is not in the vocabulary: its first token %d is used", target, encoded[0]
            )
            ids.append(encoded[0])
        if not ids:
            raise PipelineError("targets must hold at least one token of the vocabulary")
        return np.array(sorted(set(ids)), dtype=np.int64)

    def preprocess(self, item, options, where):
        ids = self.encode(item, where, options)["input_ids"]
        if self.tokenizer.mask_token_id not in ids:
            raise PipelineError(f"{where} holds no mask token ({self.tokenizer.mask_token})")
        return Prepared([ids])

    def postprocess(self, prepared, outputs, options):
        ids = np.asarray(prepared.rows[0])
        masked = np.flatnonzero(ids == self.tokenizer.mask_token_id)
        targets = options.get("target_ids")
        probabilities = scores.softmax(outputs[0]["logits"][masked])
        if targets is not None:
            probabilities = probabilities[:, targets]
        top_k = min(options["top_k"], probabilities.shape[-1])
        single = len(masked) == 1
        answers = []
        for position, row in zip(masked, probabilities):
            proposals = []
            for index in scores.best_first(row, top_k):
                token = int(index if targets is None else targets[index])
                filled = ids.copy()
                filled[position] = token
                filled = filled[filled != self.config.pad_token_id]
                proposals.append(
                    {
                        "score": float(row[index]),
                        "token": token,
                        "token_str": self.tokenizer.decode([token]),
                        # One mask: the text without special tokens; several: every token shown.
                        "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=single),
                    }
                )
            answers.append(proposals)
        return answers[0] if single else answers

    def list_result(self, answers, inputs, options, call):
        return answers[0] if len(answers) == 1 else answers
