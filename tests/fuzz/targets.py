"""What each fuzz target does with one case. A target is built once per worker process (its
setup: a small trained tokenizer, a tiny checkpoint, models) and then runs case after case.

`case(index)` returns normally when the input was accepted, raises the project's error when it
was refused (the worker judges whether that error is clean) and raises `Broken` when a rule other
than the error rule failed: slow and fast disagree, a refused CLI run left files behind, an
accepted input gave a wrong result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from . import generators as gen

MODEL_FRAMEWORKS = ("torch", "tf", "flax")


# What a case returns when slow and fast differed only by a segmentation tie (counted apart).
TIE = "tie"


class Broken(Exception):
    """A rule of the target failed (not an error-type question): always counted as a crash."""


class Refused(Exception):
    """The input was refused in a way the target has already judged clean (a CLI exit code)."""


def case_rng(name: str, seed: int, index: int) -> random.Random:
    return random.Random(f"{name}:{seed}:{index}")


def tiny_config_dict() -> dict:
    from xlmr_core import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-5, num_labels=3,
    ).to_dict()  # fmt: skip


def trained_model(directory: Path) -> Path:
    """The small unigram model the core tests train (nmt_nfkc, 700 pieces, XLM-R layout)."""
    from tests.core.conftest import train_small_model

    return Path(train_small_model(directory))


def outcome(call):
    """`("ok", value)` or `("error", type name, message, the error)`, for comparing two tokenizers."""
    try:
        return ("ok", call())
    except (ValueError, TypeError, OSError) as error:
        return ("error", type(error).__name__, str(error), error)


def comparable(value):
    """Tokenizer outputs as plain lists (numpy arrays compare elementwise)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple, dict, np.ndarray)):
            return [comparable(v) for v in value]
        return list(value)  # a row of ids
    return value


def same_or_raise(slow, fast, what: str):
    """Both tokenizers gave the same result (or the same error); re-raise that error if any."""
    a, b = slow, fast
    if a[0] == "ok" and b[0] == "ok":
        if comparable(a[1]) != comparable(b[1]):
            raise Broken(
                f"slow != fast on {what}: {str(comparable(a[1]))[:150]} vs {str(comparable(b[1]))[:150]}"
            )
        return a[1]
    if a[:3] != b[:3]:
        raise Broken(f"slow and fast differ on {what}: {str(a[:3])[:150]} vs {str(b[:3])[:150]}")
    raise a[3]  # both refused alike: the worker judges the error


