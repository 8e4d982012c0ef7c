"""The XLM-R tokenizer on the `tokenizers` library (the "fast" tokenizer).

Built from a ``tokenizer.json`` or converted on the fly from the SentencePiece model
(`sentencepiece_conversion`). `tokenizers` only segments text into ids; special tokens, truncation,
overflow and padding are the shared code of `tokenization_base`, so this tokenizer and the slow one
give the same ids on every text (see `tokenization` for the choices made where the reference's slow
and fast disagree). A ``tokenizer.json`` is used as it is: the published XLM-R file, written by an
older converter, keeps trailing whitespace as a ``▁`` token, exactly as the reference does with it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import Tokenizer

from ._atomic import atomic_write_bytes, atomic_write_text
from .sentencepiece_conversion import (
    convert_sentencepiece_to_tokenizer,
    load_processor,
    read_model_file,
    special_added_tokens,
)
from .tokenization_base import TOKENIZER_FILE, VOCAB_FILE, Encoded, XLMRobertaTokenizerBase

__all__ = ["XLMRobertaTokenizerFast"]


class _FastEncoded(Encoded):
    """Ids read at once; offsets and word ids only when someone asks for them."""

    def __init__(self, encoding):
        self.ids = encoding.ids
        self._encoding = encoding

    @property
    def offsets(self):
        return self._encoding.offsets

    @property
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
        kwargs.pop("sp_model_kwargs", None)  # a slow-tokenizer setting found in shared config files
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
        self.vocab_file = None if vocab_file is None else os.fspath(vocab_file)
        self._model_proto = None if vocab_file is None else read_model_file(vocab_file)
        if tokenizer_file is not None:
            self._tokenizer = _load_tokenizer_file(tokenizer_file)
        elif self._model_proto is not None:
            processor = load_processor(self._model_proto, f"SentencePiece model file {self.vocab_file!r}")
            self._tokenizer = convert_sentencepiece_to_tokenizer(processor, self.mask_token)
        else:
            raise ValueError("XLMRobertaTokenizerFast needs a tokenizer_file or a vocab_file")
        # Truncation and padding are ours; <mask> eats the spaces before it whatever the file says.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._tokenizer.add_special_tokens(special_added_tokens(self.mask_token))
        # Asking `tokenizers` for the size builds the whole vocabulary; decode checks it per id.
        self._vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)

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
        return self._tokenizer.token_to_id(self.unk_token) if index is None else index

    def _convert_id_to_token(self, index: int) -> str:
        return self._tokenizer.id_to_token(index)

    def _check_offsets_supported(self) -> None:
        pass

    def _encode_texts(self, texts: list[str], with_offsets: bool = False) -> list[Encoded]:
        # encode_batch_fast would skip the offsets but also the word ids, which word_ids() needs.
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [_FastEncoded(encoding) for encoding in encodings]

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
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer file {path!r} does not exist")
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # tokenizers raises a bare Exception for unreadable files
        raise ValueError(f"{path!r} is not a valid tokenizer.json ({err})") from err
