"""The XLM-R tokenizer on the `tokenizers` library (the "fast" tokenizer).

Built from a ``tokenizer.json`` or converted on the fly from the SentencePiece model
(`sentencepiece_conversion`). `tokenizers` only segments text into ids; special tokens, truncation,
overflow and padding are the shared code of `tokenization_base`, so this tokenizer and the slow one
give the same ids on every text (see `tokenization` for the choices made where the reference's slow
and fast disagree). A ``tokenizer.json`` is used as it is: the published XLM-R file, written by an
older converter, keeps trailing whitespace as a ``▁`` token, exactly as the reference does with it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer

from ._atomic import atomic_write_bytes, atomic_write_text
from .errors import short
from .json_text import parse_json
from .sentencepiece_conversion import (
    check_charsmap,
    convert_sentencepiece_to_tokenizer,
    load_processor,
    read_model_file,
    special_added_tokens,
)
from .tokenization_base import (
    LEADING_SPECIAL_TOKENS,
    TOKENIZER_FILE,
    VOCAB_FILE,
    Encoded,
    TokenizerError,
    XLMRobertaTokenizerBase,
    check_sp_model_kwargs,
    native,
    read_tokenizer_file,
)

__all__ = ["XLMRobertaTokenizerFast"]


class _FastEncoded(Encoded):
    """Ids read at once; offsets and word ids only when someone asks for them, then kept (every
    overflowing window of a long text reads them: converting them again each time was quadratic)."""

    def __init__(self, encoding, remap: dict[int, int] | None = None):
        self.ids = encoding.ids if not remap else [remap.get(i, i) for i in encoding.ids]
        self._encoding = encoding

    @functools.cached_property
    def offsets(self):
        return self._encoding.offsets

    @functools.cached_property
    def word_ids(self):
        return self._encoding.word_ids


class XLMRobertaTokenizerFast(XLMRobertaTokenizerBase):
    """XLM-RoBERTa tokenizer on `tokenizers`, with offsets, word ids and overflow windows.

    Give `tokenizer_file` (a ``tokenizer.json``) or `vocab_file` (a ``sentencepiece.bpe.model``,
    converted on the fly); with both, the ``tokenizer.json`` is used and the SentencePiece model kept
    so `save_pretrained` writes it too.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE, "tokenizer_file": TOKENIZER_FILE}

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        **kwargs,
    ):
        sp_model_kwargs = kwargs.pop("sp_model_kwargs", None)
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
        # A slow-tokenizer setting found in shared config files: checked as the slow does, unused here.
        check_sp_model_kwargs(sp_model_kwargs)
        self.vocab_file = None if vocab_file is None else os.fspath(vocab_file)
        self._model_proto = None if vocab_file is None else read_model_file(vocab_file)
        if tokenizer_file is not None:
            self._tokenizer = _load_tokenizer_file(tokenizer_file)
        elif self._model_proto is not None:
            processor = load_processor(self._model_proto, f"SentencePiece model file {self.vocab_file!r}")
            self._tokenizer = convert_sentencepiece_to_tokenizer(processor, self.mask_token)
        else:
            raise ValueError("XLMRobertaTokenizerFast needs a tokenizer_file or a vocab_file")
        self._what = f"tokenizer file {os.fspath(tokenizer_file)!r}" if tokenizer_file else "the tokenizer"
        # Truncation and padding are ours; <mask> eats the spaces before it whatever the file says.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._check_special_tokens_known()
        # Special tokens beyond XLM-R's five (tokens of the vocabulary, checked above) are split out
        # of the text whole, as the slow tokenizer does.
        others = [t for t in self._text_special_tokens if t not in (*LEADING_SPECIAL_TOKENS, self.mask_token)]
        added = special_added_tokens(self.mask_token) + [
            AddedToken(t, normalized=False, special=True) for t in others
        ]
        native(self._what, self._tokenizer.add_special_tokens, added)
        self._fixed_cache: dict[int, str] | None = None
        self._guarded: tuple[Tokenizer, dict[int, int]] | None = None
        # Asking `tokenizers` for the size builds the whole vocabulary; decode checks it per id.
        self._vocab_size = native(self._what, self._tokenizer.get_vocab_size, with_added_tokens=True)

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def _convert_token_to_id(self, token: str) -> int:
        index = self._tokenizer.token_to_id(token)
        if index is None:  # as in SentencePiece: the unknown piece, whatever unk_token was set to
            index = self._tokenizer.token_to_id("<unk>")
        return 3 if index is None else index

    def _convert_id_to_token(self, index: int) -> str:
        token = self._tokenizer.id_to_token(index)
        if token is None:  # a hole in a hand-made vocabulary
            raise TokenizerError(f"token id {index} has no token in {self._what}")
        return token

    def _check_offsets_supported(self) -> None:
        pass

    def _encode_texts(self, texts: list[str], with_offsets: bool = False) -> list[Encoded]:
        # encode_batch_fast would skip the offsets but also the word ids, which word_ids() needs.
        encodings = native(
            f"encoding with {self._what}", self._tokenizer.encode_batch, texts, add_special_tokens=False
        )
        out = [_FastEncoded(encoding) for encoding in encodings]
        fixed = self._fixed_pieces()
        suspects = [
            i
            for i, (text, encoded) in enumerate(zip(texts, out))
            if not fixed.keys().isdisjoint(encoded.ids) and self._spells_special(text, encodings[i])
        ]
        if suspects:
            guarded, remap = self._guarded_tokenizer()
            again = native(
                f"encoding with {self._what}",
                guarded.encode_batch,
                [texts[i] for i in suspects],
                add_special_tokens=False,
            )
            for i, encoding in zip(suspects, again):
                out[i] = _FastEncoded(encoding, remap)
        return out

    # Text whose *normalized* form spells a special token (full-width "＜mask＞" is "<mask>" after
    # NFKC) is matched by the Unigram model as that special piece (score 0, the best): text could
    # inject special ids. SentencePiece never produces its control and unknown pieces, nor <mask>,
    # from text, and neither does the slow tokenizer; so such texts are encoded again by a copy of
    # the model whose five special pieces are renamed to strings no text can hold. Only texts with
    # a special id the added-token pass did not produce take that second pass.
    _UNMATCHABLE = "\x00\ue000\u2581"

    def _fixed_pieces(self) -> dict[int, str]:
        if self._fixed_cache is None:
            pieces = {}
            for token in (*LEADING_SPECIAL_TOKENS, self.mask_token):
                index = self._tokenizer.token_to_id(token)
                if index is not None:
                    pieces[index] = token
            self._fixed_cache = pieces
        return self._fixed_cache

    def _spells_special(self, text: str, encoding) -> bool:
        fixed = self._fixed_pieces()
        for index, (start, end), surface in zip(encoding.ids, encoding.offsets, encoding.tokens):
            token = fixed.get(index)
            if token is None or text[start:end].strip() == token:
                continue  # an added token written in the text (its offsets are exact)
            # Unknown characters are <unk> too, the token then being their normalized text: only
            # one that spells "<unk>" is a lookalike.
            if token != "<unk>" or token in surface:
                return True
        return False

    def _guarded_tokenizer(self) -> tuple[Tokenizer, dict[int, int]]:
        """The same pipeline with the special pieces of the model renamed (built on first need), and
        the map from its added-token ids back to ours."""
        if self._guarded is None:
            data = json.loads(self._tokenizer.to_str())
            vocab = data["model"]["vocab"]
            for index in self._fixed_pieces():
                if isinstance(vocab, list) and 0 <= index < len(vocab):
                    vocab[index][0] = self._UNMATCHABLE + vocab[index][0]
            guarded = native(self._what, Tokenizer.from_str, json.dumps(data))
            remap = {}
            for index, token in self._fixed_pieces().items():
                new = guarded.token_to_id(token)
                if new is not None and new != index:
                    remap[new] = index
            self._guarded = (guarded, remap)
        return self._guarded

    def _write_model_files(self, directory: Path) -> None:
        atomic_write_text(directory / TOKENIZER_FILE, self._tokenizer.to_str())
        if self._model_proto is not None:
            atomic_write_bytes(directory / VOCAB_FILE, self._model_proto)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides) -> XLMRobertaTokenizerFast:
        """Load from a directory holding ``tokenizer.json`` and/or ``sentencepiece.bpe.model``."""
        directory = Path(directory)
        kwargs = cls._read_config(directory)
        files = {
            name: directory / name for name in (TOKENIZER_FILE, VOCAB_FILE) if (directory / name).is_file()
        }
        if not files:
            raise FileNotFoundError(f"{directory} has neither {TOKENIZER_FILE} nor {VOCAB_FILE}")
        kwargs.update(vocab_file=files.get(VOCAB_FILE), tokenizer_file=files.get(TOKENIZER_FILE))
        return cls(**{**kwargs, **overrides})


