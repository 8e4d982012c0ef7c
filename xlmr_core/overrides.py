"""Which keyword overrides `from_pretrained` takes, and what a caller's label maps mean.

Keys read from a `config.json` are kept whatever they are (published files carry many we do
not model). Keywords a caller passes are different: a typo (`num_lables=3`) or a keyword of
the reference library's hub loader (`cache_dir=...`) would otherwise be written into the
next `config.json` and do nothing, so each is either a config field, a keyword this project
honours, or an `UnknownKeywordError` (a `ConfigError`) naming it. The rules live here once; every framework's
`from_pretrained` and `XLMRobertaConfig.from_pretrained` reach them through `from_dict`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import short

LABEL_KEYS = ("num_labels", "id2label", "label2id")

_NO_HUB = "nothing is downloaded or cached here; pass a local checkpoint directory"
_ANY_FILE = "every weights file in the directory is read without a flag"
_AFTER_LOADING = "load, then move the model (torch: model.to(device)); JAX and TF place arrays themselves"
_QUANTIZE = "quantize after loading (torch.ao.quantization.quantize_dynamic, or xlmr-convert --quantize int8)"

# Keywords of the reference library's `from_pretrained` that are not config fields and that
# this project does not implement, with what to do instead. Refused rather than ignored: each
# of them asks for a behaviour (a download, a placement, a quantization) that would not happen.
REFERENCE_LOADER_KEYWORDS: dict[str, str] = {
    "cache_dir": _NO_HUB,
    "force_download": _NO_HUB,
    "resume_download": _NO_HUB,
    "proxies": _NO_HUB,
    "revision": _NO_HUB,
    "token": _NO_HUB,
    "use_auth_token": _NO_HUB,
    "mirror": _NO_HUB,
    "subfolder": "pass the subfolder's own path as the directory",
    "device_map": _AFTER_LOADING,
    "max_memory": _AFTER_LOADING,
    "offload_folder": _AFTER_LOADING,
    "offload_state_dict": _AFTER_LOADING,
    "from_tf": _ANY_FILE,
    "from_pt": _ANY_FILE,
    "from_flax": _ANY_FILE,
    "use_safetensors": _ANY_FILE + " (safetensors first)",
    "variant": "pass the directory holding the variant's files",
    "low_cpu_mem_usage": "loading is always tensor by tensor, without a second copy",
    "quantization_config": _QUANTIZE,
    "load_in_8bit": _QUANTIZE,
    "load_in_4bit": _QUANTIZE,
    "attn_implementation": "attention always runs on the framework's fused kernel where it can",
    "state_dict": "load the directory, then assign the weights (torch: model.load_state_dict)",
    "return_unused_kwargs": "unknown keywords are errors, so none are ever unused",
}

# Fields the reference writes into config.json (the weights' dtype) that are also loader keywords:
# a config takes them as overrides, but a model's `from_pretrained` that did not consume them
# itself must refuse them rather than write them into the next config.json.
DTYPE_FIELDS = ("torch_dtype", "dtype")
DTYPE_HINT = (
    "{key} is not a keyword of this framework's from_pretrained (torch: dtype= or torch_dtype=; "
    "Flax: dtype= and param_dtype=; TF: keras.mixed_precision.set_global_policy before loading)"
)

# Reference loader keywords whose meaning this project always has: {keyword: accepted values}.
# They are checked and dropped, never written to config.json.
HONOURED_KEYWORDS: dict[str, tuple[Any, ...]] = {
    "local_files_only": (True, False),  # only local files are ever read; nothing is fetched
    "trust_remote_code": (False,),  # no code from a checkpoint is ever run
}


def override_problem(key: str, value: Any, known: Iterable[str]) -> str | None:
    """Why the keyword `key=value` cannot be applied to a config, or None when it can.

    `known` holds the config's fields and the keys of the file being loaded; the label keys
    are always known. `HONOURED_KEYWORDS` are checked here and must then be dropped.
    """
    known = set(known) | set(LABEL_KEYS)
    if key in HONOURED_KEYWORDS:
        if any(value is allowed for allowed in HONOURED_KEYWORDS[key]):
            return None
        allowed = " or ".join(map(repr, HONOURED_KEYWORDS[key]))
        return (
            f"{key}={short(value, 40)} is not supported, only {allowed}: xlmr reads local files "
            "and runs no code from a checkpoint"
        )
    if key in known:
        return None
    if key in REFERENCE_LOADER_KEYWORDS:
        return (
            f"{key} is a keyword of the reference library's loader that xlmr does not implement: "
            f"{REFERENCE_LOADER_KEYWORDS[key]}"
        )
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"unknown keyword {short(key, 60)}: not a field of XLMRobertaConfig nor a keyword of "
        f"from_pretrained{hint}"
    )


def caller_labels(file_dict: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any] | None:
    """`num_labels`, `id2label` and `label2id` for a config built from `file_dict` and `overrides`,
    or None when the file's own label maps stand.

    The caller's maps replace the file's (the config checks that they agree with each other and
    with `num_labels`). `num_labels` alone keeps the file's names when the count is the same (as
    the reference does) and gives generic `LABEL_i` names otherwise.
    """
    if "id2label" in overrides or "label2id" in overrides:
        return {key: overrides.get(key) for key in LABEL_KEYS}
    if "num_labels" not in overrides:
        return None
    file_names = file_dict.get("id2label")
    if isinstance(file_names, Mapping) and len(file_names) == overrides["num_labels"]:
        return None
    return {"num_labels": overrides["num_labels"], "id2label": None, "label2id": None}
