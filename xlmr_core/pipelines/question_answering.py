"""`question-answering`: the likeliest spans of a context that answer a question, as the reference
pipeline finds them.

A context longer than the model is cut into overlapping windows (the tokenizer's overflow with
`doc_stride` shared tokens, the question repeated in each); every window's start and end logits
become probabilities over its context tokens (and `<s>`, the "no answer" slot), the best spans of
each window are read back to characters (whole words with `align_to_words`), answers with the same
text are merged by adding their scores, and the best `top_k` over all windows are returned.
"""

from __future__ import annotations

import numpy as np

from ..errors import short
from .base import Pipeline, Prepared
from .errors import PipelineError, check_bool, check_positive_int, check_text, check_top_k

# Masked logits, as the reference sets them: far below any real logit, so exp() gives 0.
_MASKED = -10000.0
# The null score before any window is read (the reference's "large and positive").
_NO_NULL = 1000000
KEYS = ("question", "context")


class QuestionAnsweringPipeline(Pipeline):
    """`{"score", "start", "end", "answer"}` (a list of them, best first, when more than one)."""

    task = "question-answering"
    head = "ForQuestionAnswering"
    defaults = {
        "top_k": 1,
        "doc_stride": None,
        "max_seq_len": None,
        "max_question_len": 64,
        "max_answer_len": 15,
        "handle_impossible_answer": False,
        "align_to_words": True,
    }

    # ------------------------------------------------------------------ options and inputs

    def check_options(self, options):
        check_top_k(options["top_k"])
        check_positive_int(options["max_answer_len"], "max_answer_len")
        check_positive_int(options["max_question_len"], "max_question_len")
        check_bool(options["handle_impossible_answer"], "handle_impossible_answer")
        check_bool(options["align_to_words"], "align_to_words")
        limit = self.max_length({})
        if options["max_seq_len"] is None:
            options["max_seq_len"] = min(limit, 384)
        elif check_positive_int(options["max_seq_len"], "max_seq_len") > limit:
            raise PipelineError(
                f"max_seq_len ({options['max_seq_len']}) is more than the model's {limit} tokens"
            )
        if options["doc_stride"] is None:
            options["doc_stride"] = min(options["max_seq_len"] // 2, 128)
        else:
            check_positive_int(options["doc_stride"], "doc_stride", minimum=0)
        if options["doc_stride"] > options["max_seq_len"]:
            raise PipelineError(
                f"doc_stride ({options['doc_stride']}) is larger than max_seq_len ({options['max_seq_len']})"
            )
        return options

    def __call__(self, inputs=None, question=None, context=None, **options):
        """`pipe(question=..., context=...)` (a string or a list each), `pipe({"question", "context"})`,
        or a list (or iterable) of such dicts."""
        return super().__call__(self.gather(inputs, question, context), **options)

    @staticmethod
    def gather(inputs, question, context):
        """The inputs as dicts, from `inputs` or from the `question` and `context` keywords."""
        if question is None and context is None:
            if inputs is None:
                raise PipelineError("question-answering needs question= and context=, or inputs")
            return inputs
        if inputs is not None:
            raise PipelineError("pass either inputs or question= and context=, not both")
        if question is None or context is None:
            missing = "question" if question is None else "context"
            raise PipelineError(f"question-answering needs both question= and context= (no {missing} given)")
        if isinstance(question, str) and isinstance(context, str):
            return {"question": _given(question, "question"), "context": _given(context, "context")}
        if isinstance(question, list) and isinstance(context, str):
            _given(context, "context")
            return [
                {"question": _given(q, f"question[{i}]"), "context": context} for i, q in enumerate(question)
            ]
        if isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise PipelineError(
                    f"question and context must be lists of the same length, got {len(question)} "
                    f"and {len(context)}"
                )
            return [
                {"question": _given(q, f"question[{i}]"), "context": _given(c, f"context[{i}]")}
                for i, (q, c) in enumerate(zip(question, context))
            ]
        raise PipelineError(
            "question and context must be two strings, a list and a string, or two lists; got "
            f"{type(question).__name__} and {type(context).__name__}"
        )

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, dict)

    def input_kind(self) -> str:
        return 'a dict {"question": ..., "context": ...}'

    def list_result(self, answers, inputs, options, call):
        # As the reference: a list of one question is answered as that question alone.
        return answers[0] if len(answers) == 1 else answers

    # ------------------------------------------------------------------ windows

    def preprocess(self, item, options, where):
        question, context = self.read(item, where)
        question = self.truncated_question(question, options["max_question_len"])
        specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        question_tokens = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
        context_tokens = len(self.tokenizer(context, add_special_tokens=False)["input_ids"])
        if context_tokens == 0:
            raise PipelineError(f"{where}['context'] has no tokens")
        max_seq_len, stride = options["max_seq_len"], options["doc_stride"]
        per_window = max_seq_len - question_tokens - specials
        if per_window < 1:
            raise PipelineError(
                f"{where}['question'] is {question_tokens} tokens: with max_seq_len={max_seq_len} no "
                "context token fits beside it; shorten it or lower max_question_len"
            )
        if context_tokens > per_window and stride >= per_window:
            raise PipelineError(
                f"doc_stride ({stride}) must be smaller than the {per_window} context tokens of each window "
                f"of {where} (max_seq_len {max_seq_len} less the question's {question_tokens} and "
                f"{specials} special tokens)"
            )
        encoding = self.tokenizer(
            question,
            context,
            truncation="only_second",
            max_length=max_seq_len,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        rows = [list(ids) for ids in encoding["input_ids"]]
        windows = [
            {
                "offsets": encoding["offset_mapping"][i],
                "words": encoding.word_ids(i),
                "in_context": np.array([s == 1 for s in encoding.sequence_ids(i)]),
            }
            for i in range(len(rows))
        ]
        return Prepared(rows, {"context": context, "windows": windows})

    @staticmethod
    def read(item, where: str) -> tuple[str, str]:
        """The question and context of one input, each a non-empty string."""
        if not isinstance(item, dict):
            raise PipelineError(
                f'{where} must be a dict {{"question": ..., "context": ...}}, got {type(item).__name__} '
                f"({short(item, 60)})"
            )
        unknown = sorted(set(item) - set(KEYS), key=str)
        if unknown:
            raise PipelineError(
                f"{where} has unknown key {short(unknown[0], 40)}; it takes question and context"
            )
        texts = []
        for key in KEYS:
            if key not in item:
                raise PipelineError(f"{where} has no {key!r}")
            texts.append(_given(item[key], f"{where}[{key!r}]"))
        return texts[0], texts[1]

    def truncated_question(self, question: str, limit: int) -> str:
        """The question cut after its first `limit` tokens (at that token's end in the text), as the
        option documents; the reference's fast path leaves it whole (equal up to `limit` tokens)."""
        offsets = self.question_offsets(question)
        while len(offsets) > limit and offsets[limit - 1][1] < len(question):
            question = question[: offsets[limit - 1][1]]
            offsets = self.question_offsets(question)
        return question

    def question_offsets(self, question: str) -> list:
        return self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]

    # ------------------------------------------------------------------ spans

    def postprocess(self, prepared, outputs, options):
        meta = prepared.meta
        answers = extract_answers(
            meta["context"], prepared.rows, meta["windows"], outputs, self.tokenizer.cls_token_id, options
        )
        return answers[0] if len(answers) == 1 else answers