class _Files:
    """A scratch folder per worker; each case writes into a fresh subfolder, removed after."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="xlmr-fuzz-"))

    @contextlib.contextmanager
    def case_dir(self):
        directory = Path(tempfile.mkdtemp(dir=self.root))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ files
class SafetensorsTarget(_Files):
    """Mutated and hand-built safetensors headers and bytes: read, then load every tensor."""

    def __init__(self, seed: int):
        super().__init__()
        from xlmr_core.formats import safetensors

        self.seed, self.safetensors = seed, safetensors
        state = {
            "a": np.arange(12, dtype=np.float32).reshape(3, 4),
            "b": np.ones(5, dtype=np.float16),
            "c": np.array([1, 2], dtype=np.int64),
        }
        path = self.root / "valid.safetensors"
        safetensors.write(path, {k: _lazy(v) for k, v in state.items()})
        self.valid = path.read_bytes()

    def case(self, index: int) -> None:
        from xlmr_core.checkpoint import load_checkpoint

        rng = case_rng("safetensors", self.seed, index)
        data = gen.safetensors_file(rng, self.valid)
        with self.case_dir() as directory:
            path = directory / "model.safetensors"
            path.write_bytes(data)
            if rng.random() < 0.5:
                for name, tensor in self.safetensors.read(path, mmap=rng.random() < 0.5).items():
                    tensor.checked_load(name)
            else:
                load_checkpoint(directory)


class WeightFilesTarget(_Files):
    """`pytorch_model.bin` (opcodes after persistent_load, strides, zip structure) and `tf_model.h5`
    (where a dataset keeps its bytes): load every tensor. An accepted bin must give the zeros its
    record holds (anything else is memory read from outside it); an accepted h5 must give the
    weights written, never bytes of another file."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.h5 = importlib.util.find_spec("h5py") is not None

    def case(self, index: int) -> None:
        from xlmr_core.checkpoint import load_checkpoint

        rng = case_rng("weight_files", self.seed, index)
        with self.case_dir() as directory:
            checkpoint = directory / "checkpoint"
            checkpoint.mkdir()
            if self.h5 and rng.random() < 0.3:
                expected = self._h5(rng, checkpoint, directory)
                loaded = load_checkpoint(checkpoint)
                if any(not np.array_equal(loaded[name], array) for name, array in expected.items()):
                    raise Broken("an accepted tf_model.h5 gave other weights than were written")
                return
            data = gen.torch_zip(rng, gen.torch_bin_records(rng))
            (checkpoint / "pytorch_model.bin").write_bytes(data)
            for name, array in load_checkpoint(checkpoint).items():
                if np.any(array):
                    raise Broken(f"tensor {name} holds bytes that are not its record's (all zeros)")

    def _h5(self, rng: random.Random, checkpoint: Path, outside: Path) -> dict:
        import h5py

        from xlmr_core.checkpoint import write_weights

        state = {
            "embeddings.word_embeddings.weight": np.arange(24, dtype=np.float32).reshape(6, 4),
            "embeddings.position_embeddings.weight": np.ones((5, 4), np.float32),
        }
        write_weights(checkpoint, state, "tf")
        kind = gen.h5_storage_kind(rng)
        secret = outside / "secret.bin"
        if kind == "external" and rng.random() < 0.3 and hasattr(os, "mkfifo"):
            os.mkfifo(secret)  # reading it would block for ever
        else:
            secret.write_bytes(bytes(range(256)) * 4)
        with h5py.File(checkpoint / "tf_model.h5", "a") as h5:
            group = h5["roberta"]
            names = [n for n in group.attrs["weight_names"].astype(str)]
            name = rng.choice(names)
            array = np.asarray(group[name])
            other = group[next(n for n in names if n != name)].name
            del group[name]
            if kind == "external":
                group.create_dataset(
                    name, array.shape, array.dtype, external=[(str(secret), 0, array.nbytes)]
                )
            elif kind == "virtual":
                with h5py.File(outside / "other.h5", "w") as f:
                    f["data"] = array + 1
                layout = h5py.VirtualLayout(shape=array.shape, dtype=array.dtype)
                layout[:] = h5py.VirtualSource(str(outside / "other.h5"), "data", shape=array.shape)
                group.create_virtual_dataset(name, layout)
            elif kind == "external_link":
                with h5py.File(outside / "other.h5", "w") as f:
                    f["data"] = array + 1
                group[name] = h5py.ExternalLink(str(outside / "other.h5"), "data")
            elif kind in ("soft_link", "dangling_soft"):
                group[name] = h5py.SoftLink(other if kind == "soft_link" else "/nowhere")
            elif kind == "compact":
                space = h5py.h5s.create_simple(array.shape)
                plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                plist.set_layout(h5py.h5d.COMPACT)
                parent = group.require_group(name.rsplit("/", 1)[0])
                leaf = name.rsplit("/", 1)[1].encode()
                h5py.h5d.create(parent.id, leaf, h5py.h5t.IEEE_F32LE, space, dcpl=plist).write(
                    h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(array)
                )
            else:
                group.create_dataset(name, data=array, chunks=True if kind == "chunked" else None)
        return state


def _lazy(array):
    from xlmr_core.formats.base import eager

    return eager(array)


