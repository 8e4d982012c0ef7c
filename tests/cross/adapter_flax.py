"""Harness adapter for xlmr_flax (see tests/cross/harness.py for the protocol)."""

from __future__ import annotations

import jax
import numpy as np
import optax

import xlmr_flax
from xlmr_core.weight_mapping import to_canonical_state


def _to_numpy(value):
    if isinstance(value, (tuple, list)):
        return tuple(_to_numpy(v) for v in value)
    array = np.asarray(value)
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


def _loss_fn(model, inputs, **options):
    def loss(params):
        return model(**inputs, **options, params=params, return_dict=True).loss

    return loss


def _unused_by_config(model) -> set[str]:
    """Canonical names of parameters the config never reads (PyTorch reports no gradient for them)."""
    if model.config.position_embedding_type == "absolute":
        return set()
    prefix = "" if isinstance(model, xlmr_flax.FlaxXLMRobertaModel) else "roberta."
    return {f"{prefix}embeddings.position_embeddings.weight"}


def _canonical(model, tree) -> dict[str, np.ndarray]:
    from flax import traverse_util

    flat = traverse_util.flatten_dict(tree, sep="/")
    return to_canonical_state({k: np.asarray(v) for k, v in flat.items()}, "flax")


class Adapter:
    name = "flax"

    def load(self, directory, head, **config_overrides):
        return getattr(xlmr_flax, f"FlaxXLMRoberta{head}").from_pretrained(directory, **config_overrides)

    def save(self, model, directory):
        model.save_pretrained(directory)

    def forward(self, model, inputs, **options):
        out = model(**inputs, **options, return_dict=True)
        return {k: _to_numpy(v) for k, v in out.items()}

    def loss_and_grads(self, model, inputs, **options):
        loss, grads = jax.value_and_grad(_loss_fn(model, inputs, **options))(model.params)
        unused = _unused_by_config(model)
        grads = {k: v.astype(np.float64) for k, v in _canonical(model, grads).items() if k not in unused}
        return float(loss), grads

    def sgd_step(self, model, inputs, learning_rate):
        optimizer = optax.sgd(learning_rate)
        grads = jax.grad(_loss_fn(model, inputs))(model.params)
        updates, _ = optimizer.update(grads, optimizer.init(model.params), model.params)
        params = optax.apply_updates(model.params, updates)
        return {k: v.astype(np.float64) for k, v in _canonical(model, params).items()}
