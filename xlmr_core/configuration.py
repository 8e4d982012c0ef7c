"""`XLMRobertaConfig`: the one object that describes an XLM-RoBERTa network.

Fields and defaults follow the reference documentation, so a `config.json` from a
published checkpoint loads unchanged and one written here loads in the reference.
Keys we do not know are kept and written back, never dropped.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_text

CONFIG_NAME = "config.json"

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
    `num_labels` (or `id2label` / `label2id`) sizes the classification heads. Unknown
    keywords are stored as attributes and survive a save/load round trip.
    """

    model_type = "xlm-roberta"

    def __init__(self, num_labels: int | None = None, id2label=None, label2id=None, **kwargs):
        for key, default in _DEFAULTS.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        # Written by other tools; meaningless here but preserved.
        kwargs.pop("model_type", None)
        self._extra: dict[str, Any] = dict(kwargs)
        for key, value in kwargs.items():
            if not hasattr(type(self), key):  # never shadow a method or derived property
                setattr(self, key, value)
        self._set_labels(num_labels, id2label, label2id)
        self.validate()

    # ----------------------------------------------------------------- labels
    def _set_labels(self, num_labels, id2label, label2id) -> None:
        if id2label is not None:
            id2label = {int(k): str(v) for k, v in dict(id2label).items()}
        if num_labels is not None and id2label is not None and len(id2label) != num_labels:
            raise ValueError(
                f"num_labels={num_labels} disagrees with id2label, which has {len(id2label)} entries"
            )
        if id2label is None:
            id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
        if label2id is None:
            label2id = {v: k for k, v in id2label.items()}
        self.id2label = id2label
        self.label2id = {str(k): int(v) for k, v in dict(label2id).items()}

    @property
    def num_labels(self) -> int:
        """Number of outputs of the classification heads (`len(id2label)`)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        self._set_labels(int(value), None, None)

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise `ValueError` naming the field when the config cannot describe a network."""
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
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"unknown position_embedding_type {self.position_embedding_type!r}; "
                f"expected one of {POSITION_EMBEDDING_TYPES}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unknown hidden_act {self.hidden_act!r}; expected one of {ACTIVATIONS}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem_type {self.problem_type!r}; expected one of {PROBLEM_TYPES}")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= float(getattr(self, key)) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {getattr(self, key)!r}")
        if self.classifier_dropout is not None and not 0.0 <= float(self.classifier_dropout) < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id ({self.pad_token_id}) is outside the vocabulary (size {self.vocab_size})"
            )

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
            out[key] = copy.deepcopy(value if hasattr(type(self), key) else getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **overrides) -> XLMRobertaConfig:
        """Build from a dict such as `to_dict()` returns; `overrides` win."""
        merged = {**config_dict, **overrides}
        if "num_labels" in overrides:
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        return cls(**merged)

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
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls.from_dict(data, **overrides)

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
            return cls(**{**PRESETS[name], **overrides})
        raise FileNotFoundError(
            f"{name_or_directory!r} is neither a checkpoint directory nor a preset "
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
