"""What both XLM-R tokenizers share: the call (batches, pairs, truncation, padding, tensors), decoding,
special tokens, and the tokenizer files of a checkpoint directory.

A tokenizer subclass only turns texts into ids without special tokens (`_encode_texts`) and maps
single tokens and ids; everything else is here, once, so the slow and the fast tokenizer cannot
drift apart.

Truncation and overflow follow the reference *fast* tokenizer wherever the reference's slow and fast
disagree (see `tokenization` for the list): the longest-first split of a pair, the overflowing windows
returned as extra rows with ``overflow_to_sample_mapping``, and an error when a strategy cannot reach
``max_length``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ._atomic import atomic_write_text, staged_directory
from .errors import OneLineError, reason, short
from .json_text import parse_json
from .pretrained import require_directory
from .tokenizer_limits import directory_limit

VOCAB_FILE = "sentencepiece.bpe.model"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
DEFAULT_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}
# The reference's "no limit" default for model_max_length.
VERY_LARGE_INTEGER = int(1e30)
# SentencePiece's fixed pieces, which XLM-R lays out at ids 0-3 (the mask token comes last).
LEADING_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
# Tokenizer files larger than this are no tokenizer files (the real XLM-R tokenizer.json is 17 MB).
MAX_TOKENIZER_FILE_BYTES = 256_000_000
MAX_SPECIAL_TOKEN_LENGTH = 100
# Overflowing windows of a pair are every window of one text with every window of the other: two
# long texts could ask for billions of rows. One call gives at most this many.
MAX_OVERFLOW_ROWS = 100_000
_SURROGATE = re.compile("[\ud800-\udfff]")


class TokenizerError(OneLineError, ValueError):
    """A tokenizer file that cannot be used, or an input the tokenizer cannot encode or decode."""


def native(what: str, call, *args, **kwargs):
    """`call(*args, **kwargs)` into a native tokenizer library, its failures as one-line `TokenizerError`.

    `tokenizers` raises bare `Exception`s, and a Rust panic surfaces as pyo3's `PanicException`,
    which derives from `BaseException` and so passes every `except Exception`.
    """
    try:
        return call(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
        raise
    except TokenizerError:
        raise
    except BaseException as error:  # noqa: BLE001 - the panic above is a BaseException
        raise TokenizerError(f"{what}: {type(error).__name__}: {reason(error, 160)}") from None


def check_text(text: str, where: str) -> str:
    """`text` when it is a string UTF-8 can encode; lone surrogates (from broken decoding) are refused."""
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, not {type(text).__name__} ({short(text, 60)})")
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found:
            raise TokenizerError(
                f"{where} holds a lone surrogate U+{ord(found.group()):04X} at position {found.start()}, "
                "which is not text (decode the input with errors='replace')"
            )
    return text


TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
TENSOR_KEYS = (
    "input_ids",
    "token_type_ids",
    "attention_mask",
    "special_tokens_mask",
    "offset_mapping",
    "length",
    "overflow_to_sample_mapping",
)


@dataclass
class Encoded:
    """One text as ids without special tokens; offsets and word ids when the tokenizer knows them."""

    ids: list[int]
    offsets: list[tuple[int, int]] | None = None
    word_ids: list[int | None] | None = None


@dataclass
class _Row:
    """How one output row was built, kept so word ids and sequence ids can be derived on demand."""

    first: Encoded
    first_span: tuple[int, int]
    second: Encoded | None = None
    second_span: tuple[int, int] = (0, 0)
    specials: bool = True
    pad: int = 0
    pad_left: bool = False
    cache: dict = field(default_factory=dict)

    def _layout(self, first_values, second_values, special, pad_value):
        a0, a1 = self.first_span
        body = list(first_values[a0:a1])
        if self.specials:
            body = [special] + body + [special]
        if self.second is not None:
            b0, b1 = self.second_span
            tail = list(second_values[b0:b1])
            body += [special] + tail + [special] if self.specials else tail
        padding = [pad_value] * self.pad
        return padding + body if self.pad_left else body + padding

    def word_ids(self):
        if self.first.word_ids is None:
            raise ValueError("word ids are only known to the fast tokenizer (XLMRobertaTokenizerFast)")
        second = self.second.word_ids if self.second is not None else None
        return self._layout(self.first.word_ids, second, None, None)

    def sequence_ids(self):
        a0, a1 = self.first_span
        b0, b1 = self.second_span
        return self._layout([0] * a1, [1] * b1, None, None)


class BatchEncoding(dict):
    """The result of calling a tokenizer: a dict (``enc["input_ids"]``) with attribute access
    (``enc.input_ids``), plus ``word_ids(i)`` and ``sequence_ids(i)`` for each row."""

    def __init__(self, data=None, rows: list[_Row] | None = None, tensor_type: str | None = None):
        super().__init__(data or {})
        self._rows = rows or []
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self):
        return {"data": dict(self), "rows": self._rows}

    def __setstate__(self, state):
        self.update(state["data"])
        self._rows = state["rows"]

    @property
    def n_sequences(self) -> int | None:
        """1 or 2 (pairs) for the rows of this encoding."""
        return None if not self._rows else (2 if self._rows[0].second is not None else 1)

    def _row(self, batch_index: int) -> _Row:
        if not self._rows:
            raise ValueError("this BatchEncoding was not produced by a tokenizer call")
        return self._rows[batch_index]

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row `batch_index`, the index of the word it comes from (None: special/pad)."""
        return self._row(batch_index).word_ids()

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, 0 (first text), 1 (second text) or None (special token or padding)."""
        return self._row(batch_index).sequence_ids()

    def convert_to_tensors(self, tensor_type: str) -> BatchEncoding:
        """Turn the lists into "np", "pt", "tf" or "jax" arrays (importing that framework only now)."""
        convert = _tensor_converter(tensor_type)
        for key in TENSOR_KEYS:
            if key in self:
                value = self[key]
                if isinstance(value, list) and value and isinstance(value[0], list):
                    lengths = {len(row) for row in value}
                    if len(lengths) > 1:
                        raise ValueError(
                            f"cannot make a tensor of {key!r}: its rows have lengths {sorted(lengths)}; "
                            "pass padding=True (and truncation=True) to give them one length"
                        )
                self[key] = convert(value)
        return self

    def to(self, device) -> BatchEncoding:
        """Move PyTorch tensors to `device` (a no-op for other values)."""
        for key, value in self.items():
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device)
        return self


def _tensor_converter(tensor_type: str):
    import numpy as np

    if tensor_type == "np":
        return lambda value: np.asarray(value, dtype=np.int64)
    if tensor_type == "pt":
        import torch

        return lambda value: torch.tensor(np.asarray(value, dtype=np.int64))
    if tensor_type == "tf":
        import tensorflow as tf

        return lambda value: tf.constant(np.asarray(value, dtype=np.int64))
    if tensor_type == "jax":
        import jax.numpy as jnp

        return lambda value: jnp.asarray(np.asarray(value, dtype=np.int64))
    raise ValueError(f"return_tensors must be 'np', 'pt', 'tf' or 'jax', not {short(tensor_type, 40)}")


def _windows(length: int, keep: int, stride: int, side: str, overflow: bool = True) -> list[tuple[int, int]]:
    """Spans of a sequence cut to `keep` tokens: the kept one first, then (with `overflow`) the
    overflowing windows, consecutive windows sharing `stride` tokens (the reference fast's layout)."""
    if keep >= length:
        return [(0, length)]
    if stride >= keep and keep:
        raise ValueError(f"stride ({stride}) must be smaller than the tokens kept per window ({keep})")
    if not overflow:
        return [(0, keep) if side == "right" else (length - keep, length)]
    if keep == 0:
        raise TokenizerError(
            f"max_length leaves no room for text beside the special tokens, so the {length} overflowing "
            "tokens cannot be returned in windows (return_overflowing_tokens=True): raise max_length"
        )
    step = keep - stride
    spans = []
    if side == "right":
        for start in range(0, length, step):
            spans.append((start, min(start + keep, length)))
            if start + keep >= length:
                break
    else:
        for stop in range(length, 0, -step):
            spans.append((max(stop - keep, 0), stop))
            if stop - keep <= 0:
                break
    return spans


def _pair_budget(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Longest-first split of `budget` tokens between two sequences (the reference fast's rule:
    the shorter keeps all it can, an even split otherwise, the odd token to the second)."""
    short, long_ = sorted((n1, n2))
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (short, long_) if n1 <= n2 else (long_, short)


class XLMRobertaTokenizerBase:
    """Call machinery shared by `XLMRobertaTokenizer` and `XLMRobertaTokenizerFast`."""

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length: int | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        **kwargs,
    ):
        tokens = dict(
            bos_token=bos_token,
            eos_token=eos_token,
            sep_token=sep_token,
            cls_token=cls_token,
            unk_token=unk_token,
            pad_token=pad_token,
            mask_token=mask_token,
        )
        for name, value in tokens.items():
            value = _token_content(value)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
            if not value or len(value) > MAX_SPECIAL_TOKEN_LENGTH or value != value.strip():
                raise TokenizerError(
                    f"{name} must be a non-empty string of at most {MAX_SPECIAL_TOKEN_LENGTH} characters "
                    f"without surrounding spaces, got {short(value, 60)}"
                )
            check_text(value, name)
            setattr(self, name, value)
        if self.mask_token in LEADING_SPECIAL_TOKENS:
            raise TokenizerError(
                f"mask_token {short(self.mask_token, 40)} is one of XLM-R's fixed tokens "
                f"{LEADING_SPECIAL_TOKENS} (ids 0-3); the mask token has an id of its own"
            )
        self.model_max_length = _max_length("model_max_length", model_max_length)
        self.padding_side = _check_side("padding_side", padding_side)
        self.truncation_side = _check_side("truncation_side", truncation_side)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.init_kwargs = kwargs

    # ---- vocabulary -------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def _convert_token_to_id(self, token: str) -> int:
        raise NotImplementedError

    def _convert_id_to_token(self, index: int) -> str:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        """Every token and its id."""
        return {self._convert_id_to_token(i): i for i in range(self.vocab_size)}

    def convert_tokens_to_ids(self, tokens):
        """Id of a token, or ids of a list of tokens (unknown ones map to `unk_token_id`)."""
        if isinstance(tokens, str):
            return self._convert_token_to_id(tokens)
        return [self._convert_token_to_id(token) for token in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """Token of an id, or tokens of a list of ids."""
        if isinstance(ids, int):
            return self._convert_id_to_token(self._check_id(ids))
        special = self.all_special_ids if skip_special_tokens else ()
        return [self._convert_id_to_token(i) for i in self._check_ids(ids) if i not in special]

    def _check_id(self, index) -> int:
        # Integers of any kind (numpy's too); a float is an error even when integral, as in the
        # reference fast, rather than silently cut (int(2.7) == 2) or an OverflowError (inf).
        if not isinstance(index, numbers.Integral):
            raise TypeError(f"token ids must be integers, got {short(index, 40)} ({type(index).__name__})")
        index = int(index)
        if not 0 <= index < self.vocab_size:
            raise TokenizerError(
                f"token id {short(index, 40)} is out of range: this vocabulary has ids 0 to "
                f"{self.vocab_size - 1}"
            )
        return index

    def _check_ids(self, ids) -> list[int]:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, numbers.Integral):
            ids = [ids]
        if not isinstance(ids, (list, tuple, range)):
            raise TypeError(f"token ids must be a list of integers, got {type(ids).__name__}")
        return [self._check_id(i) for i in ids]

    def _check_special_tokens_known(self) -> None:
        """Every special token must be one of XLM-R's five or a token of the vocabulary: one the
        vocabulary lacks would be `<unk>` in one tokenizer and a new id in the other."""
        fixed = (*LEADING_SPECIAL_TOKENS, self.mask_token)
        unk = self._convert_token_to_id("<unk>")
        for name in SPECIAL_TOKEN_NAMES:
            token = getattr(self, name)
            if token not in fixed and self._convert_token_to_id(token) == unk:
                raise TokenizerError(f"{name} {short(token, 60)} is not a token of this vocabulary")

    @property
    def all_special_tokens(self) -> list[str]:
        """The distinct special tokens (``<s>``, ``</s>``, ``<unk>``, ``<pad>``, ``<mask>``)."""
        return list(dict.fromkeys(getattr(self, name) for name in SPECIAL_TOKEN_NAMES))

    @property
    def _text_special_tokens(self) -> list[str]:
        """The strings kept whole when written in a text: XLM-R's five fixed tokens (they have their
        ids whatever the special-token map says) and every special token of the map."""
        return list(dict.fromkeys([*LEADING_SPECIAL_TOKENS, self.mask_token, *self.all_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        return [self._convert_token_to_id(token) for token in self.all_special_tokens]

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES}

    def __getattr__(self, name):
        # bos_token_id, cls_token_id, ... follow their token (which may be changed after construction).
        if name.endswith("_token_id") and name[: -len("_id")] in SPECIAL_TOKEN_NAMES:
            return self._convert_token_to_id(getattr(self, name[: -len("_id")]))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- special-token layout ---------------------------------------------------------------------

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 4 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """``<s> A </s>`` or ``<s> A </s></s> B </s>``."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + list(token_ids_0) + sep
        return cls + list(token_ids_0) + sep + sep + list(token_ids_1) + sep

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 where `build_inputs_with_special_tokens` puts a special token, 0 elsewhere."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("with already_has_special_tokens=True pass one list holding the whole input")
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1, 1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ):
        """All zeros: XLM-R does not use token types."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    # ---- encoding ----------------------------------------------------------------------------------

    def _encode_texts(self, texts: list[str], with_offsets: bool) -> list[Encoded]:
        """Ids (no special tokens) of each text; offsets and word ids when `with_offsets` (fast only)."""
        raise NotImplementedError

    def _encode_words(self, batch: list[list[str]], with_offsets: bool) -> list[Encoded]:
        """Encode texts given as lists of words: each word tokenized on its own, word ids = word index."""
        flat = [word for words in batch for word in words]
        encoded = iter(self._encode_texts(flat, with_offsets))
        out = []
        for words in batch:
            ids, offsets, word_ids = [], [], []
            for index, _ in enumerate(words):
                piece = next(encoded)
                ids += piece.ids
                word_ids += [index] * len(piece.ids)
                if with_offsets:
                    offsets += piece.offsets
            out.append(Encoded(ids, offsets if with_offsets else None, word_ids))
        return out

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The tokens of `text` (special tokens written in the text are kept whole)."""
        return self.convert_ids_to_tokens(self.encode(text, pair, add_special_tokens=add_special_tokens))

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """The ids of `text` (and `text_pair`), special tokens included unless told otherwise."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def encode_plus(self, text, text_pair=None, **kwargs) -> BatchEncoding:
        return self(text, text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs) -> BatchEncoding:
        """Encode a list of texts or of (text, text_pair) tuples."""
        batch = list(batch_text_or_text_pairs)
        if batch and isinstance(batch[0], tuple):
            return self([a for a, _ in batch], [b for _, b in batch], **kwargs)
        return self(batch, **kwargs)

    def __call__(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Encode a text, a pair, a batch of texts or a batch of pairs.

        Arguments and their defaults follow the reference tokenizers: `padding` (True/"longest",
        "max_length", False), `truncation` (True/"longest_first", "only_first", "only_second", False),
        `max_length`, `stride` (overlap of overflowing windows), `return_tensors` ("np", "pt", "tf", "jax").
        """
        batched, first = self._as_batch(text, "text", is_split_into_words)
        second = None
        if text_pair is not None:
            pair_batched, second = self._as_batch(text_pair, "text_pair", is_split_into_words)
            if pair_batched != batched or len(second) != len(first):
                raise ValueError(
                    "text and text_pair must both be single inputs or batches of the same length"
                )
        padding, truncation, max_length = self._strategies(padding, truncation, max_length)
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
            raise ValueError(f"stride must be a non-negative integer, not {short(stride, 40)}")
        if pad_to_multiple_of is not None and (
            not isinstance(pad_to_multiple_of, int)
            or isinstance(pad_to_multiple_of, bool)
            or pad_to_multiple_of < 1
        ):
            raise ValueError(
                f"pad_to_multiple_of must be a positive integer, not {short(pad_to_multiple_of, 40)}"
            )
        padding_side = _check_side("padding_side", padding_side or self.padding_side)
        if return_offsets_mapping:
            self._check_offsets_supported()

        encode = self._encode_words if is_split_into_words else self._encode_texts
        encoded = encode(first + (second or []), return_offsets_mapping)
        firsts, seconds = encoded[: len(first)], (encoded[len(first) :] if second is not None else None)

        rows, sample_of_row = [], []
        for index, a in enumerate(firsts):
            b = seconds[index] if seconds is not None else None
            spans = self._truncated_spans(
                a, b, truncation, max_length, stride, add_special_tokens, return_overflowing_tokens
            )
            if len(rows) + len(spans) > MAX_OVERFLOW_ROWS:
                raise TokenizerError(
                    f"return_overflowing_tokens would make more than {MAX_OVERFLOW_ROWS} rows for this "
                    "batch: raise max_length or stride, or encode it in parts"
                )
            for span_a, span_b in spans:
                rows.append(_Row(a, span_a, b, span_b, add_special_tokens))
                sample_of_row.append(index)

        data = self._assemble(
            rows,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            token_type_ids=bool(return_token_type_ids),
            attention_mask=return_attention_mask is not False,
            special_tokens_mask=return_special_tokens_mask,
            offsets=return_offsets_mapping,
            length=return_length,
        )
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_of_row
        elif not batched and return_tensors is None:
            # A single input gives flat lists; tensors always keep the batch dimension.
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, rows, tensor_type=return_tensors)

    def _check_offsets_supported(self) -> None:
        raise NotImplementedError(
            "return_offsets_mapping needs the fast tokenizer: use XLMRobertaTokenizerFast"
        )

    @staticmethod
    def _as_batch(value, name: str, split_into_words: bool):
        """(was it a batch?, list of inputs), with a clear error for anything that is not text."""

        def check_words(item, where):
            if not isinstance(item, (list, tuple)):
                raise TypeError(f"{where} must be a list of words when is_split_into_words=True")
            return [check_text(word, f"each word of {where}") for word in item]

        if split_into_words:
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
                return True, [check_words(item, f"each element of {name}") for item in value]
            return False, [check_words(value, name)]
        if isinstance(value, str):
            return False, [check_text(value, name)]
        if isinstance(value, (list, tuple)):
            return True, [check_text(item, f"each element of {name}") for item in value]
        raise TypeError(
            f"{name} must be a string or a list of strings, not {type(value).__name__} ({short(value, 60)})"
        )

    def _strategies(self, padding, truncation, max_length):
        if padding is True:
            padding = "longest"
        if padding not in (False, None, "longest", "max_length", "do_not_pad"):
            raise ValueError(
                f"padding must be True, False, 'longest' or 'max_length', not {short(padding, 40)}"
            )
        padding = None if padding in (False, None, "do_not_pad") else padding
        if truncation is None:
            # As in the reference: a max_length alone asks for truncation.
            truncation = "longest_first" if max_length is not None else False
        if truncation is True:
            truncation = "longest_first"
        if truncation not in (False, "do_not_truncate", *TRUNCATION_STRATEGIES):
            raise ValueError(
                "truncation must be True, False, 'longest_first', 'only_first' or 'only_second', "
                f"not {short(truncation, 40)}"
            )
        truncation = None if truncation in (False, "do_not_truncate") else truncation
        if max_length is None and (truncation or padding == "max_length"):
            if self.model_max_length >= VERY_LARGE_INTEGER:
                if padding == "max_length":
                    raise ValueError(
                        "padding='max_length' needs max_length (this tokenizer has no model_max_length)"
                    )
                truncation = None
            else:
                max_length = self.model_max_length
        if max_length is not None and (
            not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 0
        ):
            raise ValueError(f"max_length must be a non-negative integer, not {short(max_length, 40)}")
        return padding, truncation, max_length

    def _truncated_spans(
        self, a: Encoded, b: Encoded | None, strategy, max_length, stride, specials, overflow=True
    ):
        """The (span of a, span of b) of every output row of one example, the kept one first
        (only that one unless `overflow`)."""
        n1, n2 = len(a.ids), (len(b.ids) if b is not None else 0)
        if strategy is None or max_length is None:
            return [((0, n1), (0, n2))]
        n_special = self.num_special_tokens_to_add(b is not None) if specials else 0
        if max_length < n_special:
            raise ValueError(
                f"max_length={max_length} is smaller than the {n_special} special tokens this input needs "
                f"({'<s> A </s></s> B </s>' if b is not None else '<s> A </s>'})"
            )
        budget = max_length - n_special
        side = self.truncation_side
        if n1 + n2 <= budget:
            return [((0, n1), (0, n2))]
        remove = n1 + n2 - budget
        if b is None:
            if strategy == "only_second":
                raise ValueError("truncation='only_second' needs a text_pair; this input is a single text")
            return [(span, (0, 0)) for span in _windows(n1, budget, stride, side, overflow)]
        if strategy == "longest_first":
            keep1, keep2 = _pair_budget(n1, n2, budget)
        elif strategy == "only_first":
            if n1 <= remove:
                raise ValueError(
                    f"truncation='only_first' cannot reach max_length={max_length}: {remove} tokens must go "
                    f"but the first text has {n1}; use 'longest_first' or 'only_second'"
                )
            keep1, keep2 = n1 - remove, n2
        else:
            if n2 <= remove:
                raise ValueError(
                    f"truncation='only_second' cannot reach max_length={max_length}: {remove} tokens must go "
                    f"but the second text has {n2}; use 'longest_first' or 'only_first'"
                )
            keep1, keep2 = n1, n2 - remove
        spans1 = _windows(n1, keep1, stride, side, overflow)
        spans2 = _windows(n2, keep2, stride, side, overflow)
        count = len(spans1) * len(spans2)
        if count > MAX_OVERFLOW_ROWS:  # every window of A meets every window of B
            raise TokenizerError(
                f"return_overflowing_tokens would make {count} rows of one pair ({len(spans1)} windows of "
                f"the first text times {len(spans2)} of the second), more than {MAX_OVERFLOW_ROWS}: "
                "raise max_length or stride, or truncate one text only ('only_second')"
            )
        # The reference fast's order: kept pair; each overflow of A with every window of B; kept A with
        # each overflow of B.
        rows = [(spans1[0], spans2[0])]
        for span1 in spans1[1:]:
            rows += [(span1, span2) for span2 in spans2]
        rows += [(spans1[0], span2) for span2 in spans2[1:]]
        return rows

    def _assemble(self, rows: list[_Row], *, padding, max_length, pad_to_multiple_of, padding_side, **want):
        cls, sep, pad = self.cls_token_id, self.sep_token_id, self.pad_token_id
        input_ids = []
        for row in rows:
            a0, a1 = row.first_span
            ids = row.first.ids[a0:a1]
            if row.second is not None:
                b0, b1 = row.second_span
                second = row.second.ids[b0:b1]
                ids = [cls, *ids, sep, sep, *second, sep] if row.specials else ids + second
            elif row.specials:
                ids = [cls, *ids, sep]
            input_ids.append(ids)

        target = None
        if padding == "longest":
            target = max((len(ids) for ids in input_ids), default=0)
        elif padding == "max_length":
            target = max_length
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        left = padding_side == "left"
        if target is not None:
            for row, ids in zip(rows, input_ids):
                row.pad, row.pad_left = max(target - len(ids), 0), left

        def padded(values, row, pad_value):
            if not row.pad:
                return values
            fill = [pad_value] * row.pad
            return fill + values if left else values + fill

        data = {"input_ids": [padded(ids, row, pad) for row, ids in zip(rows, input_ids)]}
        if want["token_type_ids"]:
            data["token_type_ids"] = [[0] * len(ids) for ids in data["input_ids"]]
        if want["attention_mask"]:
            data["attention_mask"] = [padded([1] * len(ids), row, 0) for row, ids in zip(rows, input_ids)]
        if want["special_tokens_mask"]:
            data["special_tokens_mask"] = [
                row._layout([0] * row.first_span[1], [0] * row.second_span[1], 1, 1) for row in rows
            ]
        if want["offsets"]:
            data["offset_mapping"] = [
                row._layout(row.first.offsets, row.second.offsets if row.second else None, (0, 0), (0, 0))
                for row in rows
            ]
        if want["length"]:
            data["length"] = [len(ids) for ids in data["input_ids"]]
        return data

    def pad(
        self,
        encoded_inputs,
        padding=True,
        max_length=None,
        pad_to_multiple_of=None,
        padding_side=None,
        return_attention_mask=None,
        return_tensors=None,
    ) -> BatchEncoding:
        """Pad already-encoded inputs (a dict of lists of ids, or a list of such dicts)."""
        if isinstance(encoded_inputs, (list, tuple)):
            encoded_inputs = {key: [item[key] for item in encoded_inputs] for key in encoded_inputs[0]}
        batch = [list(ids) for ids in encoded_inputs["input_ids"]]
        rows = [_Row(Encoded(ids), (0, len(ids)), specials=False) for ids in batch]
        padding, _, max_length = self._strategies(padding, False, max_length)
        data = self._assemble(
            rows,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=_check_side("padding_side", padding_side or self.padding_side),
            token_type_ids=False,
            attention_mask=return_attention_mask is not False,
            special_tokens_mask=False,
            offsets=False,
            length=False,
        )
        return BatchEncoding(data, rows, tensor_type=return_tensors)

    # ---- decoding ----------------------------------------------------------------------------------

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Join tokens into text: ``▁`` becomes a space, the leading space of the first token goes."""
        special = set(self.all_special_tokens)
        text = "".join(token if token in special else token.replace("▁", " ") for token in tokens)
        if tokens and tokens[0] not in special and text.startswith(" "):
            text = text[1:]
        return text

    def decode(
        self,
        token_ids,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **_,
    ) -> str:
        """The text of a list of ids (special tokens written out unless `skip_special_tokens`)."""
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(token_ids, skip_special_tokens))
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return _clean_up(text) if clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False, **kwargs) -> list[str]:
        """`decode` for each sequence of a batch."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs) for ids in sequences]

    # ---- files -------------------------------------------------------------------------------------

    def _config(self) -> dict:
        added = {
            str(self._convert_token_to_id(token)): {
                "content": token,
                "lstrip": token == self.mask_token,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for token in self.all_special_tokens
        }
        config = {"added_tokens_decoder": added, **self.special_tokens_map}
        config.update(
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            tokenizer_class=type(self).__name__,
        )
        return config

    def _write_model_files(self, directory: Path) -> None:
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write the tokenizer files into `save_directory` (all or nothing); return their paths.

        Beside a model's `config.json`, `model_max_length` is written as that model's limit when
        this tokenizer has none or a larger one (see `xlmr_core.tokenizer_limits`)."""
        config = self._config()
        limit = directory_limit(save_directory)
        if limit is not None and config["model_max_length"] > limit:
            config["model_max_length"] = limit
        with staged_directory(save_directory) as staging:
            self._write_model_files(staging)
            atomic_write_text(staging / CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False))
            mask = {
                "content": self.mask_token,
                "lstrip": True,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
            }
            special_map = {**self.special_tokens_map, "mask_token": mask}
            atomic_write_text(staging / SPECIAL_TOKENS_MAP_FILE, json.dumps(special_map, indent=2))
            names = sorted(item.name for item in staging.iterdir())
        return tuple(str(Path(save_directory) / name) for name in names)

    @staticmethod
    def _read_config(directory: Path) -> dict:
        """Keyword arguments from tokenizer_config.json and special_tokens_map.json."""
        require_directory(directory, "tokenizer directory")
        kwargs = {}
        for name in (SPECIAL_TOKENS_MAP_FILE, CONFIG_FILE):
            path = directory / name
            if path.is_file():
                data = parse_json(read_tokenizer_file(path), str(path), TokenizerError)
                if not isinstance(data, dict):
                    raise TokenizerError(f"{path} does not hold a JSON object")
                kwargs.update(data)
        kept = {name: _token_content(kwargs[name]) for name in SPECIAL_TOKEN_NAMES if name in kwargs}
        for name in (
            "model_max_length",
            "padding_side",
            "truncation_side",
            "clean_up_tokenization_spaces",
            "sp_model_kwargs",
        ):
            if kwargs.get(name) is not None:
                kept[name] = kwargs[name]
        return kept


def read_tokenizer_file(path: str | os.PathLike) -> bytes:
    """The bytes of a tokenizer file, refused when it is too large to be one."""
    size = os.path.getsize(path)
    if size > MAX_TOKENIZER_FILE_BYTES:
        raise TokenizerError(f"{os.fspath(path)}: {size} bytes is too large for a tokenizer file")
    return Path(path).read_bytes()


def _max_length(name: str, value) -> int:
    """A length limit: None (no limit) or an integer >= 0 (JSON may spell the reference's 1e30 as a float)."""
    if value is None:
        return VERY_LARGE_INTEGER
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {short(value, 40)}")
    return value


def _token_content(value):
    if isinstance(value, dict):
        return value.get("content")
    return getattr(value, "content", value)


def _check_side(name: str, side: str) -> str:
    if not isinstance(side, str) or side not in ("left", "right"):
        raise ValueError(f"{name} must be 'left' or 'right', not {short(side, 40)}")
    return side


def _clean_up(text: str) -> str:
    """Remove the spaces a word-level detokenizer would not put before punctuation and contractions."""
    for spaced, joined in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(spaced, joined)
    return text


# SentencePieceProcessor options that make sense for a loaded model (subword regularisation).
_SP_MODEL_KWARGS = {"enable_sampling": bool, "nbest_size": int, "alpha": (int, float)}


def check_sp_model_kwargs(kwargs) -> dict:
    """`sp_model_kwargs` as a dict of the SentencePiece options it may hold, or a clear error."""
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise TypeError(f"sp_model_kwargs must be a dict, not {type(kwargs).__name__}")
    for key, value in kwargs.items():
        kind = _SP_MODEL_KWARGS.get(key)
        if kind is None:
            raise TokenizerError(
                f"unknown sp_model_kwargs key {short(key, 40)}; expected {sorted(_SP_MODEL_KWARGS)}"
            )
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(
                f"sp_model_kwargs[{key!r}] must be {getattr(kind, '__name__', 'a number')}, "
                f"got {short(value, 40)}"
            )
    return dict(kwargs)
