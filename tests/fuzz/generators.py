"""Seeded generators of hostile inputs. Every function takes a `random.Random` and returns one case;
the same seed gives the same case on every machine (nothing here depends on hash randomisation)."""

from __future__ import annotations

import base64
import copy
import json
import random
import struct

import numpy as np

# ------------------------------------------------------------------ values of every type
HUGE_INTS = [10**9, 2**31, 2**32 + 1, 2**63, 2**64, 10**20, 10**30, -(2**63) - 1]
ODD_VALUES = [
    None, True, False, 0, -1, 1, 7, 0.5, -0.0, 1e-300, 1e308, float("inf"), float("-inf"), float("nan"),
    "", "1", "128", "0.02", "gelu", "x" * 5000, [], [1, 2], {}, {"a": 1}, [[[[1]]]],
]  # fmt: skip


def odd_value(rng: random.Random):
    """A value of a random JSON type, often one that breaks naive code."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(HUGE_INTS) * rng.choice([1, -1])
    if roll < 0.25:
        return nested(rng, rng.choice([3, 33, 40, 200, 600]))
    if roll < 0.35:
        return rng.randint(-5, 5000)
    return copy.deepcopy(rng.choice(ODD_VALUES))


def nested(rng: random.Random, depth: int):
    """A list or dict nested `depth` levels deep."""
    value: object = rng.choice([1, "x", None])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


# ------------------------------------------------------------------ text
_RANGES = [
    (0x20, 0x7E), (0x00, 0x1F), (0x7F, 0x9F), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF),
    (0x400, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF), (0xE00, 0xEFF), (0x1100, 0x11FF), (0x1AB0, 0x1AFF),
    (0x2000, 0x206F), (0x20D0, 0x20FF), (0x2100, 0x24FF), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3), (0xD800, 0xDFFF), (0xE000, 0xF8FF), (0xFB00, 0xFB4F), (0xFE00, 0xFE6F),
    (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF), (0x10000, 0x1FFFF), (0x1F300, 0x1FAFF), (0x20000, 0x2FFFF),
    (0x30000, 0x3FFFF), (0xE0000, 0xE01EF), (0xF0000, 0x10FFFF),
]  # fmt: skip
LOOKALIKES = [
    "<mask>", "＜mask＞", "﹤mask﹥", "＜ｍａｓｋ＞", "<MASK>", "< mask >", "<mask", "mask>", "<<mask>>",
    "<s>", "＜s＞", "＜ｓ＞", "</s>", "＜/s＞", "＜／ｓ＞", "<pad>", "＜pad＞", "<unk>", "＜unk＞",
    "＜ｕｎｋ＞",
    "\u2329mask\u232a", "<\u200bmask>", " <mask> ", "  <mask>", "<mask>\u0301", "e<s>", "</s></s>",
]  # fmt: skip
WORDS = [
    "Hello", "world", "the", "quick", "fox", "über", "Straße", "café", "naïve", "東京", "日本", "你好",
    "안녕",
    "Привет", "مرحبا", "नमस्ते", "สวัสดี", "שלום", "Γεια", "ﬁ", "①", "㍿", "™", "½", "👍🏽",
    "👨\u200d👩\u200d👧", "🇫🇷",
]  # fmt: skip
PUNCTUATION = ["!", "!!", "!!!", "!!!!", "??", "...", "---", "***", "###", "@@@", ",", ".", "'", '"']
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u2028", "\u0085", "\u200b", "\ufeff"]


def random_char(rng: random.Random, surrogates: bool) -> str:
    while True:
        low, high = rng.choice(_RANGES)
        code = rng.randint(low, high)
        if surrogates or not 0xD800 <= code <= 0xDFFF:
            return chr(code)


def text(rng: random.Random, *, surrogates: bool = True, long: bool = True) -> str:
    """A random string: characters of every plane, controls, combining marks, whitespace runs,
    words of many scripts, repeated punctuation and special-token lookalikes; now and then
    100,000 characters long, now and then holding a lone surrogate."""
    if long and rng.random() < 0.004:
        unit = text(rng, surrogates=False, long=False) or "a"
        return (unit * (100_000 // len(unit) + 1))[:100_000]
    parts = []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.35:
            parts.append(
                "".join(
                    random_char(rng, surrogates and rng.random() < 0.05) for _ in range(rng.randint(1, 6))
                )
            )
        elif roll < 0.5:
            parts.append(rng.choice(WORDS))
        elif roll < 0.62:
            parts.append(rng.choice(LOOKALIKES))
        elif roll < 0.74:
            parts.append(rng.choice(PUNCTUATION))
        elif roll < 0.86:
            parts.append(rng.choice(SPACES) * rng.randint(1, 3))
        else:
            base = random_char(rng, False)
            parts.append(base + "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(1, 8))))
    return "".join(parts)


def call_options(rng: random.Random) -> dict:
    """Keyword arguments of a tokenizer call: truncation, overflow, padding, pairs, masks."""
    options: dict = {}
    if rng.random() < 0.5:
        options["truncation"] = rng.choice([True, "longest_first", "only_first", "only_second", False])
        options["max_length"] = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 12, 20, 64])
        if rng.random() < 0.4:
            options["return_overflowing_tokens"] = True
            options["stride"] = rng.choice([0, 0, 1, 2, 5])
    if rng.random() < 0.3:
        options["padding"] = rng.choice([True, "longest", "max_length"])
        if options["padding"] == "max_length":
            options.setdefault("max_length", rng.choice([0, 4, 16]))
        options["padding_side"] = rng.choice(["left", "right"])
        if rng.random() < 0.3:
            options["pad_to_multiple_of"] = rng.choice([1, 3, 8])
    for key in ("return_special_tokens_mask", "return_length", "return_token_type_ids"):
        if rng.random() < 0.3:
            options[key] = True
    if rng.random() < 0.1:
        options["add_special_tokens"] = False
    return options


# ------------------------------------------------------------------ decode ids
def decode_ids(rng: random.Random, vocab_size: int):
    """An id list as users pass them: ints in and out of range, floats, non-finite, numpy arrays."""
    roll = rng.random()
    length = rng.randint(0, 12)
    if roll < 0.3:
        return [rng.randrange(vocab_size) for _ in range(length)]
    if roll < 0.6:
        pool = [-1, -(10**30), vocab_size, vocab_size + 1, 10**30, 2**63, 1.0, 2.5, float("inf"),
                float("nan"),
                float("-inf"), True, "3", None, [1, 2], b"\x01"]  # fmt: skip
        return [rng.choice(pool) if rng.random() < 0.4 else rng.randrange(vocab_size) for _ in range(length)]
    if roll < 0.9:
        dtype = rng.choice(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                            "float16", "float32", "float64", "bool", "complex64"])  # fmt: skip
        values = np.array([rng.randrange(min(vocab_size, 120)) for _ in range(length)]).astype(dtype)
        return values.reshape(rng.choice([(-1,), (1, -1)])) if length else values
    return rng.choice([None, 5, -5, 10**40, 3.0, "ids", {"a": 1}, [[1, 2], [3]], [], (1, 2)])


# ------------------------------------------------------------------ bytes
def mutate_bytes(rng: random.Random, data: bytes, max_edits: int = 8) -> bytes:
    """`data` with a few random byte flips, insertions, deletions, a truncation or a splice."""
    data = bytearray(data)
    for _ in range(rng.randint(1, max_edits)):
        roll = rng.random()
        if not data:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif roll < 0.45:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif roll < 0.6:
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif roll < 0.75:
            at = rng.randrange(len(data))
            del data[at : at + rng.randint(1, 64)]
        elif roll < 0.85:
            del data[rng.randrange(len(data)) :]
        else:
            at, other = rng.randrange(len(data)), rng.randrange(len(data))
            size = rng.randint(1, 256)
            data[at : at + size] = data[other : other + size]
    return bytes(data)


# ------------------------------------------------------------------ safetensors
_ST_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16", "F8_E4M3", "X", ""]


def safetensors_file(rng: random.Random, valid: bytes) -> bytes:
    """A safetensors file: `valid` mutated at the byte level, or a header built from hostile parts."""
    roll = rng.random()
    if roll < 0.35:
        return mutate_bytes(rng, valid)
    if roll < 0.45:
        return _raw_header(rng)
    if roll < 0.55:
        return safetensors_coverage(rng)
    header: dict = {}
    offset = 0
    for index in range(rng.randint(0, 4)):
        shape = [rng.randint(0, 5) for _ in range(rng.randint(0, 3))]
        dtype = "F32"
        size = int(np.prod(shape)) * 4 if shape else 4
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
        if rng.random() < 0.6:
            key = rng.choice(["dtype", "shape", "data_offsets", "extra"])
            if key == "dtype":
                entry["dtype"] = rng.choice(_ST_DTYPES + [odd_value(rng)])
            elif key == "shape":
                entry["shape"] = rng.choice(
                    [[10**20], [2**63], [-1], [1.5], ["3"], [[2]], [1] * 1000, [2**40] * 8, odd_value(rng)]
                )
            elif key == "data_offsets":
                entry["data_offsets"] = rng.choice(
                    [[0, 10**20], [size, 0], [-4, 0], [0], [0, size, 1], [0.0, float(size)], odd_value(rng)]
                )
            else:
                entry[rng.choice(["extra", "DTYPE"])] = odd_value(rng)
        name = rng.choice(
            [f"t{index}", "", "x" * 10_000, "\u0000", "roberta.embeddings.word_embeddings.weight"]
        )
        header[name] = entry
    if rng.random() < 0.3:
        header["__metadata__"] = rng.choice([{"format": "pt"}, odd_value(rng), {"a": odd_value(rng)}])
    raw = json.dumps(header, allow_nan=True).encode()
    data = bytes(offset if rng.random() < 0.8 else rng.randint(0, offset + 8))
    length = len(raw) if rng.random() < 0.9 else rng.choice([0, 1, len(raw) + 1, 2**64 - 1, 10**8 + 1])
    return struct.pack("<Q", length) + raw + data


def safetensors_coverage(rng: random.Random) -> bytes:
    """A well-formed safetensors file whose tensors do not cover the data section exactly (bytes
    before the first, holes, overlaps, trailing bytes) or whose metadata values are not strings."""
    header: dict = {}
    offset = rng.choice([0, 0, 0, 4, 8])
    for index in range(rng.randint(0, 3)):
        size = 4 * rng.randint(0, 3)
        header[f"t{index}"] = {"dtype": "F32", "shape": [size // 4], "data_offsets": [offset, offset + size]}
        offset += size + rng.choice([0, 0, 0, 4, -4 if size else 0])
    if rng.random() < 0.3:
        header["__metadata__"] = {"format": rng.choice(["pt", 1, None, ["pt"], {"a": "b"}, 1.5, True])}
    raw = json.dumps(header).encode()
    raw += b" " * rng.choice([0, 0, 3, 64])  # padding the header with spaces is legal
    return struct.pack("<Q", len(raw)) + raw + bytes(max(0, offset + rng.choice([0, 0, 0, 4, -4])))


def _raw_header(rng: random.Random) -> bytes:
    """Headers that are not JSON objects, or barely: deep nesting, bad UTF-8, huge numbers."""
    raw = rng.choice(
        [
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' + b"[" * 900 + b"]" * 900 + b"}",
            b'{"a":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}}',
            b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}',
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,' + b"4" * 30 + b"]}}",
            b'{"\xff\xfe":1}',
            b"\xef\xbb\xbf{}",
            b"null",
            b"",
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
            b'{"a":"' + b"\\u" * 100 + b'"}',
        ]
    )
    return struct.pack("<Q", len(raw)) + raw + bytes(rng.choice([0, 4, 8]))


# ------------------------------------------------------------------ config.json
CONFIG_FIELDS = [
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id",
    "position_embedding_type", "use_cache", "classifier_dropout", "is_decoder", "add_cross_attention",
    "problem_type", "tie_word_embeddings", "output_attentions", "output_hidden_states", "return_dict",
    "architectures", "num_labels", "id2label", "label2id",
]  # fmt: skip
RESERVED_KEYS = [
    "_extra", "model_type", "to_dict", "validate", "head_dim", "max_sequence_length", "num_labels",
    "__class__", "__dict__", "_set_labels", "copy", "_name_or_path", "transformers_version", "",
]  # fmt: skip


def config_json(rng: random.Random, base: dict) -> bytes:
    """A `config.json`: `base` with fields of the wrong type or size, reserved keys, deep nesting,
    other encodings, or byte-level damage."""
    roll = rng.random()
    data = copy.deepcopy(base)
    if roll < 0.15:
        return mutate_bytes(rng, json.dumps(data).encode(), max_edits=4)
    for _ in range(rng.randint(1, 4)):
        key = (
            rng.choice(CONFIG_FIELDS + RESERVED_KEYS)
            if rng.random() < 0.85
            else f"custom_{rng.randint(0, 9)}"
        )
        choice = rng.random()
        if (
            key in ("vocab_size", "hidden_size", "intermediate_size", "max_position_embeddings")
            and choice < 0.4
        ):
            data[key] = rng.choice([10**9, 10**30, 2**31, 100_000, 1_000_000, 10**6 + 1])
        elif key == "num_hidden_layers" and choice < 0.4:
            data[key] = rng.choice([100_000, 257, 256, 1000])
        elif key == "id2label" and choice < 0.5:
            data[key] = rng.choice(
                [{"x": "a"}, {"0": 1}, [1, 2], {"-1": "a"}, {str(10**30): "a"}, {"0": "a", "1": "b"}]
            )
        else:
            data[key] = odd_value(rng)
    raw = json.dumps(data, allow_nan=True)
    encoding = rng.random()
    if encoding < 0.05:
        return raw.encode("utf-16")
    if encoding < 0.08:
        return raw.encode("utf-8") + b"\xff\xfe"
    if encoding < 0.1:
        return b"\xef\xbb\xbf" + raw.encode("utf-8")
    if encoding < 0.14:
        return (
            b'{"a": ' + b"[" * rng.choice([40, 1000, 100_000]) + b"]" * rng.choice([40, 1000, 100_000]) + b"}"
        )
    return raw.encode("utf-8")


# ------------------------------------------------------------------ tokenizer.json
def tokenizer_json(rng: random.Random, base: dict) -> bytes:
    """A `tokenizer.json`: `base` with its model, normalizer (the precompiled map), added tokens or
    pre-tokenizer damaged, or its bytes mutated."""
    if rng.random() < 0.25:
        raw = json.dumps(base).encode()
        # Mutate somewhere in the first 64 kB, where the structure (not just the vocabulary) is.
        head, tail = raw[:65536], raw[65536:]
        return mutate_bytes(rng, head) + tail
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        part = rng.choice(
            ["model", "vocab", "unk", "normalizer", "charsmap", "added", "pre", "post", "decoder", "top"]
        )
        if part == "model":
            data["model"][rng.choice(["type", "unk_id", "byte_fallback", "vocab"])] = odd_value(rng)
        elif part == "vocab":
            vocab = data["model"].get("vocab")
            if isinstance(vocab, list) and vocab:
                index = rng.randrange(len(vocab))
                entry = vocab[index]
                piece = entry[0] if isinstance(entry, list) and entry else "x"
                vocab[index] = rng.choice(
                    [[odd_value(rng), 0.0], [piece, odd_value(rng)], odd_value(rng), []]
                )
                if rng.random() < 0.2:
                    del vocab[rng.randrange(len(vocab)) :]
        elif part == "unk":
            data["model"]["unk_id"] = rng.choice([-1, 10**6, 702, 583, None, "3", 2**64])
        elif part == "normalizer":
            data["normalizer"] = rng.choice(
                [None, {"type": "Nope"}, odd_value(rng), {"type": "Sequence", "normalizers": odd_value(rng)}]
            )
        elif part == "charsmap":
            _spoil_charsmap(rng, data)
        elif part == "added":
            tokens = data.get("added_tokens")
            if isinstance(tokens, list) and tokens and isinstance(tokens[0], dict):
                token = rng.choice(tokens)
                token[rng.choice(["id", "content", "special", "lstrip"])] = rng.choice(
                    [odd_value(rng), 10**9, -1, 2**32, "", "<s>"]
                )
        elif part in ("pre", "post", "decoder"):
            key = {"pre": "pre_tokenizer", "post": "post_processor", "decoder": "decoder"}[part]
            value = data.get(key)
            if isinstance(value, dict) and rng.random() < 0.5:
                value[rng.choice(list(value) or ["type"])] = odd_value(rng)
            else:
                data[key] = odd_value(rng)
        else:
            data[rng.choice(["version", "truncation", "padding", "added_tokens"])] = odd_value(rng)
    return json.dumps(data, allow_nan=True).encode()


def _spoil_charsmap(rng: random.Random, data: dict) -> None:
    normalizer = data.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer]) if isinstance(normalizer, dict) else []
    for step in steps if isinstance(steps, list) else []:
        if (
            isinstance(step, dict)
            and step.get("type") == "Precompiled"
            and isinstance(step.get("precompiled_charsmap"), str)
        ):
            step["precompiled_charsmap"] = base64.b64encode(
                spoil_charsmap(rng, base64.b64decode(step["precompiled_charsmap"]))
            ).decode()
            return
    data["normalizer"] = {
        "type": "Precompiled",
        "precompiled_charsmap": base64.b64encode(
            bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        ).decode(),
    }


def spoil_charsmap(rng: random.Random, charsmap: bytes) -> bytes:
    """A precompiled character map with its trie size, trie units or strings damaged."""
    roll = rng.random()
    data = bytearray(charsmap)
    if roll < 0.3 and len(data) >= 4:
        data[:4] = struct.pack(
            "<I", rng.choice([0, 1, 3, 2**32 - 4, 3 * 2**30, len(data), len(data) - 3, 2**31])
        )
    elif roll < 0.7 and len(data) > 8:
        trie_size = struct.unpack("<I", data[:4])[0]
        for _ in range(rng.randint(1, 20)):
            unit = 4 + 4 * rng.randrange(max(1, min(trie_size, len(data) - 4) // 4))
            data[unit : unit + 4] = struct.pack("<I", rng.randrange(2**32))
    else:
        data = bytearray(mutate_bytes(rng, bytes(data)))
    return bytes(data)


# ------------------------------------------------------------------ SentencePiece model bytes
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def sentencepiece_model(rng: random.Random, valid: bytes) -> bytes:
    """SentencePiece model bytes: the valid model with its character map, pieces or specs damaged at
    the protobuf level, or its bytes mutated."""
    from xlmr_core.sentencepiece_conversion import _fields, _spans

    roll = rng.random()
    if roll < 0.3:
        return mutate_bytes(rng, valid)
    spans = _spans(valid)
    ends = [start for _, start, _ in spans[1:]] + [len(valid)]
    fields = [(number, valid[start:end], value) for (number, start, value), end in zip(spans, ends)]
    if roll < 0.65:  # the normalizer's precompiled character map
        out = []
        for number, raw, value in fields:
            if number == 3:
                spec = _fields(value)
                charsmap = spec.get(2, [b""])[0]
                rest = b"".join(
                    _field(n, v)
                    for n, values in spec.items()
                    if n != 2
                    for v in values
                    if isinstance(v, bytes)
                )
                scalars = b"".join(
                    _varint(n << 3) + _varint(v)
                    for n, values in spec.items()
                    for v in values
                    if isinstance(v, int)
                )
                raw = _field(3, _field(2, spoil_charsmap(rng, charsmap)) + rest + scalars)
            out.append(raw)
        return b"".join(out)
    if roll < 0.85:  # pieces: drop, duplicate, empty, odd types and scores
        pieces = [index for index, (number, _, _) in enumerate(fields) if number == 1]
        for _ in range(rng.randint(1, 4)):
            index = rng.choice(pieces)
            action = rng.random()
            if action < 0.3:
                fields[index] = (
                    1,
                    _field(1, _field(1, rng.choice([b"", b"\xff", b"<s>", b"\xe2\x96\x81", b"a" * 1000]))),
                    None,
                )
            elif action < 0.5:
                fields.insert(index, fields[rng.choice(pieces)])
            elif action < 0.7:
                type_ = rng.choice([0, 2, 3, 4, 5, 6, 99])
                fields[index] = (1, _field(1, _field(1, b"zz") + _varint(3 << 3) + _varint(type_)), None)
            else:
                del fields[index : index + rng.randint(1, 200)]
                pieces = [i for i, (n, _, _) in enumerate(fields) if n == 1] or [0]
        return b"".join(raw for _, raw, _ in fields)
    # trainer spec (model type, vocab size) and unknown fields
    out = []
    for number, raw, value in fields:
        if number == 2 and rng.random() < 0.7:
            raw = _field(2, bytes(value) + _varint(3 << 3) + _varint(rng.choice([0, 2, 3, 4, 7, 2**40])))
        out.append(raw)
    if rng.random() < 0.3:
        out.insert(
            rng.randrange(len(out) + 1),
            _field(rng.choice([3, 5, 99]), bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))),
        )
    return b"".join(out)


# ------------------------------------------------------------------ tokenizer config files
def special_tokens(rng: random.Random) -> dict:
    """A tokenizer_config.json / special_tokens_map.json of reused, empty, unknown or odd tokens."""
    config: dict = {}
    names = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(names + ["model_max_length", "padding_side", "truncation_side", "sp_model_kwargs"])
        if name == "model_max_length":
            config[name] = rng.choice([None, 0, 5, -1, 1e30, float("inf"), "512", 10**40, True])
        elif name in ("padding_side", "truncation_side"):
            config[name] = rng.choice(["left", "right", "middle", None, 3, ["left"]])
        elif name == "sp_model_kwargs":
            config[name] = rng.choice(
                [
                    {},
                    {"enable_sampling": True, "alpha": 0.1, "nbest_size": -1},
                    {"alpha": "x"},
                    {"bogus": 1},
                    [1],
                    None,
                ]
            )
        else:
            config[name] = rng.choice(
                ["", "<s>", "</s>", "<pad>", "<unk>", "<mask>", "▁the", "not-in-vocab", " <s>", "a" * 200,
                 {"content": "<mask>", "lstrip": True}, {"content": ""}, {"nope": 1}, None, 5, ["<s>"],
                 "\ud800"]
            )  # fmt: skip
    return config


# ------------------------------------------------------------------ model inputs
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
OTHER_DTYPES = ["float16", "float32", "float64", "bool", "complex64", "bfloat16"]


def model_inputs(
    rng: random.Random, vocab_size: int, max_length: int, num_labels: int, heads: tuple[str, ...]
) -> tuple[str, dict]:
    """A head and its inputs as numpy arrays: every integer and float dtype, bool, complex, wrong
    ranks and shapes, an empty batch, zero length, too long, ids out of range, labels of the wrong shape."""
    import ml_dtypes

    head = rng.choice(heads)
    batch = rng.choice([0, 1, 2, 3])
    length = rng.choice([0, 1, 5, max_length, max_length + 1, max_length * 3])
    shape = (batch, 2, length) if head == "ForMultipleChoice" else (batch, length)
    roll = rng.random()
    if roll < 0.1:
        shape = rng.choice([(), (length,), (batch, length, 2, 1), (1, 1, 1, 1)])
    dtype = rng.choice(INT_DTYPES * 2 + OTHER_DTYPES)
    high = vocab_size if rng.random() < 0.85 else vocab_size + rng.choice([0, 1, 1000])
    low = 0 if rng.random() < 0.9 else -3
    ids = np.asarray(np.random.default_rng(rng.randrange(2**32)).integers(low, high, size=shape))
    if dtype.startswith("uint"):
        ids = np.abs(ids)
    if dtype == "int8" or dtype == "uint8":
        ids = ids % 120
    ids = ids.astype(np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else dtype)
    inputs: dict = {"input_ids": ids}
    if rng.random() < 0.5:
        mask_shape = shape if rng.random() < 0.8 else rng.choice([(batch,), (batch, length + 1), ()])
        mask_dtype = rng.choice(["int64", "int32", "float32", "bool", "uint8", "complex64"])
        inputs["attention_mask"] = np.ones(mask_shape, dtype=mask_dtype)
    if rng.random() < 0.2:
        inputs["token_type_ids"] = np.zeros(
            shape if rng.random() < 0.8 else (batch,), dtype=rng.choice(INT_DTYPES + ["float32"])
        )
    if rng.random() < 0.2:
        inputs["position_ids"] = (
            np.broadcast_to(np.arange(shape[-1] if shape else 0), shape).astype(
                rng.choice(["int64", "int32", "float32", "uint16"])
            )
            if shape
            else np.array(0)
        )
    if rng.random() < 0.4 and head != "Model":
        inputs.update(_labels(rng, head, shape, vocab_size, num_labels))
    return head, inputs


def _labels(rng: random.Random, head: str, shape: tuple, vocab_size: int, num_labels: int) -> dict:
    batch = shape[0] if shape else 0
    good = rng.random() < 0.5
    dtype = rng.choice(["int64", "int32", "uint8", "float32", "bool"]) if not good else "int64"
    if head == "ForQuestionAnswering":
        size = (batch,) if good else rng.choice([(batch, 2), (), (batch + 1,)])
        return {"start_positions": np.zeros(size, dtype), "end_positions": np.ones(size, dtype)}
    if head in ("ForSequenceClassification", "ForMultipleChoice"):
        size = (batch,) if good else rng.choice([(batch, 3), (), (batch + 1,), shape])
        high = num_labels if head == "ForSequenceClassification" else 2
        return {"labels": (np.arange(int(np.prod(size))).reshape(size) % high).astype(dtype)}
    size = shape if good else rng.choice([(batch,), shape + (1,), ()])
    high = vocab_size if head in ("ForMaskedLM", "ForCausalLM") else num_labels
    labels = (np.arange(int(np.prod(size))).reshape(size) % high).astype(dtype)
    return {"labels": labels}


# ------------------------------------------------------------------ pytorch_model.bin
def _pickle_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _pickle_int(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


# Opcodes run after the tensor is rebuilt, on the storage (memo 1), the tensor (memo 2), an
# allowed global or the dict: each sets state, which no torch file does, or does nothing harmful.
_AFTER_PERSISTENT_LOAD = [
    b"h\x01}" + _pickle_str("numel") + b"K\x00sb0",  # BUILD the storage's size to 0
    b"h\x01N}" + _pickle_str("numel") + b"K\x00s\x86b0",  # the same through setattr
    b"h\x02}" + _pickle_str("shape") + b")sb0",  # BUILD the rebuilt tensor
    b"ctorch._utils\n_rebuild_parameter\nN}" + _pickle_str("__defaults__") + b"(K\x01ts\x86b0",
    b"ctorch\nTensor\n}" + _pickle_str("name") + b"K\x01sb0",  # a marker's state
    b"h\x01" + _pickle_str("k") + b"K\x01s0",  # SETITEM on a storage
    b"h\x02(K\x01e0",  # APPENDS on a tensor
    b"ccollections\nOrderedDict\n)R}" + _pickle_str("x") + b"K\x01sb0",
    b"h\x01h\x01\x86" + b"0",  # harmless: a tuple of the storage, dropped
    b"",
]


def torch_bin_records(rng: random.Random) -> dict[str, bytes]:
    """The entries of a `pytorch_model.bin`: one tensor over storage "0", with hostile sizes,
    strides and offsets, and hostile opcodes after `persistent_load` (see `_AFTER_PERSISTENT_LOAD`)."""
    size = [rng.choice([0, 1, 2, 3, 4, 99]) for _ in range(rng.randint(0, 3))]
    stride = [rng.choice([0, 1, 2, 3, 99, 2**31]) for _ in size]
    numel = (
        rng.choice([0, 1, 4, 16, 3168, 2**31, 2**62]) if rng.random() < 0.6 else max(1, int(np.prod(size)))
    )
    record = bytes(4 * rng.choice([0, 1, 4, 16, max(1, int(np.prod(size)))]))
    storage = (
        b"(" + _pickle_str("storage") + b"ctorch\nFloatStorage\n" + _pickle_str("0") + _pickle_str("cpu")
        + _pickle_int(numel) + b"tQq\x01"
    )  # fmt: skip
    arguments = (
        b"(" + storage + _pickle_int(rng.choice([0, 0, 1, 5, -1]))
        + b"(" + b"".join(map(_pickle_int, size)) + b"t"
        + b"(" + b"".join(map(_pickle_int, stride)) + b"t" + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"t"
    )  # fmt: skip
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n" + arguments + b"Rq\x02"
    after = rng.choice(_AFTER_PERSISTENT_LOAD)
    pickle_bytes = b"\x80\x02ccollections\nOrderedDict\n)R(" + _pickle_str("w") + tensor + b"u" + after + b"."
    return {"archive/data.pkl": pickle_bytes, "archive/data/0": record, "archive/version": b"3\n"}


def torch_zip(rng: random.Random, records: dict[str, bytes]) -> bytes:
    """`records` as a zip archive with its structure damaged: duplicate names, compressed entries
    (a small bomb among them), a second or no `data.pkl`, declared sizes that lie, cut short."""
    import io
    import zipfile

    entries = list(records.items())
    roll = rng.random()
    if roll < 0.15:
        name = rng.choice([name for name, _ in entries])
        entries.append((name, mutate_bytes(rng, dict(entries)[name] or b"\0")))
    elif roll < 0.25:
        entries.append(("other/data.pkl", records["archive/data.pkl"]))
    elif roll < 0.3:
        entries = [(n, d) for n, d in entries if n != "archive/data.pkl"]
    elif roll < 0.35:
        entries = [(n, bytes(rng.choice([1, 10**6])) if n == "archive/data/0" else d) for n, d in entries]
    compress = zipfile.ZIP_DEFLATED if roll > 0.85 else zipfile.ZIP_STORED
    buffer = io.BytesIO()
    import warnings

    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compress) as archive:
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, data in entries:
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    if 0.35 <= roll < 0.45:  # a central directory entry's declared uncompressed size lies
        at = data.rfind(b"PK\x01\x02")
        if at >= 0:
            data[at + 24 : at + 28] = struct.pack("<I", rng.choice([0, 2**31, 2**32 - 1]))
    elif 0.45 <= roll < 0.5:
        return mutate_bytes(rng, bytes(data))
    return bytes(data)


# ------------------------------------------------------------------ tf_model.h5
H5_STORAGE_KINDS = [
    "external",
    "virtual",
    "external_link",
    "soft_link",
    "dangling_soft",
    "compact",
    "chunked",
    "plain",
]


def h5_storage_kind(rng: random.Random) -> str:
    """How the dataset of one weight is stored: in another file (external raw storage, a virtual
    dataset, an external link), through a soft link, or inside the file (compact, chunked, plain)."""
    return rng.choice(H5_STORAGE_KINDS)
