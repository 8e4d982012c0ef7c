"""Turn an XLM-R SentencePiece model into the equivalent `tokenizers` pipeline.

The pipeline reproduces what `sentencepiece` does with an `nmt_nfkc` unigram model:

* normalizer: the model's own precompiled character map, then trailing spaces removed and runs of
  spaces collapsed (SentencePiece's ``remove_extra_whitespaces``);
* pre-tokenizer: Metaspace (spaces become ``▁``, a ``▁`` is prepended to every text);
* model: Unigram with the model's pieces and scores, laid out in XLM-R ids (``<s> <pad> </s> <unk>``,
  the SentencePiece pieces from id 3 on shifted by one, ``<mask>`` last);
* post-processor: ``<s> A </s>`` and ``<s> A </s></s> B </s>``.

Trailing whitespace is removed with a regex on ``" "`` only, not with a Unicode ``Strip``: after the
character map the only whitespace SentencePiece strips is the plain space, and a trailing U+0085 or
U+2028 (kept by the character map) is a real piece to it.

The model file is read with the `sentencepiece` processor's own accessors; the few fields it does not
expose (the precompiled character map, the model type) are read straight from the protobuf wire format,
so the `protobuf` package is not needed.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .errors import reason, short
from .tokenization_base import TokenizerError, native, read_tokenizer_file

SPIECE_UNDERLINE = "▁"
# The fairseq layout XLM-R uses; SentencePiece's own <unk>, <s>, </s> (ids 0, 1, 2) are replaced by these.
LEADING_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
UNIGRAM = 1
# A SentencePiece model of the real XLM-R vocabulary is 5 MB; far larger files are no models.
MAX_MODEL_BYTES = 256_000_000


@dataclass
class SentencePieceModel:
    """What the conversion needs from a SentencePiece model file."""

    pieces: list[tuple[str, float]]
    precompiled_charsmap: bytes
    model_type: int
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _spans(data: bytes) -> list[tuple[int, int, object]]:
    """Top-level fields of a protobuf message as (field number, start offset, raw value)."""
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf message")
        out.append((number, start, value))
    return out


def _fields(data: bytes) -> dict[int, list]:
    """Top-level fields of a protobuf message: field number -> list of raw values (int or bytes)."""
    out: dict[int, list] = {}
    for number, _, value in _spans(data):
        out.setdefault(number, []).append(value)
    return out


def _message(data: bytes, number: int) -> bytes:
    """Embedded message `number` of a serialized message, merged as protobuf merges repeats (by
    concatenation); occurrences with another wire type are unknown fields to protobuf, and skipped."""
    return b"".join(value for value in _fields(data).get(number, []) if isinstance(value, bytes))


def _scalar(data: bytes, number: int, default):
    """The last varint value of field `number` (protobuf's rule for repeated scalars), else `default`."""
    values = [value for value in _fields(data).get(number, []) if isinstance(value, int)]
    return values[-1] if values else default


def _without_fields(data: bytes, drop: set[int]) -> bytes:
    spans = _spans(data)
    ends = [start for _, start, _ in spans[1:]] + [len(data)]
    return b"".join(data[start:end] for (number, start, _), end in zip(spans, ends) if number not in drop)


def _length_delimited(number: int, payload: bytes) -> bytes:
    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def without_character_map(model_proto: bytes) -> bytes:
    """The same serialized model with an identity character map (whitespace handling kept).

    The slow tokenizer feeds SentencePiece text already normalized by the `tokenizers` character-map
    normalizer (see `tokenization`), so SentencePiece must not apply the map a second time.
    """
    spec = _message(model_proto, 3)
    # NormalizerSpec: 1 name, 2 precompiled_charsmap, 6 normalization_rule_tsv.
    spec = _length_delimited(1, b"identity") + _without_fields(spec, {1, 2, 6})
    return _without_fields(model_proto, {3}) + _length_delimited(3, spec)


def read_model_file(path: str | os.PathLike) -> bytes:
    """The bytes of a SentencePiece model file, with a clear error when it is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model file {os.fspath(path)!r} does not exist")
    return read_tokenizer_file(path)


def precompiled_charsmap(model_proto: bytes, what: str = "the SentencePiece model") -> bytes:
    """The normalizer's precompiled character map of a serialized model (empty when it has none),
    checked so that no native library is handed a map whose sizes point outside it."""
    try:
        charsmaps = [
            value for value in _fields(_message(model_proto, 3)).get(2, []) if isinstance(value, bytes)
        ]
    except (ValueError, IndexError, TypeError) as err:
        raise TokenizerError(f"{what} is not a valid SentencePiece model ({err})") from None
    for charsmap in charsmaps:  # every one: a parser may take any of them
        check_charsmap(charsmap, what)
    charsmap = charsmaps[-1] if charsmaps else b""
    return charsmap


def check_charsmap(charsmap: bytes, what: str) -> None:
    """A precompiled character map is a 4-byte trie size, the double-array trie (4-byte units), then
    the replacement strings. Native readers trust the size: `tokenizers` allocates it up front (a
    corrupt size was a multi-GB allocation and an abort), so it is checked here."""
    if not charsmap:
        return
    if len(charsmap) < 8:
        raise TokenizerError(f"{what}: its precompiled character map is truncated ({len(charsmap)} bytes)")
    (trie_size,) = struct.unpack("<I", charsmap[:4])
    if trie_size == 0 or trie_size % 4 or trie_size > len(charsmap) - 4:
        raise TokenizerError(
            f"{what}: its precompiled character map is corrupt (a trie of {trie_size} bytes in a map "
            f"of {len(charsmap)})"
        )


def load_processor(
    source: str | os.PathLike | bytes, what: str | None = None, **sp_model_kwargs
) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model from a path or serialized bytes, failing with a message naming it."""
    if not isinstance(source, bytes):
        what = f"SentencePiece model file {os.fspath(source)!r}"
        source = read_model_file(source)
    what = what or "the serialized SentencePiece model"
    precompiled_charsmap(source, what)  # the framing and the character map, before native code
    _check_pieces(source, what)
    processor = native(what, spm.SentencePieceProcessor, **sp_model_kwargs)
    try:
        processor.LoadFromSerializedProto(source)
    except (OSError, RuntimeError, TypeError, ValueError) as err:
        raise TokenizerError(f"{what} is not a valid SentencePiece model ({reason(err)})") from None
    check_xlmr_layout(processor, what)
    return processor


def _check_pieces(model_proto: bytes, what: str) -> None:
    """Every piece (ModelProto field 1, its field 1) must be UTF-8: SentencePiece keeps any bytes,
    and its Python wrapper fails with a UnicodeDecodeError only when the piece is read."""
    try:
        for piece in _fields(model_proto).get(1, []):
            if not isinstance(piece, bytes):
                continue
            for text in _fields(piece).get(1, []):
                if isinstance(text, bytes):
                    text.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenizerError(f"{what} holds a piece that is not UTF-8 text") from None
    except (ValueError, IndexError, TypeError) as err:
        raise TokenizerError(f"{what} is not a valid SentencePiece model ({err})") from None


def check_xlmr_layout(processor: spm.SentencePieceProcessor, what: str) -> None:
    """XLM-R shifts ids by one assuming SentencePiece's <unk>, <s>, </s> sit at ids 0, 1, 2."""
    if len(processor) < 4 or not (
        processor.IsUnknown(0) and processor.IsControl(1) and processor.IsControl(2)
    ):
        raise TokenizerError(
            f"{what} does not have the layout XLM-R needs: <unk>, <s>, </s> at ids 0, 1, 2 "
            "(train it with unk_id=0, bos_id=1, eos_id=2, pad_id=-1)"
        )


def read_sentencepiece_model(processor: spm.SentencePieceProcessor) -> SentencePieceModel:
    """Pieces, scores and normalizer settings of a loaded SentencePiece model."""
    proto = processor.serialized_model_proto()
    trainer, normalizer = _message(proto, 2), _message(proto, 3)
    pieces = [(processor.IdToPiece(i), processor.GetScore(i)) for i in range(len(processor))]
    return SentencePieceModel(
        pieces=pieces,
        precompiled_charsmap=precompiled_charsmap(proto),
        model_type=_scalar(trainer, 3, UNIGRAM),
        add_dummy_prefix=bool(_scalar(normalizer, 3, 1)),
        remove_extra_whitespaces=bool(_scalar(normalizer, 4, 1)),
    )


def special_added_tokens(mask_token: str = "<mask>") -> list[AddedToken]:
    """The five XLM-R special tokens as `tokenizers` added tokens; ``<mask>`` eats the spaces before it."""
    tokens = [AddedToken(t, normalized=False, special=True) for t in LEADING_SPECIALS]
    return tokens + [AddedToken(mask_token, lstrip=True, normalized=False, special=True)]


def build_normalizer(charsmap: bytes, remove_extra_whitespaces: bool = True):
    """The normalizer: precompiled character map, then SentencePiece's whitespace clean-up."""
    check_charsmap(charsmap, "the SentencePiece model")
    steps = [native("the SentencePiece model", normalizers.Precompiled, charsmap)] if charsmap else []
    if remove_extra_whitespaces:
        steps += [
            normalizers.Replace(Regex(" +\\z"), ""),
            normalizers.Replace(Regex(" {2,}"), SPIECE_UNDERLINE),
        ]
    return normalizers.Sequence(steps)


def check_mask_token(processor: spm.SentencePieceProcessor, mask_token: str, what: str) -> None:
    """The mask token gets the id after SentencePiece's pieces; a piece of the same spelling would
    make one string two ids (and the fast tokenizer's vocabulary one entry shorter)."""
    if processor.PieceToId(mask_token) != processor.unk_id() or mask_token == processor.IdToPiece(
        processor.unk_id()
    ):
        raise TokenizerError(
            f"mask_token {short(mask_token, 40)} is a piece of {what}; "
            "XLM-R's mask token is a token of its own"
        )


def convert_sentencepiece_to_tokenizer(
    processor: spm.SentencePieceProcessor, mask_token: str = "<mask>"
) -> Tokenizer:
    """Build the `tokenizers` pipeline equivalent to an XLM-R SentencePiece model."""
    check_mask_token(processor, mask_token, "the SentencePiece model")
    model = read_sentencepiece_model(processor)
    if model.model_type != UNIGRAM:
        raise TokenizerError(
            f"XLM-R uses a unigram SentencePiece model; this one has model type {model.model_type}"
        )
    vocab = [(token, 0.0) for token in LEADING_SPECIALS] + model.pieces[3:] + [(mask_token, 0.0)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tokenizer.normalizer = build_normalizer(model.precompiled_charsmap, model.remove_extra_whitespaces)
    scheme = "always" if model.add_dummy_prefix else "never"
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme)
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme=scheme)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer.add_special_tokens(special_added_tokens(mask_token))
    return tokenizer
