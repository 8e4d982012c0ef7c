"""Partition rules for training and running `FlaxXLMRoberta*` models on a 2-D device mesh.

The mesh has two axes, `"data"` and `"model"`. A *layout* says what each axis does:

- `"dp"`: data parallel. The batch is split over `"data"`; parameters and optimizer
  state are replicated on every device.
- `"fsdp"`: data parallel with parameters, gradients and optimizer state sharded over
  `"data"` too (ZeRO-3 / FSDP); XLA gathers each weight when a layer needs it.
- `"tp"`: tensor parallel over `"model"`. Attention heads (query/key/value columns and
  the output projection's rows), the feed-forward hidden units and the vocabulary rows
  of the (tied) word embedding are split over `"model"`; the batch over `"data"`.
- `"fsdp_tp"`: both: tensor parallel over `"model"` and the remaining dimension of each
  matrix sharded over `"data"`.

    mesh = make_mesh(data=2, model=2)
    state = create_train_state(model, optimizer, mesh=mesh, layout="fsdp_tp")
    train_step = make_train_step(model, mesh=mesh)       # keeps the state's layout
    state, metrics = train_step(state, batch)            # numpy batch: split over "data"

The rules are written once, as regular expressions over parameter paths
(`roberta/encoder/layer/0/attention/self/query/kernel`) giving *logical* axes per
dimension (`"fsdp"`, `"tp"` or None); the layout maps logical axes to mesh axes. A
dimension that an axis does not divide is left replicated rather than padded (a 37-unit
feed-forward layer on 2 devices, a 250,002-row vocabulary on 4). The results equal a
one-device run up to float rounding: the same program, partitioned by GSPMD.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA, MODEL = "data", "model"
LAYOUTS = {
    "dp": {"fsdp": None, "tp": None},
    "fsdp": {"fsdp": DATA, "tp": None},
    "tp": {"fsdp": None, "tp": MODEL},
    "fsdp_tp": {"fsdp": DATA, "tp": MODEL},
}

# (path pattern, logical axis per dimension). Flax kernels are [in, out]. The first match wins.
PARTITION_RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    # Attention: query/key/value produce the heads (split columns); the output projection
    # consumes them (split rows), so each device computes whole heads and one all-reduce
    # closes the block, as in Megatron-LM.
    (r"attention/self/(query|key|value)/kernel$", ("fsdp", "tp")),
    (r"attention/self/(query|key|value)/bias$", ("tp",)),
    (r"attention/output/dense/kernel$", ("tp", "fsdp")),
    # Feed-forward: the same column-then-row split over the intermediate units.
    (r"intermediate/dense/kernel$", ("fsdp", "tp")),
    (r"intermediate/dense/bias$", ("tp",)),
    (r"layer/\d+/output/dense/kernel$", ("tp", "fsdp")),
    # The word embedding is also the masked/causal LM output matrix: split the vocabulary.
    (r"word_embeddings/embedding$", ("tp", "fsdp")),
    (r"lm_head/bias$", ("tp",)),
    (r"lm_head/decoder/kernel$", ("fsdp", "tp")),  # an untied output matrix, [hidden, vocab]
    # Every other matrix (position tables, heads, pooler): sharded by FSDP only.
    (r".*", ("fsdp", None)),
)
# Vectors not named above (LayerNorm, output biases) are tiny: replicated in every layout.


def make_mesh(data: int | None = None, model: int = 1, devices: Sequence | None = None) -> Mesh:
    """A `("data", "model")` mesh over `devices` (default: all); `data` defaults to the rest."""
    devices = list(jax.devices() if devices is None else devices)
    if data is None:
        data = len(devices) // model
    if data * model != len(devices):
        raise ValueError(f"a {data} x {model} mesh needs {data * model} devices, got {len(devices)}")
    return Mesh(np.asarray(devices).reshape(data, model), (DATA, MODEL))


def _check_layout(layout: str) -> dict:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    return LAYOUTS[layout]


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh, layout: str) -> PartitionSpec:
    """The `PartitionSpec` of the parameter at `path` ("a/b/kernel") with `shape`."""
    axes = _check_layout(layout)
    for pattern, logical in PARTITION_RULES:
        if re.search(pattern, path) and len(logical) == len(shape):
            break
    else:
        return PartitionSpec()
    spec = []
    for size, name in zip(shape, logical):
        axis = axes.get(name) if name else None
        # An axis that does not divide the dimension: replicate it rather than pad it.
        spec.append(axis if axis is not None and size % mesh.shape[axis] == 0 else None)
    return PartitionSpec(*spec)


def param_specs(params, mesh: Mesh, layout: str = "dp"):
    """A tree like `params` of `PartitionSpec`s for `layout`."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {path: spec_for("/".join(map(str, path)), tuple(x.shape), mesh, layout) for path, x in flat.items()}
    )


def param_shardings(params, mesh: Mesh, layout: str = "dp"):
    """A tree like `params` of `NamedSharding`s for `layout`."""
    return jax.tree_util.tree_map(
        lambda spec: NamedSharding(mesh, spec),
        param_specs(params, mesh, layout),
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def _dict_keys(path) -> tuple:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def tree_shardings(tree, params, mesh: Mesh, layout: str = "dp"):
    """Shardings for any pytree holding parameter-shaped leaves (a train state, optimizer
    moments): a leaf whose dictionary path ends with a parameter's path and has its shape
    gets that parameter's sharding; everything else (step counts, keys, scalars) is replicated."""
    flat_params = {path: x for path, x in traverse_util.flatten_dict(params).items()}
    replicated = NamedSharding(mesh, PartitionSpec())

    def sharding(path, leaf):
        keys = _dict_keys(path)
        for start in range(len(keys)):
            param = flat_params.get(keys[start:])
            if param is not None and tuple(param.shape) == tuple(np.shape(leaf)):
                return NamedSharding(mesh, spec_for("/".join(keys[start:]), tuple(param.shape), mesh, layout))
        return replicated

    return jax.tree_util.tree_map_with_path(sharding, tree)


def shard_state(state, mesh: Mesh, layout: str = "dp"):
    """Place a `TrainState` (params, optimizer state, step, dropout key) on `mesh` by `layout`."""
    return jax.device_put(state, tree_shardings(state, state.params, mesh, layout))


def put(x, sharding: NamedSharding) -> jax.Array:
    """A global array with `sharding` from a value every process holds in full (numpy or a
    local array): each process fills only its own devices' shards, so this also works when
    the mesh spans several processes (`jax.distributed`)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_params(params, mesh: Mesh, layout: str = "dp"):
    """Place parameters on `mesh` by `layout` (for a sharded forward pass)."""
    return jax.tree_util.tree_map(put, params, param_shardings(params, mesh, layout))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch axis over `"data"`, replicated over `"model"`."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Split every array of `batch` along its first axis over the mesh's `"data"` axis (every
    process passes the same global batch; each keeps its own shards)."""
    size = mesh.shape[DATA]

    def split(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x  # already a global array
        if np.shape(x)[0] % size:
            raise ValueError(f"batch size {np.shape(x)[0]} is not a multiple of the data axis ({size})")
        return put(x, batch_sharding(mesh))

    return jax.tree_util.tree_map(split, batch)


def bytes_per_device(tree) -> dict:
    """Bytes that the arrays of `tree` occupy on each device, from their shardings."""
    totals: dict = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        if not isinstance(leaf, jax.Array):
            continue
        shard_bytes = int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
        for device in leaf.sharding.device_set:
            totals[device] = totals.get(device, 0) + shard_bytes
    return totals
