"""`text-classification` and `text-ranking`: sequence-classifier scores read as labels or ranks."""

from __future__ import annotations

from ..errors import short
from . import scores
from .base import Pipeline, Prepared, check_tokenizer_options
from .errors import PipelineError, check_choice, check_text, check_top_k

# "top_k" not given anywhere: the reference's legacy answer (one best label as a dict).
_UNSET = object()


class TextClassificationPipeline(Pipeline):
    """Labels and scores of a sequence classifier, for texts or `{"text", "text_pair"}` pairs."""

    task = "text-classification"
    head = "ForSequenceClassification"
    token_level = False
    defaults = {"top_k": _UNSET, "function_to_apply": None, "truncation": False, "max_length": None}

    def check_options(self, options):
        if options["top_k"] is not _UNSET:
            check_top_k(options["top_k"], allow_none=True)
        if options["function_to_apply"] is not None:
            options["function_to_apply"] = check_choice(
                options["function_to_apply"], "function_to_apply", scores.FUNCTIONS
            )
        return check_tokenizer_options(options)

    def input_kind(self):
        return 'a string or a {"text": ..., "text_pair": ...} dict'

    def preprocess(self, item, options, where):
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"text", "text_pair"})
            if unknown or "text" not in item:
                raise PipelineError(
                    f'{where} must be a string or a dict of "text" and "text_pair", '
                    f"got keys {short(sorted(item), 80)}"
                )
            encoding = self.encode(
                item["text"], f'{where}["text"]', options, item.get("text_pair"), f'{where}["text_pair"]'
            )
        elif isinstance(item, (list, tuple)):
            raise PipelineError(
                f'{where} is a {type(item).__name__}: send a text pair as {{"text": ..., "text_pair": ...}}'
            )
        else:
            encoding = self.encode(item, where, options)
        return Prepared([encoding["input_ids"]])

    def postprocess(self, prepared, outputs, options):
        function = options["function_to_apply"] or scores.default_function(self.config)
        values = scores.apply(function, outputs[0]["logits"])
        labels = self.config.id2label
        if options["top_k"] is _UNSET:
            best = int(values.argmax())
            return {"label": labels[best], "score": float(values[best])}
        return [
            {"label": labels[int(i)], "score": float(values[i])}
            for i in scores.best_first(values, options["top_k"])
        ]

    def single_result(self, answer, inputs, options, call):
        # The reference wraps a single text's answer in a list unless this call names top_k.
        if isinstance(inputs, str) and "top_k" not in call:
            return [answer]
        return answer


class TextRankingPipeline(Pipeline):
    """A cross-encoder: `p(query, passages, top_k=None)` scores each `(query, passage)` pair and
    returns `[{"corpus_id": i, "score": s}, ...]`, best first (sentence-transformers' `rank`)."""

    task = "text-ranking"
    head = "ForSequenceClassification"
    token_level = False
    defaults = {"top_k": None, "function_to_apply": None, "truncation": False, "max_length": None}

    def prepare(self):
        if self.config.num_labels != 1:
            raise PipelineError(
                f"text-ranking needs a cross-encoder with one output (num_labels=1), this model has "
                f"{self.config.num_labels}"
            )

    def check_options(self, options):
        check_top_k(options["top_k"], allow_none=True)
        if options["function_to_apply"] is not None:
            options["function_to_apply"] = check_choice(
                options["function_to_apply"], "function_to_apply", scores.FUNCTIONS
            )
        return check_tokenizer_options(options)

    def __call__(self, query, passages=None, **options):
        options = self.resolve(options)
        check_text(query, "query")
        if isinstance(passages, str) or not isinstance(passages, (list, tuple)):
            raise PipelineError(f"passages must be a list of strings, got {type(passages).__name__}")
        pairs = [(query, passage, f"passages[{i}]") for i, passage in enumerate(passages)]
        values = [answer for answer in self.run_chunk(pairs, options, 0)]
        order = scores.best_first(values, options["top_k"])
        return [{"corpus_id": int(i), "score": float(values[i])} for i in order]

    def preprocess(self, item, options, where):
        query, passage, name = item
        return Prepared([self.encode(query, "query", options, passage, name)["input_ids"]])

    def postprocess(self, prepared, outputs, options):
        # sentence-transformers' CrossEncoder default for one output is a sigmoid.
        function = options["function_to_apply"] or "sigmoid"
        return float(scores.apply(function, outputs[0]["logits"])[0])
