"""Run by tests/flax/test_sharding.py in a fresh interpreter with 4 fake CPU devices:
train on one device and on a 2x2 mesh in every layout, print the comparison as JSON.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python tests/flax/sharding_worker.py HEAD STEPS LAYOUT... [--distributed PROCESS_ID PORT]
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

# `--distributed PROCESS_ID PORT`: one of two processes (2 fake devices each) forming one mesh.
if "--distributed" in sys.argv:
    at = sys.argv.index("--distributed")
    PROCESS_ID, PORT = int(sys.argv[at + 1]), sys.argv[at + 2]
    del sys.argv[at : at + 3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{PORT}", num_processes=2, process_id=PROCESS_ID)

import xlmr_flax
from xlmr_core import XLMRobertaConfig
from xlmr_flax import sharding
from xlmr_flax.training import create_optimizer, create_train_state, make_eval_step, make_train_step

# Every dimension divisible by 2, so each rule really shards (37 or 99 would stay replicated).
CONFIG = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=40,
    max_position_embeddings=64,
    hidden_dropout_prob=0.1,  # dropout on: the key stream must not depend on the layout
    attention_probs_dropout_prob=0.1,
    num_labels=2,
)


def batches(config, head, steps, batch_size=8, length=12):
    rng = np.random.default_rng(0)
    for _ in range(steps):
        ids = rng.integers(3, config.vocab_size, size=(batch_size, length)).astype(np.int32)
        ids[:, 0] = config.bos_token_id
        batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if head == "ForMaskedLM":
            batch["labels"] = np.where(rng.random(ids.shape) < 0.3, ids, -100).astype(np.int32)
        else:
            batch["labels"] = rng.integers(0, 2, size=batch_size).astype(np.int32)
        yield batch


def train(model, steps, mesh=None, layout="dp"):
    optimizer = create_optimizer(1e-3, num_train_steps=steps, num_warmup_steps=1)
    state = create_train_state(model, optimizer, seed=0, mesh=mesh, layout=layout)
    start_bytes = {
        "params": max(sharding.bytes_per_device(state.params).values()),
        "opt_state": max(sharding.bytes_per_device(state.opt_state).values()),
    }
    step = make_train_step(model, mesh=mesh)
    losses = []
    for batch in batches(model.config, HEAD, steps):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return state, losses, start_bytes


def gathered(tree):
    """Every leaf as one numpy array, even when its shards live in other processes."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    return [
        np.asarray(x) for x in jax.tree_util.tree_leaves(multihost_utils.process_allgather(tree, tiled=True))
    ]


def addressable_bytes(tree, device):
    """Bytes actually held on `device` (the shards' own buffers), to check `bytes_per_device`."""
    return sum(
        s.data.nbytes
        for leaf in jax.tree_util.tree_leaves(tree)
        for s in leaf.addressable_shards
        if s.device == device
    )


HEAD = sys.argv[1] if len(sys.argv) > 1 else "ForMaskedLM"
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
LAYOUTS = sys.argv[3:] or list(sharding.LAYOUTS)


def main():
    assert jax.device_count() == 4, jax.devices()
    model = getattr(xlmr_flax, f"FlaxXLMRoberta{HEAD}")(XLMRobertaConfig(**CONFIG), seed=0)
    reference, reference_losses, reference_bytes = train(model, STEPS)
    eval_batch = next(batches(model.config, HEAD, 1))
    reference_logits = np.asarray(make_eval_step(model)(reference.params, eval_batch).logits)
    flat_reference = jax.tree_util.tree_leaves(reference.params)
    report = {"single": {"bytes": reference_bytes, "losses": reference_losses}}
    for layout in LAYOUTS:
        mesh = sharding.make_mesh(data=2, model=2)
        state, losses, start_bytes = train(model, STEPS, mesh, layout)
        params = gathered(state.params)
        logits = gathered(make_eval_step(model, mesh=mesh)(state.params, eval_batch).logits)[0]
        report[layout] = {
            "bytes": start_bytes,
            "bytes_after_training": max(sharding.bytes_per_device(state.params).values()),
            "addressable_bytes": addressable_bytes(state.params, jax.local_devices()[0]),
            "process_count": jax.process_count(),
            "max_param_diff": max(
                float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(params, flat_reference)
            ),
            "max_loss_diff": float(np.abs(np.array(losses) - reference_losses).max()),
            "max_logit_diff": float(np.abs(np.asarray(logits) - reference_logits).max()),
            "query_kernel_spec": str(
                state.params["roberta"]["encoder"]["layer"]["0"]["attention"]["self"]["query"][
                    "kernel"
                ].sharding.spec
            ),
        }
    if jax.process_index() == 0:
        print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