class ConfigTarget(_Files):
    """config.json of wrong types and sizes, reserved keys, deep nesting, other encodings."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed, self.base = seed, tiny_config_dict()

    def case(self, index: int) -> None:
        from xlmr_core import XLMRobertaConfig

        rng = case_rng("config", self.seed, index)
        with self.case_dir() as directory:
            (directory / "config.json").write_bytes(gen.config_json(rng, self.base))
            config = XLMRobertaConfig.from_pretrained(directory)
        again = XLMRobertaConfig.from_dict(json.loads(config.to_json_string()))
        if again != config or config.copy() != config:
            raise Broken("an accepted config does not survive to_json_string / from_dict / copy")


class TokenizerJsonTarget(_Files):
    """Damaged tokenizer.json files (model, precompiled map, added tokens, bytes): load, encode, decode."""

    def __init__(self, seed: int):
        super().__init__()
        from xlmr_core import XLMRobertaTokenizerFast

        self.seed = seed
        fast = XLMRobertaTokenizerFast(vocab_file=trained_model(self.root))
        self.base = json.loads(fast.backend_tokenizer.to_str())

    def case(self, index: int) -> None:
        from xlmr_core import XLMRobertaTokenizerFast

        rng = case_rng("tokenizer_json", self.seed, index)
        with self.case_dir() as directory:
            path = directory / "tokenizer.json"
            path.write_bytes(gen.tokenizer_json(rng, self.base))
            tokenizer = XLMRobertaTokenizerFast(tokenizer_file=path)
        texts = [gen.text(rng, surrogates=False, long=False) for _ in range(3)] + [
            "Hello <mask> world",
            "＜mask＞",
        ]
        ids = tokenizer(texts, return_offsets_mapping=True)["input_ids"]
        tokenizer.batch_decode(ids)


class SentencePieceTarget(_Files):
    """Damaged SentencePiece model bytes (precompiled map, pieces, specs, bytes), slow and fast."""

    def __init__(self, seed: int):
        super().__init__()
        from xlmr_core.pretrained import bundled_checkpoint

        self.seed = seed
        self.valid = [
            trained_model(self.root).read_bytes(),
            (bundled_checkpoint() / "sentencepiece.bpe.model").read_bytes(),
        ]

    def case(self, index: int) -> None:
        from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast

        rng = case_rng("sentencepiece", self.seed, index)
        data = gen.sentencepiece_model(rng, rng.choice(self.valid))
        texts = [gen.text(rng, surrogates=False, long=False) for _ in range(3)] + ["Hello <mask> world"]
        with self.case_dir() as directory:
            path = directory / "sentencepiece.bpe.model"
            path.write_bytes(data)
            errors = []
            for cls in (XLMRobertaTokenizer, XLMRobertaTokenizerFast):
                try:
                    tokenizer = cls(vocab_file=path)
                    tokenizer.batch_decode(tokenizer(texts)["input_ids"])
                except (ValueError, TypeError, OSError) as error:
                    errors.append(error)
        if errors:
            raise errors[0]


class SpecialTokensTarget(_Files):
    """tokenizer_config.json / special_tokens_map.json with reused, empty, unknown or odd tokens."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed, self.model = seed, trained_model(self.root)

    def case(self, index: int) -> None:
        from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast

        rng = case_rng("special_tokens", self.seed, index)
        config = gen.special_tokens(rng)
        with self.case_dir() as directory:
            shutil.copyfile(self.model, directory / "sentencepiece.bpe.model")
            name = rng.choice(["tokenizer_config.json", "special_tokens_map.json"])
            (directory / name).write_text(
                json.dumps(config, allow_nan=True), encoding="utf-8", errors="surrogatepass"
            )
            slow = outcome(lambda: XLMRobertaTokenizer.from_pretrained(directory))
            fast = outcome(lambda: XLMRobertaTokenizerFast.from_pretrained(directory))
        if slow[0] != fast[0] or (slow[0] == "error" and slow[1] != fast[1]):
            raise Broken(
                f"slow and fast disagree on loading {config}: {str(slow[:3])[:120]} vs {str(fast[:3])[:120]}"
            )
        if slow[0] == "error":
            raise slow[3]
        slow, fast = slow[1], fast[1]
        texts = [gen.text(rng, surrogates=False, long=False) for _ in range(3)]
        texts += [f"a {slow.mask_token} b {slow.cls_token}{slow.sep_token}", "▁the <s> </s>"]
        options = gen.call_options(rng)
        if slow.sp_model_kwargs.get("enable_sampling"):  # the slow samples segmentations: no comparison
            slow(texts, **options)
            fast(texts, **options)
            return
        result = compare_calls(slow, fast, texts, None, options)
        if result is None:
            return TIE
        ids = result["input_ids"]
        skip = rng.random() < 0.5
        same_or_raise(
            outcome(lambda: slow.batch_decode(ids, skip_special_tokens=skip)),
            outcome(lambda: fast.batch_decode(ids, skip_special_tokens=skip)),
            "decode",
        )


