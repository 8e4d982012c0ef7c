"""The one table that maps canonical weight names and layouts to each framework.

Canonical names are the reference PyTorch state-dict names
(`roberta.encoder.layer.0.attention.self.query.weight`), canonical layout is PyTorch's
(a linear weight is `[out, in]`). Each framework spells the same tensors differently:

| tensor            | torch              | tf (Keras)             | flax                   |
|-------------------|--------------------|------------------------|------------------------|
| linear weight     | `weight` [out, in] | `kernel` [in, out]     | `kernel` [in, out]     |
| LayerNorm weight  | `weight`           | `gamma`                | `scale`                |
| LayerNorm bias    | `bias`             | `beta`                 | `bias`                 |
| embedding table   | `weight`           | `embeddings`*          | `embedding`            |
| layer index       | `layer.3`          | `layer_._3`            | `layer/3`              |
| separator         | `.`                | `/`                    | `/`                    |

(*) the reference's TF files call the word-embedding table `weight`; we keep their
spelling so their `tf_model.h5` files map through the same rules.

Everything a framework package needs is here: name translation both ways, state
translation with the transposes, and `match_checkpoint`, which lines a checkpoint up
with the parameters a model expects (base-model prefix, missing/unexpected keys,
shape mismatches).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import CheckpointShapeError, short

BASE_MODEL_PREFIX = "roberta"

# Buffers some checkpoints carry that are derived, never learned.
IGNORED_CHECKPOINT_KEYS = (re.compile(r"(^|\.)position_ids$"),)

_EMBEDDING_MODULES = ("word_embeddings", "position_embeddings", "token_type_embeddings", "distance_embedding")
_LAYER_NORM_MODULES = ("LayerNorm", "layer_norm")


@dataclass(frozen=True)
class FrameworkRules:
    """How one framework names and lays out the canonical tensors."""

    separator: str
    linear_weight: str
    transpose_linear: bool
    layer_norm_weight: str
    layer_norm_bias: str
    embedding_weight: str
    layer_index: str  # how the canonical pair `layer.{i}` is spelled
    embedding_weight_overrides: dict[str, str] = field(default_factory=dict)


RULES: dict[str, FrameworkRules] = {
    "torch": FrameworkRules(".", "weight", False, "weight", "bias", "weight", "layer.{}"),
    "tf": FrameworkRules(
        "/",
        "kernel",
        True,
        "gamma",
        "beta",
        "embeddings",
        "layer_._{}",
        embedding_weight_overrides={"word_embeddings": "weight"},
    ),
    "flax": FrameworkRules("/", "kernel", True, "scale", "bias", "embedding", "layer/{}"),
}
# "tf" is the reference's `tf_model.h5` (Keras `[in, out]` kernels). Our Keras variables take its
# names but keep kernels in the canonical `[out, in]` layout (see `xlmr_tf/dense.py`), so that
# loading copies, or maps, them as they lie in the file.
RULES["tf_variables"] = replace(RULES["tf"], transpose_linear=False)


def parameter_kind(canonical_name: str) -> str:
    """Classify a canonical tensor: `linear_weight`, `linear_bias`, `layer_norm_weight`,
    `layer_norm_bias`, `embedding` or `bias` (a bare parameter such as `lm_head.bias`)."""
    *modules, leaf = canonical_name.split(".")
    if not modules or leaf not in ("weight", "bias"):
        raise KeyError(f"not a canonical XLM-RoBERTa weight name: {canonical_name!r}")
    module = modules[-1]
    if module == "lm_head":
        if leaf != "bias":
            raise KeyError(f"not a canonical XLM-RoBERTa weight name: {canonical_name!r}")
        return "bias"
    if module in _LAYER_NORM_MODULES:
        return f"layer_norm_{leaf}"
    if module in _EMBEDDING_MODULES:
        if leaf != "weight":
            raise KeyError(f"embedding {canonical_name!r} has no {leaf}")
        return "embedding"
    return f"linear_{leaf}"


def _rules(framework: str) -> FrameworkRules:
    try:
        return RULES[framework]
    except KeyError:
        raise ValueError(f"unknown framework {framework!r}; expected one of {tuple(RULES)}") from None


def to_framework_name(canonical_name: str, framework: str) -> str:
    """Translate a canonical name into `framework`'s parameter path."""
    rules = _rules(framework)
    kind = parameter_kind(canonical_name)
    parts = canonical_name.split(".")
    modules, leaf = parts[:-1], parts[-1]
    if kind == "linear_weight":
        leaf = rules.linear_weight
    elif kind == "layer_norm_weight":
        leaf = rules.layer_norm_weight
    elif kind == "layer_norm_bias":
        leaf = rules.layer_norm_bias
    elif kind == "embedding":
        leaf = rules.embedding_weight_overrides.get(modules[-1], rules.embedding_weight)
    out = []
    for i, part in enumerate(modules):
        if part.isdigit() and i > 0 and modules[i - 1] == "layer":
            out[-1] = rules.layer_index.format(part)
        else:
            out.append(part)
    return rules.separator.join([*out, leaf])


