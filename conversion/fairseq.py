"""`from-fairseq`: import an original fairseq XLM-R release (model.pt, dict.txt, sentencepiece.bpe.model).

`model.pt` is a `torch.save` pickle. It is read here without torch and without running any
pickled code: a restricted unpickler resolves only plain containers, the tensor rebuild
functions (mapped to our own numpy versions) and `argparse.Namespace` (mapped to a plain
record); any other global makes it stop with an error naming it. Both of torch's file
layouts are read: the zip archive (torch >= 1.6) and the older single-stream format.

Fairseq's RoBERTa encoder is post-LayerNorm with learned positions offset by the padding
index, exactly the XLM-R architecture; only the names differ:

| fairseq (`encoder.` or older `decoder.` prefix)      | canonical                                   |
|------------------------------------------------------|---------------------------------------------|
| `sentence_encoder.embed_tokens`                      | `roberta.embeddings.word_embeddings`        |
| `sentence_encoder.embed_positions`                   | `roberta.embeddings.position_embeddings`    |
| `sentence_encoder.emb_layer_norm` / `layernorm_embedding` | `roberta.embeddings.LayerNorm`         |
| `layers.N.self_attn.{q,k,v}_proj` or fused `in_proj_*` | `…layer.N.attention.self.{query,key,value}` |
| `layers.N.self_attn.out_proj`, `self_attn_layer_norm` | `…attention.output.dense`, `…LayerNorm`    |
| `layers.N.fc1`, `fc2`, `final_layer_norm`            | `…intermediate.dense`, `…output.{dense,LayerNorm}` |
| `lm_head.dense`, `lm_head.layer_norm`, `lm_head.bias` | same names; `lm_head.weight` is the tied decoder |

Fairseq has no token-type embeddings: the import writes one zero row (`type_vocab_size=1`).
Its dictionary puts `<s> <pad> </s> <unk>` first, then the `dict.txt` lines, then `<mask>`;
the XLM-R tokenizer's ids (SentencePiece id + 1) rely on dict.txt following the SentencePiece
model's piece order, which the import checks.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np

from xlmr_core import XLMRobertaConfig

from .convert import staged_destination, write_formats
from .errors import (
    ConversionError,
    CorruptFileError,
    DestinationExistsError,
    MissingFileError,
    ShapeMismatchError,
    UnknownFormatError,
)
from .formats import DTYPES, FORMAT_FILES, LazyTensor, check_writable, eager
from .progress import human_bytes, say

# ------------------------------------------------------------------ restricted unpickling
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
_TORCH_DTYPE_NAMES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "double", "float", "half", "long", "int", "short",
}  # fmt: skip
_NUMPY_SCALAR_KINDS = "biufc"


class FairseqArgs(dict):
    """What an `argparse.Namespace` in the checkpoint becomes: a dict, also readable as attributes."""

    def __setstate__(self, state):
        self.update(state)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A flat run of elements in the file, read when a tensor over it is loaded."""

    def __init__(self, dtype: np.dtype, numel: int, read):
        self.dtype, self.numel, self.read = dtype, int(numel), read

    def load(self) -> np.ndarray:
        data = np.frombuffer(self.read(), dtype=self.dtype.newbyteorder("<"))
        if data.size < self.numel:
            raise CorruptFileError(f"a tensor storage holds {data.size} elements, {self.numel} expected")
        return data


class _Marker:
    """Stands for a torch class (Parameter, Tensor) that only tags a rebuilt tensor."""

    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> LazyTensor:
    if not isinstance(storage, _Storage):
        raise CorruptFileError("a tensor is rebuilt from something that is not a storage")
    size, stride, offset = tuple(int(d) for d in size), tuple(int(s) for s in stride), int(storage_offset)
    if len(size) != len(stride) or min(size, default=1) < 0 or min(stride, default=0) < 0:
        raise CorruptFileError(f"tensor of size {size} has invalid strides {stride}")
    last = offset + sum((d - 1) * s for d, s in zip(size, stride)) if math.prod(size) else offset - 1
    if offset < 0 or last >= storage.numel:
        raise CorruptFileError(f"tensor of size {size} reaches past its storage of {storage.numel} elements")

    def load():
        flat = storage.load()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
        )
        return np.ascontiguousarray(view).astype(storage.dtype)  # native byte order

    return LazyTensor(size, storage.dtype, load)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type(func, new_type, args, state):
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(new_type, _Marker):
        raise CorruptFileError("a tensor subclass in model.pt is rebuilt in an unexpected way")
    return func(*args)