# ------------------------------------------------------------------ tokenizer calls
class _Tokenizers:
    """Slow and fast on the small trained model and on the bundled checkpoint's 4,002-piece vocabulary."""

    def __init__(self):
        from xlmr_core import XLMRobertaTokenizer, XLMRobertaTokenizerFast
        from xlmr_core.pretrained import bundled_checkpoint

        root = Path(tempfile.mkdtemp(prefix="xlmr-fuzz-spm-"))
        models = [trained_model(root), bundled_checkpoint() / "sentencepiece.bpe.model"]
        self.pairs = [(XLMRobertaTokenizer(m), XLMRobertaTokenizerFast(vocab_file=m)) for m in models]
        shutil.rmtree(root, ignore_errors=True)


def tie_explains(slow, fast, slow_ids: list[int], fast_ids: list[int]) -> bool:
    """Whether two encodings of one text differ only as SentencePiece and `tokenizers` may: by a
    different segmentation of the same characters whose total score is the same up to float32
    rounding (SentencePiece sums scores in float32, `tokenizers` in float64; with exact ties,
    "!!" + "!" against "!" + "!!", the rounding of the sums picks the winner).

    The differing middles must spell the same characters, and their score sums (float64) must agree
    within the rounding SentencePiece's float32 sum of the whole encoding can make."""
    if slow_ids == fast_ids:
        return True
    start = 0
    while start < min(len(slow_ids), len(fast_ids)) and slow_ids[start] == fast_ids[start]:
        start += 1
    end = 0
    while end < min(len(slow_ids), len(fast_ids)) - start and slow_ids[-1 - end] == fast_ids[-1 - end]:
        end += 1
    a, b = slow_ids[start : len(slow_ids) - end], fast_ids[start : len(fast_ids) - end]
    special = set(slow.all_special_ids) - {slow.unk_token_id}  # unknown characters are <unk> to both
    if special & set(a + b):
        return False
    if "".join(slow.convert_ids_to_tokens(a)) != "".join(fast.convert_ids_to_tokens(b)):
        return False

    def score(i):
        return float(slow.sp_model.GetScore(i - 1))

    total = sum(abs(score(i)) for i in slow_ids if i not in special and i != slow.unk_token_id)
    tolerance = 2.0**-23 * len(slow_ids) * max(1.0, total)
    known_a, known_b = [i for i in a if i != slow.unk_token_id], [i for i in b if i != slow.unk_token_id]
    if len(a) - len(known_a) != len(b) - len(known_b):
        return False
    return abs(sum(map(score, known_a)) - sum(map(score, known_b))) <= tolerance


def compare_calls(slow, fast, first, second, options: dict):
    """`slow(first, second, **options)`, the same as the fast's; None when they differ only by a
    segmentation tie (`tie_explains`), where the options cannot be compared."""
    try:
        return same_or_raise(
            outcome(lambda: slow(first, second, **options)),
            outcome(lambda: fast(first, second, **options)),
            f"{str(first)[:60]!r} {options}",
        )
    except Broken:
        pieces = first if isinstance(first, list) else [first]
        pieces += (second if isinstance(second, list) else [second]) if second is not None else []
        if options.get("is_split_into_words"):
            pieces = [word for item in pieces for word in (item if isinstance(item, list) else [item])]
        plain = {"add_special_tokens": False}
        pairs = [(slow(p, **plain)["input_ids"], fast(p, **plain)["input_ids"]) for p in pieces]
        if any(a != b for a, b in pairs) and all(tie_explains(slow, fast, a, b) for a, b in pairs):
            return None
        raise