def _load_tokenizer_file(path: str | os.PathLike) -> Tokenizer:
    """A `tokenizer.json`, checked in Python (size, UTF-8, nesting, a model with a vocabulary) before
    `tokenizers` parses it, and whatever `tokenizers` still refuses as a one-line `TokenizerError`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer file {path!r} does not exist")
    what = f"tokenizer file {path!r}"
    raw = read_tokenizer_file(path)
    data = parse_json(raw, what, TokenizerError)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), (list, dict)):
        raise TokenizerError(f"{what} is not a tokenizer.json (no model with a vocabulary)")
    if model.get("type", "Unigram") != "Unigram":
        raise TokenizerError(f"{what} holds a {short(model.get('type'), 20)} model; XLM-R's is Unigram")
    _check_precompiled_maps(data.get("normalizer"), what)
    return native(what, Tokenizer.from_str, raw.decode("utf-8"))


def _check_precompiled_maps(normalizer, what: str) -> None:
    """Every precompiled character map in a normalizer (nested in sequences too), checked as the
    SentencePiece one is, before `tokenizers` trusts its sizes."""
    stack = [normalizer]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("type") == "Precompiled":
                encoded = item.get("precompiled_charsmap")
                if not isinstance(encoded, str):
                    raise TokenizerError(f"{what}: a Precompiled normalizer without a precompiled_charsmap")
                try:
                    charsmap = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    raise TokenizerError(f"{what}: its precompiled_charsmap is not base64") from None
                check_charsmap(charsmap, what)
            stack.extend(item.values())
