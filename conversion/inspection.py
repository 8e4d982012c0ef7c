"""`inspect`: what a checkpoint directory holds, from its headers (no framework), and which tensors
hold NaN or infinite values (the only pass over the data, in bounded row blocks)."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from xlmr_core.architecture import detect_heads, expected_shapes
from xlmr_core.checkpoint import (
    canonicalize,
    check_shapes,
    describe_non_finite,
    detect_format,
    non_finite,
    open_checkpoint,
)
from xlmr_core.weight_mapping import match_checkpoint

from .convert import TOKENIZER_FILES, read_config
from .errors import EXIT_OK
from .progress import human_bytes

_CONFIG_FIELDS = (
    "architectures",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "position_embedding_type",
    "hidden_act",
    "layer_norm_eps",
    "tie_word_embeddings",
    "is_decoder",
    "num_labels",
)


def summarize(directory: str | os.PathLike) -> dict:
    """The facts `inspect` prints, as a dict (`non_finite`: `{name: {"nan": n, "inf": m}}`)."""
    directory = Path(directory)
    detect_format(directory)  # a missing or foreign directory is named before its config
    config = read_config(directory)
    with open_checkpoint(directory) as checkpoint:
        # Compare the tensors as the shared format stores them (derived buffers and alias names dropped).
        tensors = canonicalize(checkpoint.tensors, config.tie_word_embeddings)
        check_shapes(tensors, config, checkpoint.files[0])
        heads = detect_heads(tensors, config)
        dtypes = collections.Counter(str(t.dtype) for t in tensors.values())
        summary = {
            "directory": str(directory),
            "format": checkpoint.format,
            "files": {p.name: p.stat().st_size for p in checkpoint.files},
            "tokenizer_files": [name for name in TOKENIZER_FILES if (directory / name).is_file()],
            "config": {field: getattr(config, field) for field in _CONFIG_FIELDS},
            "tensors": len(tensors),
            "parameters": sum(int(t.nbytes // t.dtype.itemsize) for t in tensors.values()),
            "bytes": sum(t.nbytes for t in tensors.values()),
            "dtypes": dict(dtypes),
            "heads": heads,
            "missing": [],
            "unexpected": [],
        }
        expected: dict[str, tuple] = {}
        for head in heads:
            expected.update(expected_shapes(config, head))
        report = match_checkpoint(expected, tensors)
        summary["missing"] = list(report.missing)
        summary["unexpected"] = list(report.unexpected)
        # The one look at the data: NaN/inf weights load, but are named here.
        summary["non_finite"] = non_finite(tensors)
    return summary


def inspect(directory: str | os.PathLike, *, as_json: bool = False) -> int:
    summary = summarize(directory)
    if as_json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    config = summary["config"]
    print(f"checkpoint   {summary['directory']}  ({summary['format']})")
    for name, size in summary["files"].items():
        print(f"  file       {name}  {human_bytes(size)}")
    print(f"  tokenizer  {', '.join(summary['tokenizer_files']) or '(none)'}")
    print(
        f"model        {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
        f"{config['num_attention_heads']} heads, intermediate {config['intermediate_size']}, "
        f"vocab {config['vocab_size']}, positions {config['max_position_embeddings']} "
        f"({config['position_embedding_type']}), {config['hidden_act']}"
    )
    print(f"  config     architectures={config['architectures']} tie={config['tie_word_embeddings']}")
    size = human_bytes(summary["bytes"])
    print(f"parameters   {summary['parameters']:,} in {summary['tensors']} tensors, {size}")
    print(f"dtypes       {', '.join(f'{k} x{v}' for k, v in summary['dtypes'].items())}")
    print(f"heads        {', '.join(summary['heads'])}")
    print(f"missing      {', '.join(summary['missing']) or '(none)'}")
    print(f"unexpected   {', '.join(summary['unexpected']) or '(none)'}")
    lines = describe_non_finite(summary["non_finite"]) or ["(none)"]
    print(f"non-finite   {lines[0]}")
    for line in lines[1:]:
        print(f"             {line}")
    return EXIT_OK
