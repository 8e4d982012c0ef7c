"""`tf_model.h5`: the reference's TF weights, Keras 2's `save_weights` HDF5 layout.

The root attribute `layer_names` lists one group per top-level Keras layer (`roberta`,
`lm_head`, `classifier`, ...); each group's `weight_names` lists `<model scope>/<tf path>:0`,
and the dataset lives at that path inside the group. Names go through the tf rules of
`xlmr_core.weight_mapping`. HDF5 has no bfloat16: such tensors are written as float32,
which holds every bfloat16 value exactly. `h5py` is imported only here, when such a file
is read or written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..weight_mapping import BASE_MODEL_PREFIX, to_canonical_state, to_framework_name, to_framework_state
from .base import BFLOAT16, CheckpointError, LazyTensor, checked_shape, reason, require, short

FILE_NAME = "tf_model.h5"


def _attribute_list(group, name: str) -> list[str]:
    """A list attribute that Keras may have split into `name0`, `name1`, ... (HDF5 header limit)."""
    if name in group.attrs:
        values = list(np.atleast_1d(group.attrs[name]))
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(np.atleast_1d(group.attrs[f"{name}{chunk}"]))
            chunk += 1
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _member(h5py, group, name: str, where: str):
    """`group[name]`, followed one path component at a time through hard links only.

    A soft or external link (or a missing member) is refused before HDF5 follows it: an external
    link would open another file, named by this one."""
    node = group
    for part in name.split("/"):
        if not part:
            continue
        link = node.get(part, getlink=True)
        if link is None:
            raise CheckpointError(f"{where} is listed but missing")
        if not isinstance(link, h5py.HardLink):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise CheckpointError(f"{where} is {kind}; only data stored in the file itself is read")
        node = node[part]
    return node


def _check_storage(h5py, dataset, where: str) -> None:
    """Refuse a dataset whose bytes live outside the file (external raw files, virtual datasets):
    HDF5 would read whatever file the dataset names, a FIFO included."""
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise CheckpointError(f"{where} is a virtual dataset; only data stored in the file itself is read")
    if plist.get_external_count() or layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
        raise CheckpointError(
            f"{where} keeps its data in an external file; only data stored in the file itself is read"
        )


def _dataset_tensor(path: Path, dataset, name: str) -> LazyTensor:
    dtype = np.dtype(dataset.dtype)
    if dtype.kind not in "fiub":
        raise CheckpointError(f"{path}: weight {short(name)} has dtype {dtype}, not a number type")
    shape = checked_shape(list(dataset.shape), f"{path}: weight {short(name)}")

    def read(selection):
        try:
            return np.asarray(dataset[selection])
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{path}: weight {short(name)} cannot be read ({reason(error)})") from None

    def rows(start, stop):
        return read(slice(start, stop))

    return LazyTensor(shape, dtype, lambda: read(()).reshape(shape), rows if shape else None)


def read(path: str | os.PathLike) -> tuple[dict[str, LazyTensor], Callable[[], None]]:
    """Canonical lazy tensors of a `tf_model.h5`, and the function that closes the file."""
    path = Path(path)
    h5py = require("h5py", f"reading {path.name}", "tf")
    try:
        h5 = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({reason(error)})") from None
    try:
        tf_state = _read_layers(path, h5, h5py)
        try:
            tensors = to_canonical_state(tf_state, "tf")  # renames, and transposes kernels lazily
        except KeyError as error:
            raise CheckpointError(f"{path}: {reason(error.args[0])}") from None
    except CheckpointError:
        h5.close()
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
        h5.close()
        raise CheckpointError(f"{path}: not a readable Keras weights file ({reason(error)})") from None
    if tensors and all(name.startswith(BASE_MODEL_PREFIX + ".") for name in tensors):
        # The reference's TF base model scopes everything under `roberta/`; canonical base-model
        # checkpoints (like a PyTorch `XLMRobertaModel`'s) have no prefix.
        tensors = {name[len(BASE_MODEL_PREFIX) + 1 :]: tensor for name, tensor in tensors.items()}
    return tensors, h5.close


def _read_layers(path: Path, h5, h5py) -> dict[str, LazyTensor]:
    layer_names = _attribute_list(h5, "layer_names")
    if not layer_names:
        raise CheckpointError(f"{path}: no 'layer_names' attribute; not a Keras weights file")
    tf_state: dict[str, LazyTensor] = {}
    for layer_name in layer_names:
        group = _member(h5py, h5, layer_name, f"{path}: layer {short(layer_name)}")
        if not isinstance(group, h5py.Group):
            raise CheckpointError(f"{path}: layer {short(layer_name)} is listed but has no group")
        for weight_name in _attribute_list(group, "weight_names"):
            # `tfxlm_roberta_for_masked_lm/roberta/embeddings/...:0`: drop the model scope and `:0`.
            name = re.sub(r":\d+$", "", weight_name.split("/", 1)[-1])
            if name in tf_state:
                continue  # the tied word embeddings are listed again under the LM head
            where = f"{path}: weight {short(weight_name)}"
            dataset = _member(h5py, group, weight_name, where)
            if not isinstance(dataset, h5py.Dataset):
                raise CheckpointError(f"{where} is listed but missing")
            _check_storage(h5py, dataset, where)
            tf_state[name] = _dataset_tensor(path, dataset, weight_name)
    return tf_state


# ------------------------------------------------------------------ writing
def keras_scope(architecture: str | None) -> str:
    """The Keras model name the reference's TF class would get (`tfxlm_roberta_for_masked_lm`)."""
    name = "TF" + (architecture or "XLMRobertaModel").removeprefix("TF").removeprefix("Flax")
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _write_list_attribute(group, name: str, values: list[str]) -> None:
    # HDF5 object headers hold at most 64 kB; Keras splits longer lists into name0, name1, ...
    limit = 64512
    data = np.array([v.encode("utf-8") for v in values])
    chunks = 1
    while any(part.nbytes > limit for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part


def write(
    path: str | os.PathLike, tensors: Mapping[str, LazyTensor], architecture: str | None = None, progress=None
) -> None:
    """Write canonical `tensors` as the reference's `tf_model.h5`, one tensor at a time. Not atomic."""
    h5py = require("h5py", f"writing {Path(path).name}", "tf")
    scope = keras_scope(architecture)
    # The reference's TF classes always scope the encoder under `roberta/`, base model included.
    if not any(name.startswith(BASE_MODEL_PREFIX + ".") for name in tensors):
        tensors = {f"{BASE_MODEL_PREFIX}.{name}": tensor for name, tensor in tensors.items()}
    tf_state = to_framework_state(tensors, "tf")
    weight_names: dict[str, list[str]] = {}
    with h5py.File(path, "w") as h5:
        for tf_path, tensor in tf_state.items():
            layer, weight_name = tf_path.split("/", 1)[0], f"{scope}/{tf_path}:0"
            array = tensor.checked_load(tf_path)
            if array.dtype == BFLOAT16:
                array = array.astype(np.float32)
            h5.require_group(layer).create_dataset(weight_name, data=np.ascontiguousarray(array))
            weight_names.setdefault(layer, []).append(weight_name)
            if progress:
                progress.advance(tensor.nbytes)
        # Like the reference, the LM head also lists the tied word embeddings (a hard link here).
        word = to_framework_name(f"{BASE_MODEL_PREFIX}.embeddings.word_embeddings.weight", "tf")
        if "lm_head" in weight_names and word in tf_state:
            weight_name = f"{scope}/{word}:0"
            h5["lm_head"][weight_name] = h5[BASE_MODEL_PREFIX][weight_name]
            weight_names["lm_head"].append(weight_name)
        _write_list_attribute(h5, "layer_names", list(weight_names))
        h5.attrs["backend"] = "tensorflow"
        for layer, names in weight_names.items():
            _write_list_attribute(h5[layer], "weight_names", names)