def extract_answers(context: str, rows, windows, outputs, cls_token_id: int, options) -> list[dict]:
    """The best `options["top_k"]` answers of one context from its windows' start and end logits
    (also the fine-tuning metrics' answer extraction)."""
    # Some candidates fold into others once aligned to words: read more than top_k.
    wanted = options["top_k"] * 2 + 10 if options["align_to_words"] else options["top_k"]
    null = _NO_NULL
    answers: list[dict] = []
    for row, window, output in zip(rows, windows, outputs):
        allowed = window["in_context"] | (np.asarray(row) == cls_token_id)
        start = probabilities(output["start_logits"], allowed)
        end = probabilities(output["end_logits"], allowed)
        if options["handle_impossible_answer"]:
            null = min(null, float(start[0] * end[0]))
        start[0] = end[0] = 0.0
        for s, e, score in best_spans(start, end, allowed, wanted, options["max_answer_len"]):
            first, last = char_span(window, s, e, options["align_to_words"])
            text = context[first:last]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += score
            else:
                answers.append({"score": score, "start": first, "end": last, "answer": text})
    if options["handle_impossible_answer"]:
        answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[: options["top_k"]]


def _given(text, where: str) -> str:
    """`text` when it is a non-empty string (the reference refuses an empty question or context)."""
    if not check_text(text, where):
        raise PipelineError(f"{where} must not be empty")
    return text


def probabilities(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax of a window's logits over its `allowed` tokens (the others get 0)."""
    logits = np.where(allowed, logits, np.float32(_MASKED)).astype(np.float32)
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def best_spans(start, end, allowed, count: int, max_answer_len: int) -> list[tuple[int, int, float]]:
    """The `count` best (start, end, start·end) spans of at most `max_answer_len` tokens, best first,
    those touching a token outside `allowed` dropped. Ties are broken as the reference's numpy calls
    break them (argmax, argsort, argpartition), so equal-scored spans come in the same order."""
    scores = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = scores.ravel()
    if count == 1:
        order = np.array([np.argmax(flat)])
    elif flat.size <= count:
        order = np.argsort(-flat)
    else:
        chosen = np.argpartition(-flat, count)[:count]
        order = chosen[np.argsort(-flat[chosen])]
    starts, ends = np.unravel_index(order, scores.shape)
    keep = allowed[starts] & allowed[ends]
    return [(int(s), int(e), float(scores[s, e])) for s, e in zip(starts[keep], ends[keep])]


def char_span(window: dict, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """The context characters of tokens `s`..`e`: whole words with `align_to_words` (tokens outside
    a context word, as `<s>`, fall back to their own offsets)."""
    offsets = window["offsets"]
    if align_to_words:
        words, in_context = window["words"], window["in_context"]
        if words[s] is not None and words[e] is not None:
            first = _word_tokens(words, in_context, words[s])
            last = _word_tokens(words, in_context, words[e])
            return offsets[first[0]][0], offsets[last[-1]][1]
    return offsets[s][0], offsets[e][1]


def _word_tokens(words, in_context, word: int) -> list[int]:
    return [i for i, w in enumerate(words) if w == word and in_context[i]]
