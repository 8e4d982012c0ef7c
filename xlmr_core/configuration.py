"""`XLMRobertaConfig`: the one object that describes an XLM-RoBERTa network.

Fields and defaults follow the reference documentation, so a `config.json` from a
published checkpoint loads unchanged and one written here loads in the reference.
Keys we do not know are kept and written back, never dropped.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_text
from .errors import OneLineError, short
from .json_text import parse_json
from .overrides import DTYPE_FIELDS, HONOURED_KEYWORDS, caller_labels, override_problem

CONFIG_NAME = "config.json"


class ConfigError(OneLineError, ValueError):
    """A config (a `config.json` or keyword arguments) that cannot describe a network we can build."""


class UnknownKeywordError(ConfigError):
    """A keyword override that is neither a config field nor a keyword `from_pretrained` honours."""


# Documented caps, checked by `validate()` before any framework allocates anything. The largest
# published XLM-R (XXL) has 48 layers and 10.7 billion parameters.
MAX_HIDDEN_LAYERS = 256
MAX_PARAMETERS = 20_000_000_000
# Float32 activations of one sequence of `max_position_embeddings` tokens through one layer
# (attention scores, relative-position terms, feed-forward and vocabulary rows): 64 GiB.
MAX_ACTIVATION_BYTES = 64 * 2**30
MAX_LABELS = 1_000_000
# A config.json is a few kB (a label map of a million names a few tens of MB); values nest a few levels.
MAX_CONFIG_BYTES = 64_000_000
MAX_VALUE_DEPTH = 32

POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# Field -> default, in the order `to_dict` writes them.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "position_embedding_type": "absolute",
    "use_cache": True,
    "classifier_dropout": None,
    "is_decoder": False,
    "add_cross_attention": False,
    "problem_type": None,
    "tie_word_embeddings": True,
    "output_attentions": False,
    "output_hidden_states": False,
    "return_dict": True,
    "architectures": None,
}

# Shapes of the published checkpoints (weights are not bundled).
PRESETS: dict[str, dict[str, Any]] = {
    "xlm-roberta-base": {
        "vocab_size": 250002,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
    },
    "xlm-roberta-large": {
        "vocab_size": 250002,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
    },
}


class XLMRobertaConfig:
    """Hyper-parameters of an XLM-RoBERTa model.

    Every keyword of the reference `XLMRobertaConfig` is accepted with the same default;
    `num_labels` (or `id2label` / `label2id`, which must agree) sizes the classification heads.
    Unknown keywords given to the constructor (as a `config.json`'s keys are) are stored as
    attributes and survive a save/load round trip; overrides given to `from_pretrained`,
    `from_dict` or `copy` must name a field (see `xlmr_core.overrides`).
    """

    model_type = "xlm-roberta"

    def __init__(self, num_labels: int | None = None, id2label=None, label2id=None, **kwargs):
        # Nesting is bounded before anything copies a value (deepcopy and json recurse).
        for key, value in (("id2label", id2label), ("label2id", label2id), *kwargs.items()):
            _check_depth(key, value)
        for key, default in _DEFAULTS.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        # Written by other tools; meaningless here but preserved.
        kwargs.pop("model_type", None)
        self._extra: dict[str, Any] = dict(kwargs)
        for key, value in kwargs.items():
            # Never shadow a method, a derived property or this object's own bookkeeping.
            if not hasattr(type(self), key) and key != "_extra":
                setattr(self, key, value)
        self._set_labels(num_labels, id2label, label2id)
        self.validate()

    # ----------------------------------------------------------------- labels
    def _set_labels(self, num_labels, id2label, label2id) -> None:
        if num_labels is not None:
            _check_int("num_labels", num_labels, minimum=1, maximum=MAX_LABELS)
        if id2label is not None:
            id2label = {_label_index("id2label", k): str(v) for k, v in _label_map("id2label", id2label)}
        if label2id is not None:
            label2id = {str(k): _label_index("label2id", v) for k, v in _label_map("label2id", label2id)}
        if id2label is None and label2id is not None:
            id2label = {v: k for k, v in label2id.items()}
            if len(id2label) != len(label2id):
                raise ConfigError(f"label2id maps two names to one id: {short(label2id, 120)}")
        if num_labels is not None and id2label is not None and len(id2label) != num_labels:
            raise ConfigError(
                f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} entries"
            )
        if id2label is None:
            id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
        inverse = {v: k for k, v in id2label.items()}
        if label2id is not None and label2id != inverse:
            raise ConfigError(
                f"label2id {short(label2id, 100)} is not the inverse of id2label {short(id2label, 100)}"
            )
        self.id2label = id2label
        self.label2id = inverse

    @property
    def num_labels(self) -> int:
        """Number of outputs of the classification heads (`len(id2label)`)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        # The same count keeps the names (as the reference's setter does).
        if value != self.num_labels:
            self._set_labels(value, None, None)

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise `ConfigError` naming the field when the config cannot describe a network.

        Types and ranges of every field first, then the sizes: more than `MAX_HIDDEN_LAYERS`
        layers, `MAX_PARAMETERS` parameters or `MAX_ACTIVATION_BYTES` of activations per
        sequence is refused here, before any framework allocates or builds anything.
        """
        for key in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, key)
            if not _is_int(value) or value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {short(value, 60)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) is not a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        for key, choices in (
            ("position_embedding_type", POSITION_EMBEDDING_TYPES),
            ("hidden_act", ACTIVATIONS),
            ("problem_type", PROBLEM_TYPES),
        ):
            value = getattr(self, key)
            if not (value is None or isinstance(value, str)) or value not in choices:
                raise ConfigError(f"unknown {key} {short(value, 60)}; expected one of {choices}")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, key)
            if value is None and key == "classifier_dropout":
                continue
            if not _is_real(value) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{key} must be a number in [0, 1), got {short(value, 60)}")
        for key, low_open in (("initializer_range", False), ("layer_norm_eps", True)):
            value = getattr(self, key)
            if not _is_real(value) or not math.isfinite(value) or value < 0 or (low_open and value == 0):
                bound = "> 0" if low_open else ">= 0"
                raise ConfigError(f"{key} must be a finite number {bound}, got {short(value, 60)}")
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or not 0 <= value < self.vocab_size):
                raise ConfigError(
                    f"{key} ({short(value, 40)}) is not an id of the vocabulary (size {self.vocab_size})"
                )
        for key in (
            "use_cache",
            "is_decoder",
            "add_cross_attention",
            "tie_word_embeddings",
            "output_attentions",
            "output_hidden_states",
            "return_dict",
        ):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be true or false, got {short(getattr(self, key), 60)}")
        architectures = self.architectures
        if architectures is not None and (
            not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures)
        ):
            raise ConfigError(f"architectures must be a list of class names, got {short(architectures, 60)}")
        self._check_sizes()

    def _check_sizes(self) -> None:
        if self.num_hidden_layers > MAX_HIDDEN_LAYERS:
            raise ConfigError(
                f"num_hidden_layers={self.num_hidden_layers} is more than the {MAX_HIDDEN_LAYERS} layers "
                "this project builds (MAX_HIDDEN_LAYERS)"
            )
        parameters = self.parameter_count()
        if parameters > MAX_PARAMETERS:
            raise ConfigError(
                f"this config describes {_big(parameters)} parameters ({_big(4 * parameters // 2**30)} GiB "
                f"in float32), over the cap of {MAX_PARAMETERS:.3g} (MAX_PARAMETERS)"
            )
        activations = self.activation_bytes()
        if activations > MAX_ACTIVATION_BYTES:
            raise ConfigError(
                f"one sequence of max_position_embeddings={self.max_position_embeddings} tokens needs "
                f"{_big(activations // 2**30)} GiB of activations per layer, more than the cap of "
                f"{MAX_ACTIVATION_BYTES / 2**30:.3g} GiB (MAX_ACTIVATION_BYTES)"
            )

    def parameter_count(self) -> int:
        """Parameters of the largest model this config builds (encoder, pooler, an untied masked-LM
        head and a classifier), counted from the sizes alone."""
        h, i, v = self.hidden_size, self.intermediate_size, self.vocab_size
        embeddings = (v + self.max_position_embeddings + self.type_vocab_size + 2) * h
        attention = 4 * h * h + 6 * h
        if self.position_embedding_type != "absolute":
            attention += (2 * self.max_position_embeddings - 1) * self.head_dim
        layer = attention + 2 * h * i + i + 3 * h
        if self.add_cross_attention:
            layer += 4 * h * h + 6 * h
        heads = (h * h + h) + (h * h + 3 * h + v * h + v) + (h * h + h) + (h + 1) * self.num_labels
        return embeddings + self.num_hidden_layers * layer + heads

    def activation_bytes(self) -> int:
        """Float32 bytes one layer holds for one sequence of `max_position_embeddings` tokens."""
        n = self.max_position_embeddings
        per_token = (
            self.num_attention_heads * n + self.intermediate_size + self.vocab_size + 4 * self.hidden_size
        )
        if self.position_embedding_type != "absolute":
            per_token += n * self.head_dim
        return 4 * n * per_token

    # ----------------------------------------------------------- derived sizes
    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def max_sequence_length(self) -> int:
        """Longest input (past + new tokens) the position table can describe.

        Absolute positions start at `pad_token_id + 1` (the fairseq convention), so two
        rows of a 514-row table are never used for real tokens.
        """
        if self.position_embedding_type == "absolute":
            offset = 0 if self.pad_token_id is None else self.pad_token_id + 1
            return self.max_position_embeddings - offset
        return self.max_position_embeddings

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values, unknown keys included."""
        out: dict[str, Any] = {key: copy.deepcopy(getattr(self, key)) for key in _DEFAULTS}
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        out["model_type"] = self.model_type
        for key, value in self._extra.items():
            kept_aside = hasattr(type(self), key) or key == "_extra"  # not an attribute (see __init__)
            out[key] = copy.deepcopy(value if kept_aside else getattr(self, key, value))
        return out

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **overrides) -> XLMRobertaConfig:
        """Build from a dict such as `to_dict()` returns; `overrides` win.

        Every key of `config_dict` is kept. Each override must be a config field, a key of
        `config_dict` or a keyword `from_pretrained` honours (`local_files_only`,
        `trust_remote_code=False`), else `UnknownKeywordError` names it. A caller's `id2label` /
        `label2id` replace the file's and must agree with each other and with `num_labels`.
        """
        known = set(_DEFAULTS) | set(config_dict) | set(DTYPE_FIELDS)
        for key, value in overrides.items():
            problem = override_problem(key, value, known)
            if problem:
                raise UnknownKeywordError(problem)
        overrides = {k: v for k, v in overrides.items() if k not in HONOURED_KEYWORDS}
        merged = {**config_dict, **overrides}
        labels = caller_labels(config_dict, overrides)
        file_label2id = None
        if labels is not None:
            merged.update(labels)
        else:
            # Files written by the reference often carry a stale label2id (it does not follow
            # id2label edits): a file's own maps are kept as written, not checked.
            file_label2id = merged.pop("label2id", None)
        config = cls(**merged)
        if file_label2id is not None:
            config.label2id = {
                str(k): _label_index("label2id", v) for k, v in _label_map("label2id", file_label2id)
            }
        return config

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `config.json` into `save_directory` (created if needed), atomically."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"{directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / CONFIG_NAME, self.to_json_string())

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides) -> XLMRobertaConfig:
        """Load a `config.json`; a file that is not a JSON object of valid fields is `ConfigError`."""
        path = Path(path)
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is no config.json (at most 64 MB)")
        data = parse_json(path.read_bytes(), str(path), ConfigError, max_depth=MAX_VALUE_DEPTH)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} does not hold a JSON object")
        try:
            return cls.from_dict(data, **overrides)
        except UnknownKeywordError:
            raise  # about the caller's keyword, not the file
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    @classmethod
    def from_pretrained(cls, name_or_directory: str | os.PathLike, **overrides) -> XLMRobertaConfig:
        """Load `config.json` from a checkpoint directory, or a preset by name.

        `from_pretrained("xlm-roberta-base")` gives the published base shape.
        """
        path = Path(name_or_directory)
        if path.is_dir():
            if not (path / CONFIG_NAME).is_file():
                raise FileNotFoundError(f"no {CONFIG_NAME} in {path}")
            return cls.from_json_file(path / CONFIG_NAME, **overrides)
        if path.is_file():
            return cls.from_json_file(path, **overrides)
        name = str(name_or_directory).split("/")[-1]
        if name in PRESETS:
            return cls.from_dict(PRESETS[name], **overrides)
        raise FileNotFoundError(
            f"{short(os.fspath(name_or_directory), 80)} is neither a checkpoint directory nor a preset "
            f"({', '.join(PRESETS)}); nothing is downloaded from a model hub"
        )

    # --------------------------------------------------------------- niceties
    def copy(self, **overrides) -> XLMRobertaConfig:
        """A new config equal to this one except for `overrides`."""
        return type(self).from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, XLMRobertaConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


# ------------------------------------------------------------------ checks of single values
def _big(number: int) -> str:
    """A possibly huge integer in a few characters (floats overflow past 1e308)."""
    return f"{number:.3g}" if number < 10**300 else f"about 1e{len(str(number)) - 1}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(name: str, value, minimum: int, maximum: int) -> None:
    if not _is_int(value) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be an integer from {minimum} to {maximum}, got {short(value, 60)}")


def _label_map(name: str, value) -> list[tuple]:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
    if len(value) > MAX_LABELS:
        raise ConfigError(f"{name} has {len(value)} entries, more than {MAX_LABELS} (MAX_LABELS)")
    return list(value.items())


def _label_index(name: str, value) -> int:
    """A label index, given as an int or (in JSON keys) a decimal string."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
        value = int(value)
    if not _is_int(value) or not 0 <= value < MAX_LABELS:
        raise ConfigError(f"{name}: {short(value, 40)} is not a label index (0 to {MAX_LABELS - 1})")
    return value


def _check_depth(name: str, value) -> None:
    """Refuse values nested deeper than `MAX_VALUE_DEPTH` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple, set)):
            if depth > MAX_VALUE_DEPTH:
                raise ConfigError(f"{short(name, 60)} is nested more than {MAX_VALUE_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
