"""`from-fairseq`: import an original fairseq XLM-R release (model.pt, dict.txt, sentencepiece.bpe.model).

`model.pt` is a `torch.save` pickle, read without torch and without running any pickled code
by the same restricted unpickler that reads `pytorch_model.bin` (`xlmr_core.formats.torch_pickle`):
it rebuilds tensors and plain containers only and refuses, naming it, any other global.

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

import os
import re
from pathlib import Path

import numpy as np

from xlmr_core import XLMRobertaConfig
from xlmr_core.architecture import expected_shapes
from xlmr_core.checkpoint import FLOAT_DTYPES, FORMAT_FILES, check_writable
from xlmr_core.errors import short
from xlmr_core.formats import torch_pickle
from xlmr_core.formats.base import LazyTensor, eager

from .convert import staged_destination, write_formats
from .errors import (
    CorruptFileError,
    DestinationExistsError,
    MissingFileError,
    ShapeMismatchError,
    UnknownFormatError,
)
from .progress import human_bytes, say


def load_fairseq_checkpoint(path: str | os.PathLike):
    """Unpickle a fairseq `model.pt` without running pickled code; tensors come back as `LazyTensor`s."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist")
    return torch_pickle.load(path)


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
            raise CorruptFileError(f"model.pt entry {short(name)} is a {type(tensor).__name__}, not a tensor")
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
        raise UnknownFormatError(
            f"model.pt uses activation {short(activation, 40)}, which XLM-R does not have"
        )
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
            raise CorruptFileError(f"{path}:{number}: expected '<token> <count>', got {short(line, 60)}")
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
        state = {name: tensor.cast(FLOAT_DTYPES[dtype]) for name, tensor in state.items()}
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
    expected = expected_shapes(config, "ForMaskedLM")
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != expected[name]:
            raise ShapeMismatchError(
                f"{name} has shape {list(tensor.shape)}, the config implies {list(expected[name])}"
            )
    missing = [name for name in expected if name not in state]
    if missing:
        raise CorruptFileError(f"model.pt lacks weights: {missing[:8]}")
