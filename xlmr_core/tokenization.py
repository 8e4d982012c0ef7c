"""The XLM-R tokenizer on `sentencepiece` (the "slow" tokenizer).

Ids: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then SentencePiece's pieces shifted by one
(its own ``<unk>`` becomes 3; its ``<s>``/``</s>`` are never produced from text), ``<mask>`` last.

Agreement with the fast tokenizer. The reference library's slow and fast XLM-R tokenizers disagree on
some inputs; ours give identical results on every text, choosing as follows:

* Character normalization. The `tokenizers` library applies SentencePiece's precompiled character map
  one grapheme cluster at a time, and when a short cluster starts with a mapped character it replaces
  the *whole* cluster by that character's mapping: the combining marks after it are lost
  (``"\\xa0\\u0acc"``, ``"\\u0385\\u032d"``). SentencePiece keeps them. We follow the fast behaviour:
  both of our tokenizers normalize with the same `tokenizers` normalizer, the slow one then runs
  SentencePiece with an identity character map. Why: the fast tokenizer is what nearly every user of
  the reference runs (and fine-tunes with), and this way the two cannot diverge on normalization.
* Trailing whitespace. The reference fast strips any Unicode whitespace at the end (U+0085, U+2028,
  ...); SentencePiece only strips spaces, and U+0085 is a piece of the XLM-R vocabulary. We follow
  SentencePiece: the converted pipeline removes trailing spaces only.
* Truncation of pairs with ``longest_first``: the reference slow removes one token at a time (ties from
  the second text), the fast splits the budget in one step (odd token to the second text): for 5 + 6
  tokens into 5 the slow keeps 3 + 2, the fast 2 + 3. We follow the fast.
* Overflow: the reference slow returns the cut tokens under ``overflowing_tokens`` (and none for pairs
  with ``longest_first``); the fast returns extra rows with ``overflow_to_sample_mapping``. We return
  rows, in the fast's order, for both.
* Impossible truncation (``only_first`` longer than the first text, ``max_length`` below the special
  tokens): the reference slow logs and returns the input untruncated, the fast raises or returns
  ``<s></s>``. We raise a ValueError saying why.
* ``tokenize``: the reference slow gives the raw character for unknown pieces and ``<mask>`` for the
  mask; the fast gives ``<unk>`` and ``" <mask>"`` (with the stripped space). Ours give the vocabulary
  tokens: ``<unk>``, ``<mask>``.
* Several spaces before ``<mask>``: the reference fast strips only one and leaves a ``▁`` token, the
  slow strips them all. We follow the slow (the documented meaning of ``lstrip``).
* A text whose *normalized* form spells a special token (full-width ``＜mask＞``, ``＜s＞``): the
  reference fast's Unigram model matches it as the special piece (its score is 0, the highest), so
  text can inject special ids; SentencePiece never produces them from text. We follow SentencePiece
  in both: our fast encodes such a text again with the special pieces of its model renamed out of
  reach (`XLMRobertaTokenizerFast._guarded_tokenizer`), which also covers published tokenizer.json files.
* Exact ties between segmentations (the same pieces in another order, ``"!!!!!"`` as
  ``"!!" "!!" "!"`` or ``"!" "!!" "!!"``): both libraries run the same search, SentencePiece summing
  scores in float32 and `tokenizers` in float64, so rounding picks the winner and they can differ.
  Matching both references makes this one difference impossible to remove; the rule, tested on the
  fuzz suite's random texts (``tests.fuzz.targets.tie_explains``): where our slow and fast differ,
  the differing runs spell the same characters and their scores agree to float32 rounding; our slow
  is then the reference slow and our fast the reference fast. It needs repeated-symbol pieces of
  equal score, so it shows on small trained models and rarely on the real vocabulary.
* ``decode`` of an id out of range: the reference slow raises IndexError, the fast returns ``""``.
  Ours raise a `TokenizerError` (a ValueError) naming the id; a float, NaN or infinite id is a
  TypeError, not an id cut to an integer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tokenizers import normalizers

from ._atomic import atomic_write_bytes, atomic_write_text
from .sentencepiece_conversion import (
    check_mask_token,
    convert_sentencepiece_to_tokenizer,
    load_processor,
    precompiled_charsmap,
    read_model_file,
    without_character_map,
)
from .tokenization_base import (
    TOKENIZER_FILE,
    VOCAB_FILE,
    Encoded,
    XLMRobertaTokenizerBase,
    check_sp_model_kwargs,
    native,
)

__all__ = ["XLMRobertaTokenizer"]


class XLMRobertaTokenizer(XLMRobertaTokenizerBase):
    """XLM-RoBERTa tokenizer on SentencePiece.

    `vocab_file` is the ``sentencepiece.bpe.model`` file; `sp_model_kwargs` go to
    ``SentencePieceProcessor`` (e.g. ``enable_sampling=True, nbest_size=-1, alpha=0.1`` for subword
    regularisation).
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE}

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        sp_model_kwargs: dict | None = None,
        **kwargs,
    ):
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            sep_token=sep_token,
            cls_token=cls_token,
            unk_token=unk_token,
            pad_token=pad_token,
            mask_token=mask_token,
            **kwargs,
        )
        self.vocab_file = os.fspath(vocab_file)
        self.sp_model_kwargs = check_sp_model_kwargs(sp_model_kwargs)
        self._model_proto = read_model_file(self.vocab_file)
        self._load(self._model_proto, f"SentencePiece model file {self.vocab_file!r}")

    def _load(self, model_proto: bytes, what: str = "the SentencePiece model") -> None:
        charsmap = precompiled_charsmap(model_proto, what)
        # Normalize with the same `tokenizers` normalizer as the fast tokenizer, then segment with
        # SentencePiece minus its own character map (see the module docstring for why).
        self._what = what
        self._normalizer = native(what, normalizers.Precompiled, charsmap) if charsmap else None
        self.sp_model = load_processor(without_character_map(model_proto), what, **self.sp_model_kwargs)
        check_mask_token(self.sp_model, self.mask_token, what)
        self._fixed_ids = {
            "<s>": 0,
            "<pad>": 1,
            "</s>": 2,
            "<unk>": 3,
            self.mask_token: len(self.sp_model) + 1,
        }
        self._fixed_tokens = {index: token for token, index in self._fixed_ids.items()}
        self._check_special_tokens_known()
        specials = sorted(self._text_special_tokens, key=len, reverse=True)
        # <mask> eats the whitespace before it, as in the reference (lstrip=True).
        alternatives = [(r"\s*" if token == self.mask_token else "") + re.escape(token) for token in specials]
        self._special_pattern = re.compile("(" + "|".join(alternatives) + ")")
        self._special_starts = "".join(sorted({token[0] for token in specials}))

    def __getstate__(self):
        state = self.__dict__.copy()
        for unpicklable in ("sp_model", "_normalizer", "_special_pattern"):
            state.pop(unpicklable, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._load(self._model_proto)

    @property
    def vocab_size(self) -> int:
        return len(self.sp_model) + 2

    def _convert_token_to_id(self, token: str) -> int:
        if token in self._fixed_ids:
            return self._fixed_ids[token]
        piece = self.sp_model.PieceToId(token)
        return piece + 1 if piece else 3

    def _convert_id_to_token(self, index: int) -> str:
        if index in self._fixed_tokens:
            return self._fixed_tokens[index]
        return self.sp_model.IdToPiece(index - 1)

    def _split_specials(self, text: str) -> list[str]:
        """Text pieces and special tokens (kept whole, never segmented) in order."""
        if not any(char in text for char in self._special_starts):
            return [text]
        out = []
        for index, part in enumerate(self._special_pattern.split(text)):
            if index % 2:
                out.append(part.lstrip())
            elif part:
                out.append(part)
        return out

    def _encode_texts(self, texts: list[str], with_offsets: bool = False) -> list[Encoded]:
        if self._normalizer is not None:
            normalize_str, where = self._normalizer.normalize_str, f"normalizing with {self._what}"

            def normalize(text):
                return native(where, normalize_str, text)
        else:
            normalize = str
        special_ids = {token: self._convert_token_to_id(token) for token in self._text_special_tokens}
        layouts, chunks = [], []
        for text in texts:
            layout = []
            for part in self._split_specials(text):
                if part in special_ids:
                    layout.append(special_ids[part])
                else:
                    layout.append(None)
                    chunks.append(normalize(part))
            layouts.append(layout)
        pieces = iter(native(f"encoding with {self._what}", self.sp_model.encode, chunks) if chunks else [])
        out = []
        for layout in layouts:
            ids = []
            for special in layout:
                if special is None:
                    ids += [piece + 1 if piece else 3 for piece in next(pieces)]
                else:
                    ids.append(special)
            out.append(Encoded(ids))
        return out

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str]:
        """Write the SentencePiece model into `save_directory`; return its path."""
        name = f"{filename_prefix}-{VOCAB_FILE}" if filename_prefix else VOCAB_FILE
        path = Path(save_directory) / name
        atomic_write_bytes(path, self._model_proto)
        return (str(path),)

    def _write_model_files(self, directory: Path) -> None:
        self.save_vocabulary(directory)
        # A tokenizer.json too, so a fast tokenizer loading the directory runs our pipeline.
        tokenizer = convert_sentencepiece_to_tokenizer(load_processor(self._model_proto), self.mask_token)
        atomic_write_text(directory / TOKENIZER_FILE, tokenizer.to_str())

    def _config(self) -> dict:
        return {**super()._config(), "sp_model_kwargs": self.sp_model_kwargs}

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides) -> XLMRobertaTokenizer:
        """Load from a directory holding ``sentencepiece.bpe.model`` (and the tokenizer config files)."""
        directory = Path(directory)
        kwargs = {**cls._read_config(directory), **overrides}
        vocab_file = directory / VOCAB_FILE
        if not vocab_file.is_file():
            raise FileNotFoundError(
                f"{directory} has no {VOCAB_FILE}, which the slow tokenizer needs "
                "(XLMRobertaTokenizerFast can load a tokenizer.json alone)"
            )
        return cls(vocab_file, **kwargs)
