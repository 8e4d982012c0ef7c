"""`token-classification`: a tag per token, or entities grouped over words, as the reference gives them."""

from __future__ import annotations

import numpy as np

from . import scores
from .base import Pipeline, Prepared, check_tokenizer_options
from .errors import PipelineError, check_choice

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """Entities of a text: `{"entity", "score", "index", "word", "start", "end"}` per token with
    `aggregation_strategy="none"`, else `{"entity_group", "score", "word", "start", "end"}` per
    group of adjacent tokens (words, for first/average/max) of one tag. Labels in `ignore_labels`
    (default `["O"]`) are left out. Texts are truncated at the model's length, as the reference does."""

    task = "token-classification"
    head = "ForTokenClassification"
    defaults = {"aggregation_strategy": "none", "ignore_labels": None, "max_length": None}

    def check_options(self, options):
        options["aggregation_strategy"] = check_choice(
            options["aggregation_strategy"], "aggregation_strategy", STRATEGIES
        )
        labels = options["ignore_labels"]
        if labels is not None and (
            not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels)
        ):
            raise PipelineError(f"ignore_labels must be a list of label names, got {type(labels).__name__}")
        options["truncation"] = True
        return check_tokenizer_options(options)

    def preprocess(self, item, options, where):
        encoding = self.encode(
            item, where, options, return_offsets_mapping=True, return_special_tokens_mask=True
        )
        return Prepared(
            [encoding["input_ids"]],
            {"text": item, "offsets": encoding["offset_mapping"], "special": encoding["special_tokens_mask"]},
        )

    def postprocess(self, prepared, outputs, options):
        strategy = options["aggregation_strategy"]
        ignore = ["O"] if options["ignore_labels"] is None else options["ignore_labels"]
        tokens = self._tokens(prepared, scores.softmax(outputs[0]["logits"]))
        if strategy in ("none", "simple"):
            entities = [self._tagged(token) for token in tokens]
        else:
            entities = [self._word(group, strategy) for group in _words(tokens)]
        if strategy != "none":
            entities = [self._group(group) for group in _groups(entities)]
        key = "entity" if strategy == "none" else "entity_group"
        return [entity for entity in entities if entity[key] not in ignore]

    def _tokens(self, prepared, probabilities) -> list[dict]:
        """Each ordinary token: its piece, scores, character span and whether it continues a word."""
        text, ids = prepared.meta["text"], prepared.rows[0]
        tokens = []
        for index, (token_id, (start, end), special) in enumerate(
            zip(ids, prepared.meta["offsets"], prepared.meta["special"])
        ):
            if special:
                continue
            word = self.tokenizer.convert_ids_to_tokens(int(token_id))
            # A SentencePiece vocabulary has no continuation prefix: a piece continues a word when
            # no space is next to its start (the reference's rule for such tokenizers).
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            if token_id == self.tokenizer.unk_token_id:
                word, is_subword = text[start:end], False
            tokens.append(
                {
                    "word": word,
                    "scores": probabilities[index],
                    "start": start,
                    "end": end,
                    "index": index,
                    "is_subword": is_subword,
                }
            )
        return tokens

    def _tagged(self, token) -> dict:
        best = int(token["scores"].argmax())
        return {
            "entity": self.config.id2label[best],
            "score": float(token["scores"][best]),
            "index": token["index"],
            "word": token["word"],
            "start": token["start"],
            "end": token["end"],
        }

    def _word(self, pieces: list[dict], strategy: str) -> dict:
        """One word's entity from its pieces: the first piece's tag, the most confident piece's, or
        the tag of the averaged scores."""
        if strategy == "first":
            word_scores = pieces[0]["scores"]
        elif strategy == "max":
            word_scores = max(pieces, key=lambda piece: piece["scores"].max())["scores"]
        else:
            word_scores = np.nanmean(np.stack([piece["scores"] for piece in pieces]), axis=0)
        best = int(word_scores.argmax())
        return {
            "entity": self.config.id2label[best],
            "score": float(word_scores[best]),
            "word": self.tokenizer.convert_tokens_to_string([piece["word"] for piece in pieces]),
            "start": pieces[0]["start"],
            "end": pieces[-1]["end"],
        }

    def _group(self, entities: list[dict]) -> dict:
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([entity["score"] for entity in entities])),
            "word": self.tokenizer.convert_tokens_to_string([entity["word"] for entity in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }


def _words(tokens: list[dict]) -> list[list[dict]]:
    """Tokens grouped into words: a token that continues a word joins the one before."""
    words: list[list[dict]] = []
    for token in tokens:
        if words and token["is_subword"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _tag(label: str) -> tuple[str, str]:
    """("B" or "I", type) of an IOB label; a label without a prefix counts as inside."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _groups(entities: list[dict]) -> list[list[dict]]:
    """Adjacent entities of one type, a new group at each B- tag."""
    groups: list[list[dict]] = []
    for entity in entities:
        bi, tag = _tag(entity["entity"])
        if groups and tag == _tag(groups[-1][-1]["entity"])[1] and bi != "B":
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return groups