class TextTarget(_Tokenizers):
    """Random Unicode through slow and fast with random call options: identical ids, masks, special
    tokens and lengths, the fast's offsets laid out on the same rows, and the same decoded text."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def case(self, index: int) -> None:
        rng = case_rng("text", self.seed, index)
        slow, fast = rng.choice(self.pairs)
        roll = rng.random()
        if roll < 0.6:
            first, second = gen.text(rng), None
        elif roll < 0.8:
            first, second = gen.text(rng), gen.text(rng)
        elif roll < 0.9:
            first = [gen.text(rng) for _ in range(rng.randint(0, 4))]
            second = [gen.text(rng) for _ in first] if rng.random() < 0.3 else None
        else:
            first, second = [gen.text(rng, long=False) for _ in range(rng.randint(1, 5))], None
        options = gen.call_options(rng)
        if roll >= 0.9:
            options["is_split_into_words"] = True
        result = compare_calls(slow, fast, first, second, options)
        if result is None:
            return TIE
        with_offsets = fast(first, second, return_offsets_mapping=True, **options)
        if with_offsets["input_ids"] != result["input_ids"]:
            raise Broken("the fast gives other ids when asked for offsets")
        batched = bool(with_offsets["input_ids"]) and isinstance(with_offsets["input_ids"][0], list)
        rows = with_offsets["input_ids"] if batched else [with_offsets["input_ids"]]
        offsets = with_offsets["offset_mapping"] if batched else [with_offsets["offset_mapping"]]
        for ids, spans in zip(rows, offsets):
            if len(ids) != len(spans):
                raise Broken(f"{len(spans)} offsets for {len(ids)} ids")
        ids = rows[0] if rows else []
        same_or_raise(outcome(lambda: slow.decode(ids)), outcome(lambda: fast.decode(ids)), "decode")


class DecodeTarget(_Tokenizers):
    """decode / batch_decode / convert_ids_to_tokens of negative, huge, float, non-finite ids and arrays."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def case(self, index: int) -> None:
        rng = case_rng("decode", self.seed, index)
        slow, fast = rng.choice(self.pairs)
        ids = gen.decode_ids(rng, len(slow))
        skip = rng.random() < 0.5
        method = rng.choice(["decode", "convert_ids_to_tokens", "batch_decode"])
        argument = [ids] if method == "batch_decode" and not isinstance(ids, np.ndarray) else ids
        same_or_raise(
            outcome(lambda: getattr(slow, method)(argument, skip_special_tokens=skip)),
            outcome(lambda: getattr(fast, method)(argument, skip_special_tokens=skip)),
            f"{method}({str(ids)[:60]})",
        )


# ------------------------------------------------------------------ the command line
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}