def _numpy_dtype(name, align=False, copy=True):
    dtype = np.dtype(name)
    if dtype.kind not in _NUMPY_SCALAR_KINDS:
        raise CorruptFileError(f"model.pt holds a numpy value of dtype {name!r}, which is refused")
    return dtype


def _numpy_scalar(dtype, data=None):
    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in _NUMPY_SCALAR_KINDS
        or not isinstance(data, bytes)
    ):
        raise CorruptFileError("model.pt holds a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles spell `bytes` values as `_codecs.encode(str, "latin1")`.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CorruptFileError("model.pt holds an unexpected _codecs.encode call")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _codecs_encode,
    ("argparse", "Namespace"): FairseqArgs,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.nn.parameter", "Parameter"): _Marker("Parameter"),
    ("torch", "Tensor"): _Marker("Tensor"),
    ("torch", "Size"): tuple,
    ("torch", "device"): str,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, storages):
        super().__init__(file, encoding="utf-8")
        self.path = path
        self.storages = storages  # (key, dtype, numel) -> _Storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return f"torch.{name}"
        raise CorruptFileError(
            f"{self.path}: refused to load: the pickle needs {module}.{name}, which is neither a tensor "
            "nor a plain container (nothing in the file was run)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 5):
            raise CorruptFileError(f"{self.path}: unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CorruptFileError(f"{self.path}: storage of unknown type {storage_type!r}")
        view = pid[5] if len(pid) > 5 else None
        storage = self.storages(str(key), storage_type.dtype, int(numel))
        if view is not None:  # legacy files: a view into a larger storage
            _view_key, offset, view_numel = view
            base = storage
            storage = _Storage(
                base.dtype,
                view_numel,
                lambda: base.read()[
                    offset * base.dtype.itemsize : (offset + view_numel) * base.dtype.itemsize
                ],
            )
        return storage


def _load_zip(path: Path):
    archive = zipfile.ZipFile(path)
    pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
    if len(pickles) != 1:
        raise CorruptFileError(f"{path}: a torch zip archive has exactly one data.pkl, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder") != b"little":
        raise UnknownFormatError(f"{path}: big-endian torch files are not supported")

    def storage(key, dtype, numel):
        name = f"{prefix}data/{key}"
        if name not in archive.namelist():
            raise CorruptFileError(f"{path}: storage {key} is missing from the archive")
        return _Storage(dtype, numel, lambda: archive.read(name))

    with archive.open(pickles[0]) as f:
        return _RestrictedUnpickler(io.BytesIO(f.read()), path, storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)
    no_storages = lambda *a: (_ for _ in ()).throw(CorruptFileError(f"{path}: unexpected storage"))  # noqa: E731
    try:
        magic = _RestrictedUnpickler(stream, path, no_storages).load()
        if magic != _LEGACY_MAGIC:
            raise UnknownFormatError(
                f"{path}: not a torch checkpoint (no zip archive, no legacy magic number)"
            )
        _RestrictedUnpickler(stream, path, no_storages).load()  # protocol version
        sys_info = _RestrictedUnpickler(stream, path, no_storages).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise UnknownFormatError(f"{path}: big-endian torch files are not supported")
        found: dict[str, tuple[np.dtype, int]] = {}
        storages: dict[str, _Storage] = {}

        def storage(key, dtype, numel):
            if key not in storages:
                found[key] = (dtype, numel)
                storages[key] = _Storage(dtype, numel, lambda: blobs[key])
            return storages[key]

        blobs: dict[str, bytes] = {}
        obj = _RestrictedUnpickler(stream, path, storage).load()
        keys = _RestrictedUnpickler(stream, path, no_storages).load()
        for key in keys:
            (count,) = struct.unpack("<q", stream.read(8))
            dtype = found.get(str(key), (np.dtype(np.uint8), 0))[0]
            blob = stream.read(count * dtype.itemsize)
            if len(blob) != count * dtype.itemsize:
                raise CorruptFileError(f"{path}: truncated (storage {key})")
            blobs[str(key)] = blob
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError) as error:
        raise CorruptFileError(f"{path}: corrupt or truncated torch file ({error})") from None
    return obj


def load_fairseq_checkpoint(path: str | os.PathLike):
    """Unpickle a fairseq `model.pt` without running pickled code; tensors come back as `LazyTensor`s."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError) as error:
        if isinstance(error, ConversionError):
            raise
        raise CorruptFileError(f"{path}: corrupt or truncated torch file ({error})") from None


# ------------------------------------------------------------------ names and config
_LAYER_RENAMES = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
_EMBEDDING_RENAMES = {
    "embed_tokens": "word_embeddings",
    "embed_positions": "position_embeddings",
    "emb_layer_norm": "LayerNorm",
    "layernorm_embedding": "LayerNorm",
}
# Buffers fairseq saves that are not weights.
_IGNORED = re.compile(r"(^|\.)(version|_float_tensor)$")
_ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh"}


def _split_rows(tensor: LazyTensor, part: int, parts: int = 3) -> LazyTensor:
    rows = tensor.shape[0] // parts
    load = tensor.load
    return LazyTensor(
        (rows, *tensor.shape[1:]), tensor.dtype, lambda: load()[part * rows : (part + 1) * rows]
    )


def rename_fairseq_state(model: dict[str, LazyTensor]) -> tuple[dict[str, LazyTensor], list[str]]:
    """Fairseq RoBERTa names -> canonical names; returns the state and the skipped classification heads."""
    prefixes = {name.split(".", 1)[0] for name in model if ".sentence_encoder." in name}
    if len(prefixes) != 1:
        raise UnknownFormatError(
            "model.pt does not look like a fairseq RoBERTa / XLM-R model: no `encoder.sentence_encoder.` "
            "(or older `decoder.sentence_encoder.`) weights"
        )
    root = prefixes.pop()
    state: dict[str, LazyTensor] = {}
    skipped, unknown = [], []
    for name, tensor in model.items():
        if _IGNORED.search(name):
            continue
        if not isinstance(tensor, LazyTensor):
            raise CorruptFileError(f"model.pt entry {name!r} is a {type(tensor).__name__}, not a tensor")
        rest = name[len(root) + 1 :] if name.startswith(root + ".") else None
        match = re.fullmatch(r"sentence_encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", rest or "")
        if match:
            index, module, leaf = match.groups()
            target = f"roberta.encoder.layer.{index}."
            if module == "self_attn.in_proj":  # fused q, k, v (older releases)
                continue
            if module not in _LAYER_RENAMES:
                unknown.append(name)
                continue
            state[target + f"{_LAYER_RENAMES[module]}.{leaf}"] = tensor
            continue
        match = re.fullmatch(r"sentence_encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", rest or "")
        if match:
            index, leaf = match.groups()
            if tensor.shape[0] % 3:
                raise ShapeMismatchError(f"{name} has {tensor.shape[0]} rows, not a multiple of 3 (q, k, v)")
            for part, target in enumerate(("query", "key", "value")):
                state[f"roberta.encoder.layer.{index}.attention.self.{target}.{leaf}"] = _split_rows(
                    tensor, part
                )
            continue
        match = re.fullmatch(r"sentence_encoder\.(\w+)\.(weight|bias)", rest or "")
        if match and match.group(1) in _EMBEDDING_RENAMES:
            state[f"roberta.embeddings.{_EMBEDDING_RENAMES[match.group(1)]}.{match.group(2)}"] = tensor
            continue
        match = re.fullmatch(r"lm_head\.(dense|layer_norm)\.(weight|bias)|lm_head\.(weight|bias)", rest or "")
        if match:
            if match.group(3) == "weight":
                state["lm_head.decoder.weight"] = tensor
            elif match.group(3) == "bias":
                state["lm_head.bias"] = tensor
            else:
                state[f"lm_head.{match.group(1)}.{match.group(2)}"] = tensor
            continue
        if re.match(r"classification_heads\.", rest or ""):
            skipped.append(name)
            continue
        unknown.append(name)
    if unknown:
        raise UnknownFormatError(f"model.pt has weights this importer does not know: {unknown[:8]}")
    return state, skipped


def _model_args(checkpoint) -> dict:
    if isinstance(checkpoint.get("args"), dict):
        return dict(checkpoint["args"])
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        return dict(cfg["model"])
    return {}


def fairseq_config(state: dict[str, LazyTensor], args: dict, vocab_size: int) -> XLMRobertaConfig:
    """The XLM-R config of a fairseq RoBERTa encoder, from its arguments and weight shapes."""
    if args.get("encoder_normalize_before"):
        raise UnknownFormatError(
            "model.pt is a pre-LayerNorm encoder (encoder_normalize_before); XLM-R is post-LN"
        )
    embeddings = state["roberta.embeddings.word_embeddings.weight"]
    layers = {int(n.split(".")[3]) for n in state if n.startswith("roberta.encoder.layer.")}
    if layers != set(range(len(layers))):
        raise CorruptFileError(f"model.pt encoder layers are not numbered 0..N-1: {sorted(layers)}")
    heads = args.get("encoder_attention_heads")
    if heads is None:
        raise CorruptFileError("model.pt does not record encoder_attention_heads in its args / cfg")
    activation = args.get("activation_fn", "gelu")
    if activation not in _ACTIVATIONS:
        raise UnknownFormatError(f"model.pt uses activation {activation!r}, which XLM-R does not have")
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=embeddings.shape[1],
        num_hidden_layers=len(layers),
        num_attention_heads=int(heads),
        intermediate_size=state["roberta.encoder.layer.0.intermediate.dense.weight"].shape[0],
        hidden_act=_ACTIVATIONS[activation],
        hidden_dropout_prob=float(args.get("dropout", 0.1)),
        attention_probs_dropout_prob=float(args.get("attention_dropout", 0.1)),
        max_position_embeddings=state["roberta.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=1,
        layer_norm_eps=1e-5,  # fairseq's LayerNorm default
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        architectures=["XLMRobertaForMaskedLM"],
    )


def read_dictionary(path: Path) -> list[str]:
    """The tokens of a fairseq `dict.txt` (`<token> <count>` per line), in order."""
    tokens = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.rstrip()
        if not line:
            continue
        token, _, count = line.rpartition(" ")
        if count == "#fairseq:overwrite":
            token, _, count = token.rpartition(" ")
        if not token or not count.lstrip("-").isdigit():
            raise CorruptFileError(f"{path}:{number}: expected '<token> <count>', got {line!r}")
        tokens.append(token)
    return tokens


def check_vocabulary(tokens: list[str], rows: int, spm_path: Path | None) -> None:
    """The embedding has one row per fairseq id, and dict.txt follows the SentencePiece pieces."""
    expected = 4 + len(tokens) + 1  # <s> <pad> </s> <unk>, dict.txt, <mask>
    if rows != expected:
        raise ShapeMismatchError(
            f"the embedding has {rows} rows, but dict.txt gives {expected} ids "
            f"(4 specials + {len(tokens)} lines + <mask>)"
        )
    if spm_path is None:
        return
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.Load(os.fspath(spm_path))
    except (OSError, RuntimeError) as error:
        raise CorruptFileError(f"{spm_path}: not a SentencePiece model ({error})") from None
    if processor.get_piece_size() != len(tokens) + 3:
        raise ShapeMismatchError(
            f"{spm_path.name} has {processor.get_piece_size()} pieces, dict.txt {len(tokens)} lines; "
            "XLM-R ids need pieces = lines + 3 (<unk>, <s>, </s>)"
        )
    for line, token in enumerate(tokens):
        piece = processor.id_to_piece(line + 3)
        if piece != token:
            raise CorruptFileError(
                f"dict.txt line {line + 1} is {token!r} but SentencePiece piece {line + 3} is {piece!r}: "
                "tokenizer ids would not match the embedding rows"
            )


def write_tokenizer_files(spm_path: Path | None, stage: Path, quiet: bool) -> None:
    if spm_path is None:
        say(
            "note: no sentencepiece.bpe.model in the fairseq directory; no tokenizer files written",
            quiet=quiet,
        )
        return
    try:
        from xlmr_core import XLMRobertaTokenizerFast

        XLMRobertaTokenizerFast(vocab_file=spm_path).save_pretrained(stage)
    except (ImportError, ValueError) as error:
        say(
            f"note: could not build tokenizer.json ({error}); copying the SentencePiece model only",
            quiet=quiet,
        )
    if not (stage / "sentencepiece.bpe.model").is_file():
        (stage / "sentencepiece.bpe.model").write_bytes(spm_path.read_bytes())


def import_fairseq(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    dtype: str | None = None,
    max_shard_size=None,
    extra_formats=(),
    overwrite: bool = False,
    quiet: bool = False,
) -> None:
    """Import the fairseq XLM-R directory `source` into the shared format at `destination`."""
    source, destination = Path(source), Path(destination)
    extra_formats = list(extra_formats)
    check_writable(extra_formats)
    if destination.exists() and not overwrite:
        raise DestinationExistsError(f"{destination} exists; pass --overwrite to replace it")
    for required in ("model.pt", "dict.txt"):
        if not (source / required).is_file():
            raise MissingFileError(f"no {required} in {source} (a fairseq release has model.pt and dict.txt)")
    spm_path = source / "sentencepiece.bpe.model"
    spm_path = spm_path if spm_path.is_file() else None

    checkpoint = load_fairseq_checkpoint(source / "model.pt")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise UnknownFormatError(f"{source / 'model.pt'} is not a fairseq checkpoint (no 'model' dict)")
    state, skipped = rename_fairseq_state(checkpoint["model"])
    if skipped:
        say(f"note: fairseq classification heads are not imported: {sorted(skipped)}", quiet=quiet)
    for required in ("word_embeddings", "position_embeddings"):
        if f"roberta.embeddings.{required}.weight" not in state:
            raise CorruptFileError(f"model.pt has no {required} (fairseq embed_tokens / embed_positions)")
    embeddings = state["roberta.embeddings.word_embeddings.weight"]
    check_vocabulary(read_dictionary(source / "dict.txt"), embeddings.shape[0], spm_path)
    config = fairseq_config(state, _model_args(checkpoint), embeddings.shape[0])

    hidden = config.hidden_size
    state["roberta.embeddings.token_type_embeddings.weight"] = eager(np.zeros((1, hidden), embeddings.dtype))
    decoder = state.get("lm_head.decoder.weight")
    if decoder is not None and decoder.shape == embeddings.shape:
        if np.array_equal(decoder.load(), embeddings.load()):
            del state["lm_head.decoder.weight"]  # tied, as in every XLM-R release
    if "lm_head.decoder.weight" in state:
        config = config.copy(tie_word_embeddings=False)
    _check_shapes(state, config)
    if dtype is not None:
        state = {name: tensor.cast(DTYPES[dtype]) for name, tensor in state.items()}
        config = config.copy(torch_dtype=dtype)

    total = sum(t.nbytes for t in state.values())
    say(f"{source} (fairseq, {len(state)} tensors, {human_bytes(total)}) -> {destination}", quiet=quiet)
    with staged_destination(destination, overwrite=overwrite) as stage:
        write_formats(stage, state, config, extra_formats, max_shard_size=max_shard_size, quiet=quiet)
        write_tokenizer_files(spm_path, stage, quiet)
    say(
        f"wrote {destination}: model.safetensors{''.join(', ' + FORMAT_FILES[f] for f in extra_formats)}",
        quiet=quiet,
    )


def _check_shapes(state: dict[str, LazyTensor], config: XLMRobertaConfig) -> None:
    from .architecture import expected_shapes

    expected = expected_shapes(config, "ForMaskedLM")
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != expected[name]:
            raise ShapeMismatchError(
                f"{name} has shape {list(tensor.shape)}, the config implies {list(expected[name])}"
            )
    missing = [name for name in expected if name not in state]
    if missing:
        raise CorruptFileError(f"model.pt lacks weights: {missing[:8]}")