def to_canonical_name(framework_name: str, framework: str) -> str:
    """Translate `framework`'s parameter path back into the canonical name."""
    rules = _rules(framework)
    # Spell every encoder layer the canonical way first, then split into modules.
    index_pattern = re.escape(rules.layer_index).replace(r"\{\}", r"(\d+)")
    canonical_path = re.sub(
        rf"(^|{re.escape(rules.separator)}){index_pattern}(?={re.escape(rules.separator)})",
        lambda m: f"{m.group(1)}layer{rules.separator}{m.group(2)}",
        framework_name,
    )
    *canonical_modules, leaf = canonical_path.split(rules.separator)
    module = canonical_modules[-1] if canonical_modules else ""
    if module in _LAYER_NORM_MODULES:
        names = {rules.layer_norm_weight: "weight", rules.layer_norm_bias: "bias"}
    elif module in _EMBEDDING_MODULES:
        names = {rules.embedding_weight_overrides.get(module, rules.embedding_weight): "weight"}
    elif module == "lm_head":
        names = {"bias": "bias"}
    else:
        names = {rules.linear_weight: "weight", "bias": "bias"}
    if leaf not in names:
        raise KeyError(f"{framework} parameter {framework_name!r} does not follow the naming rules")
    canonical = ".".join([*canonical_modules, names[leaf]])
    parameter_kind(canonical)  # validates
    return canonical


def _needs_transpose(canonical_name: str, rules: FrameworkRules) -> bool:
    return rules.transpose_linear and parameter_kind(canonical_name) == "linear_weight"


def to_framework_state(canonical_state: Mapping[str, np.ndarray], framework: str) -> dict[str, np.ndarray]:
    """Rename and re-lay-out a canonical state for `framework` (linear weights transposed)."""
    rules = _rules(framework)
    out = {}
    for name, array in canonical_state.items():
        out[to_framework_name(name, framework)] = array.T if _needs_transpose(name, rules) else array
    return out


def to_canonical_state(framework_state: Mapping[str, np.ndarray], framework: str) -> dict[str, np.ndarray]:
    """Inverse of `to_framework_state`."""
    rules = _rules(framework)
    out = {}
    for name, array in framework_state.items():
        canonical = to_canonical_name(name, framework)
        out[canonical] = array.T if _needs_transpose(canonical, rules) else array
    return out


# ------------------------------------------------------------------- matching
@dataclass
class LoadReport:
    """A checkpoint lined up with a model: `state` holds the model's own names."""

    state: dict[str, Any]  # arrays or `LazyTensor`s: only their shapes are looked at here
    missing: list[str]
    unexpected: list[str]
    # (name, checkpoint shape, model shape) left out of `state`; None unless mismatches are ignored.
    mismatched: list[tuple[str, tuple, tuple]] | None = None

    @property
    def to_initialise(self) -> list[str]:
        """The model's names that get a fresh initialisation: missing, then mismatched."""
        return self.missing + [name for name, _, _ in self.mismatched or ()]


def _is_ignored(name: str) -> bool:
    return any(pattern.search(name) for pattern in IGNORED_CHECKPOINT_KEYS)


def match_checkpoint(
    expected_shapes: Mapping[str, Iterable[int]],
    checkpoint: Mapping[str, np.ndarray],
    *,
    base_model_prefix: str = BASE_MODEL_PREFIX,
    ignore_mismatched_sizes: bool = False,
) -> LoadReport:
    """Line `checkpoint` (canonical names) up with the parameters a model expects.

    A head checkpoint (`roberta.…`) loads into the base model with the prefix stripped
    and the head weights reported unexpected; a base checkpoint loads into a head with
    the prefix added and the head reported missing. Nothing is dropped silently: every
    checkpoint key is either used or listed in `unexpected`. A shape mismatch raises
    `CheckpointShapeError` (a `ValueError`) naming the key and both shapes, unless
    `ignore_mismatched_sizes`: then the tensor is left out and listed in `mismatched`.
    """
    prefix = base_model_prefix + "."
    expects_prefix = any(key.startswith(prefix) for key in expected_shapes)
    has_prefix = any(key.startswith(prefix) for key in checkpoint)

    def rename(key: str) -> str:
        if expects_prefix and not has_prefix and f"{prefix}{key}" in expected_shapes:
            return prefix + key
        if has_prefix and not expects_prefix and key.startswith(prefix):
            return key[len(prefix) :]
        return key

    state: dict[str, np.ndarray] = {}
    unexpected: list[str] = []
    mismatched: list[tuple[str, tuple, tuple]] | None = [] if ignore_mismatched_sizes else None
    for key, array in checkpoint.items():
        if _is_ignored(key):
            continue
        name = rename(key)
        if name not in expected_shapes:
            unexpected.append(key)
            continue
        want = tuple(int(d) for d in expected_shapes[name])
        if tuple(array.shape) != want:
            if mismatched is not None:
                mismatched.append((name, tuple(array.shape), want))
                continue
            raise CheckpointShapeError(
                f"shape mismatch for {short(name)}: checkpoint has {tuple(array.shape)}, model expects {want}"
                + (
                    " (num_labels differs? ignore_mismatched_sizes=True starts a new head)"
                    if name.startswith(("classifier", "qa_outputs"))
                    else ""
                )
            )
        state[name] = array
    ignored = {name for name, _, _ in mismatched or ()}
    missing = [name for name in expected_shapes if name not in state and name not in ignored]
    return LoadReport(state=state, missing=missing, unexpected=unexpected, mismatched=mismatched)