class CliTarget(_Files):
    """`convert`, `inspect` and `verify` on mutated checkpoint directories: a documented exit code,
    no Traceback, one error line of at most 300 characters, no partial DST left."""

    def __init__(self, seed: int):
        super().__init__()
        from xlmr_core import XLMRobertaConfig, XLMRobertaTokenizer
        from xlmr_core.architecture import expected_shapes
        from xlmr_core.checkpoint import save_checkpoint

        self.seed = seed
        self.base = self.root / "base"
        model = trained_model(self.root)
        config = XLMRobertaConfig(
            **{**tiny_config_dict(), "vocab_size": 702, "architectures": ["XLMRobertaForMaskedLM"]}
        )
        rng = np.random.default_rng(0)
        state = {
            k: rng.standard_normal(s).astype(np.float32) * 0.02
            for k, s in expected_shapes(config, "ForMaskedLM").items()
        }
        save_checkpoint(self.base, state, config)
        XLMRobertaTokenizer(model).save_pretrained(self.base)
        self.config = json.loads((self.base / "config.json").read_text())
        # tf_model.h5 is read by HDF5's C library, where h5py (xlmr[tf]) is installed.
        self.formats = ["torch", "flax"] + (["tf"] if importlib.util.find_spec("h5py") else [])
        self.weights = (self.base / "model.safetensors").read_bytes()
        self.state = state

    def _spoil(self, rng: random.Random, directory: Path) -> None:
        from xlmr_core.checkpoint import write_weights

        part = rng.choice(["config", "weights", "weights", "format", "tokenizer", "remove", "shape", "nan"])
        if part == "config":
            (directory / "config.json").write_bytes(gen.config_json(rng, self.config))
        elif part == "weights":
            (directory / "model.safetensors").write_bytes(gen.safetensors_file(rng, self.weights))
        elif part == "format":
            fmt = rng.choice(self.formats)
            (directory / "model.safetensors").unlink()
            name = write_weights(directory, self.state, fmt)[0]
            path = directory / name
            path.write_bytes(
                gen.mutate_bytes(rng, path.read_bytes()) if rng.random() < 0.8 else path.read_bytes()
            )
        elif part == "tokenizer":
            name = rng.choice(["tokenizer.json", "sentencepiece.bpe.model", "tokenizer_config.json"])
            path = directory / name
            path.write_bytes(gen.mutate_bytes(rng, path.read_bytes()))
        elif part == "remove":
            (directory / rng.choice(["config.json", "model.safetensors", "tokenizer.json"])).unlink()
        elif part == "shape":
            state = dict(self.state)
            name = rng.choice(sorted(state))
            dims = rng.choice([3, 9, 64, 1000])
            if dims > 9:  # beyond numpy's 64 dimensions: written as a header alone
                header = json.dumps({name: {"dtype": "F32", "shape": [1] * dims, "data_offsets": [0, 4]}})
                raw = header.encode()
                (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
            else:
                state[name] = np.zeros(rng.choice([(1,) * dims, (3, 5), ()]), np.float32)
                (directory / "model.safetensors").unlink()
                write_weights(directory, state, "safetensors")
        else:
            state = {k: v.copy() for k, v in self.state.items()}
            name = rng.choice(sorted(state))
            state[name].reshape(-1)[: rng.randint(1, 3)] = rng.choice([np.nan, np.inf, -np.inf])
            write_weights(directory, state, "safetensors")

    def case(self, index: int) -> None:
        from conversion.cli import main

        rng = case_rng("cli", self.seed, index)
        with self.case_dir() as directory:
            source, destination = directory / "src", directory / "dst"
            shutil.copytree(self.base, source)
            self._spoil(rng, source)
            command = rng.choices(["inspect", "convert", "verify"], weights=[10, 10, 1])[0]
            argv = {
                "inspect": ["inspect", str(source)] + (["--json"] if rng.random() < 0.3 else []),
                "convert": ["convert", str(source), str(destination), "-q"]
                + rng.choice([[], ["--dtype", "float16"], ["--format", "torch,flax"]]),
                "verify": ["verify", str(source), "--frameworks", "torch", "-q"],
            }[command]
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main(argv)
            errors = stderr.getvalue()
            if code not in DOCUMENTED_EXIT_CODES or "Traceback" in errors:
                raise Broken(f"{command}: exit {code}, stderr {errors[-200:]!r}")
            lines = [line for line in errors.splitlines() if line.startswith("xlmr-convert: error: ")]
            if code not in (0, 1) and len(lines) != 1:
                raise Broken(f"{command}: exit {code} with {len(lines)} error lines: {errors[-200:]!r}")
            for line in lines:
                if len(line) - len("xlmr-convert: error: ") > 300:
                    raise Broken(f"{command}: an error line of {len(line)} characters: {line[:120]}...")
            if command == "convert" and code != 0:
                left = [p.name for p in directory.iterdir() if p.name != "src"]
                if left:
                    raise Broken(f"convert failed (exit {code}) and left {left}")
            if code not in (0, 1):
                raise Refused(lines[0][len("xlmr-convert: error: ") :])


# ------------------------------------------------------------------ model inputs
class ModelInputsTarget:
    """Each head of one framework on inputs of every dtype, rank and size (see `generators.model_inputs`)."""

    framework = "torch"

    def __init__(self, seed: int):
        from xlmr_core import XLMRobertaConfig

        self.seed = seed
        self.config = XLMRobertaConfig(**{**tiny_config_dict(), "is_decoder": False})
        self.models: dict = {}
        # Build every head and run it once before the first case: building (and, in JAX, the
        # first compilation) is start-up, not a case's time.
        ids = np.full((1, 2, 4), 5, np.int64)
        # The default slice (scale 1) runs three heads (the pooler, 3-D choices, per-token labels):
        # building and compiling all seven is most of a framework target's time.
        scaled = float(os.environ.get("XLMR_FUZZ_SCALE", "1")) > 1
        self.heads = HEADS if scaled else ("Model", "ForMultipleChoice", "ForTokenClassification")
        for head in self.heads:
            self.call(head, {"input_ids": ids if head == "ForMultipleChoice" else ids[:, 0]})

    def head_config(self, head: str):
        """The tiny config, as a decoder for the causal LM and with two labels for question answering."""
        return self.config.copy(
            is_decoder=head == "ForCausalLM", num_labels=2 if head == "ForQuestionAnswering" else 3
        )

    def model(self, head: str):
        if head not in self.models:
            self.models[head] = self.build(head)
        return self.models[head]

    def case(self, index: int) -> None:
        rng = case_rng(f"model_{self.framework}", self.seed, index)
        head, inputs = gen.model_inputs(
            rng, self.config.vocab_size, self.config.max_sequence_length, self.config.num_labels, self.heads
        )
        self.call(head, inputs)


HEADS = (
    "Model",
    "ForMaskedLM",
    "ForSequenceClassification",
    "ForTokenClassification",
    "ForQuestionAnswering",
    "ForMultipleChoice",
    "ForCausalLM",
)


class TorchInputs(ModelInputsTarget):
    framework = "torch"

    def build(self, head):
        import torch

        import xlmr_torch

        torch.manual_seed(0)
        config = self.head_config(head)
        return getattr(xlmr_torch, f"XLMRoberta{head}")(config).eval()

    def call(self, head, inputs):
        import ml_dtypes
        import torch

        def tensor(value):
            if value.dtype == np.dtype(ml_dtypes.bfloat16):
                return torch.from_numpy(value.astype(np.float32)).to(torch.bfloat16)
            return torch.from_numpy(np.ascontiguousarray(value))

        with torch.no_grad():
            self.model(head)(**{k: tensor(v) for k, v in inputs.items()})


class TfInputs(ModelInputsTarget):
    framework = "tf"

    def build(self, head):
        import xlmr_tf

        config = self.head_config(head)
        return getattr(xlmr_tf, f"TFXLMRoberta{head}")(config)

    def call(self, head, inputs):
        import tensorflow as tf

        self.model(head)({k: tf.constant(v) for k, v in inputs.items()}, training=False)


class FlaxInputs(ModelInputsTarget):
    framework = "flax"

    def build(self, head):
        import xlmr_flax

        config = self.head_config(head)
        return getattr(xlmr_flax, f"FlaxXLMRoberta{head}")(config, seed=0)

    def call(self, head, inputs):
        self.model(head)(**inputs)


TARGETS = {
    "safetensors": SafetensorsTarget,
    "config": ConfigTarget,
    "tokenizer_json": TokenizerJsonTarget,
    "sentencepiece": SentencePieceTarget,
    "special_tokens": SpecialTokensTarget,
    "text": TextTarget,
    "decode": DecodeTarget,
    "weight_files": WeightFilesTarget,
    "cli": CliTarget,
    "model_torch": TorchInputs,
    "model_tf": TfInputs,
    "model_flax": FlaxInputs,
}
