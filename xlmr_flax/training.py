"""Fine-tuning any `FlaxXLMRoberta*` head with jitted optax steps.

    model = FlaxXLMRobertaForSequenceClassification.from_pretrained(directory)
    optimizer = create_optimizer(2e-5, num_train_steps=1000, num_warmup_steps=100)
    state = create_train_state(model, optimizer, seed=0)
    train_step = make_train_step(model)              # jax.jit-compiled
    for batch in batches:                            # dicts of arrays, labels included
        state, metrics = train_step(state, batch)
    model.params = state.params

The loss is the one the model computes from the labels in the batch (`labels`, or
`start_positions` / `end_positions`), so every head trains with the same step.

Data parallelism: build a mesh with `data_parallel_mesh()`, put the state on it with
`replicate(state, mesh)` and each batch with `shard_batch(batch, mesh)`; the same jitted
step then runs over all devices (GSPMD) and gives the same result as one device.
FSDP and tensor parallelism: `create_train_state(..., mesh=sharding.make_mesh(data, model),
layout="fsdp" | "tp" | "fsdp_tp")` and `make_train_step(..., mesh=mesh)`; the partition
rules are in `xlmr_flax.sharding`. `save_train_state` / `restore_train_state` checkpoint the
whole state with orbax for resuming.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xlmr_core import optimization

from .pretrained import FlaxXLMRobertaPreTrainedModel
from .sharding import shard_batch  # noqa: F401 - part of this module's data-parallel recipe


class TrainState(train_state.TrainState):
    """Step, parameters, optimizer state and the dropout key, as one pytree."""

    dropout_rng: jax.Array


def decay_mask(params) -> Any:
    """`True` for parameters that get weight decay: all but biases and LayerNorm
    (`xlmr_core.optimization.decays`)."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({path: optimization.decays("/".join(path)) for path in flat})


def create_learning_rate_schedule(
    learning_rate: float, num_train_steps: int, num_warmup_steps: int = 0
) -> optax.Schedule:
    """Linear warm-up from 0 to `learning_rate`, then linear decay to 0 at `num_train_steps`."""
    if not 0 <= num_warmup_steps <= num_train_steps:
        raise ValueError(
            f"num_warmup_steps ({num_warmup_steps}) must be in [0, num_train_steps={num_train_steps}]"
        )
    warmup = optax.linear_schedule(0.0, learning_rate, max(num_warmup_steps, 1))
    decay = optax.linear_schedule(learning_rate, 0.0, max(num_train_steps - num_warmup_steps, 1))
    if num_warmup_steps == 0:
        return decay
    return optax.join_schedules([warmup, decay], boundaries=[num_warmup_steps])


def create_optimizer(
    learning_rate: float | optax.Schedule,
    num_train_steps: int | None = None,
    num_warmup_steps: int = 0,
    *,
    weight_decay: float = optimization.WEIGHT_DECAY,
    b1: float = optimization.BETAS[0],
    b2: float = optimization.BETAS[1],
    eps: float = optimization.EPSILON,
    max_grad_norm: float | None = optimization.MAX_GRAD_NORM,
) -> optax.GradientTransformation:
    """AdamW with the shared recipe (`xlmr_core.optimization`, the same update as
    `xlmr_torch.training.adamw` and `xlmr_tf.training.adamw`): weight decay masked off biases
    and LayerNorm, global-norm gradient clipping (`max_grad_norm`), and the warm-up/decay
    schedule when `num_train_steps` is given."""
    schedule = learning_rate
    if num_train_steps is not None and not callable(learning_rate):
        schedule = create_learning_rate_schedule(learning_rate, num_train_steps, num_warmup_steps)
    adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
    if max_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)


def create_train_state(
    model: FlaxXLMRobertaPreTrainedModel,
    optimizer: optax.GradientTransformation,
    seed: int = 0,
    *,
    mesh: Mesh | None = None,
    layout: str = "dp",
) -> TrainState:
    """A train state over `model.params`; `seed` seeds the dropout key. With a `mesh`
    (`sharding.make_mesh`), the state is placed on it by `layout`: `"dp"`, `"fsdp"`,
    `"tp"` or `"fsdp_tp"` (see `xlmr_flax.sharding`)."""
    if mesh is None:
        return TrainState.create(
            apply_fn=model.module.apply,
            params=model.params,
            tx=optimizer,
            dropout_rng=jax.random.PRNGKey(seed),
        )
    from . import sharding

    params = sharding.shard_params(model.params, mesh, layout)

    def create(params):
        return TrainState.create(
            apply_fn=model.module.apply, params=params, tx=optimizer, dropout_rng=jax.random.PRNGKey(seed)
        )

    # The optimizer state is created directly in its sharded layout: no device ever holds
    # the full moments (what FSDP is for).
    abstract = jax.eval_shape(create, params)
    shardings = sharding.tree_shardings(abstract, abstract.params, mesh, layout)
    return jax.jit(create, out_shardings=shardings)(params)


def _split_microbatches(batch: dict, accumulation_steps: int) -> dict:
    def split(x):
        if x.shape[0] % accumulation_steps:
            raise ValueError(
                f"batch size {x.shape[0]} is not a multiple of accumulation_steps={accumulation_steps}"
            )
        return x.reshape(accumulation_steps, x.shape[0] // accumulation_steps, *x.shape[1:])

    return jax.tree_util.tree_map(split, batch)


def make_loss_fn(model: FlaxXLMRobertaPreTrainedModel, **call_options) -> Callable:
    """`loss(params, batch, dropout_rng)`: the model's own loss with dropout on."""

    def loss_fn(params, batch, dropout_rng):
        output = model(**batch, **call_options, params=params, dropout_rng=dropout_rng, train=True)
        if output.loss is None:
            raise ValueError("the batch has no labels (labels, or start_positions and end_positions)")
        return output.loss

    return loss_fn


def make_train_step(
    model: FlaxXLMRobertaPreTrainedModel,
    *,
    accumulation_steps: int = 1,
    donate: bool = False,
    mesh: Mesh | None = None,
    **call_options,
) -> Callable:
    """A jitted `train_step(state, batch) -> (state, {"loss", "grad_norm", "learning_rate"?})`.

    With `accumulation_steps=k` the batch is split into `k` equal micro-batches whose
    gradients are averaged before one optimizer update (memory of one micro-batch, result
    of the whole batch when the loss is a mean over equal-sized micro-batches).
    `call_options` go to every model call (e.g. `labelled_positions_only=True,
    max_predictions=20` for masked LM). `donate=True` lets XLA reuse the old state's memory.
    With a `mesh`, the batch is split over its `"data"` axis and the new state keeps the
    sharding the given state has (from `create_train_state(..., mesh=, layout=)`).
    The batch's targets are checked on the host first (`check_targets`): a bad label is the
    eager call's `ValueError`, not a NaN loss.
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
    grad_fn = jax.value_and_grad(make_loss_fn(model, **call_options))

    def train_step(state: TrainState, batch: dict):
        dropout_rng, step_rng = jax.random.split(state.dropout_rng)
        if accumulation_steps == 1:
            loss, grads = grad_fn(state.params, batch, step_rng)
        else:

            def accumulate(carry, microbatch_and_index):
                microbatch, index = microbatch_and_index
                loss_sum, grad_sum = carry
                loss, grads = grad_fn(state.params, microbatch, jax.random.fold_in(step_rng, index))
                return (loss_sum + loss, jax.tree_util.tree_map(jnp.add, grad_sum, grads)), None

            start = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, state.params))
            microbatches = (_split_microbatches(batch, accumulation_steps), jnp.arange(accumulation_steps))
            (loss_sum, grad_sum), _ = jax.lax.scan(accumulate, start, microbatches)
            loss = loss_sum / accumulation_steps
            grads = jax.tree_util.tree_map(lambda g: g / accumulation_steps, grad_sum)
        new_state = state.apply_gradients(grads=grads, dropout_rng=dropout_rng)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    donate_argnums = (0,) if donate else ()
    if mesh is None:
        step = jax.jit(train_step, donate_argnums=donate_argnums)
    else:
        step = _keep_layout(train_step, mesh, donate_argnums, returns_state=True)

    def checked_train_step(state: TrainState, batch: dict):
        check_targets(model, batch, **call_options)
        return step(state, batch)

    return checked_train_step


def check_targets(model: FlaxXLMRobertaPreTrainedModel, batch: dict, **call_options) -> None:
    """The eager call's checks of the batch's targets (labels in range, shapes), on the host.

    Under `jit` the values are traced and cannot be checked: a label outside `[0, num_labels)`
    would train on a NaN loss without a word. Targets held on other processes' devices (a
    global array under `jax.distributed`) are left to those processes.
    """
    targets = [batch.get(name) for name in ("labels", "start_positions", "end_positions")]
    if all(t is None for t in targets) or any(
        isinstance(t, jax.Array) and not t.is_fully_addressable for t in targets
    ):
        return
    inputs = {"input_ids": batch.get("input_ids"), "inputs_embeds": batch.get("inputs_embeds")}
    if inputs["input_ids"] is not None and not isinstance(inputs["input_ids"], jax.Array):
        inputs["input_ids"] = np.asarray(inputs["input_ids"])
    model._head_arguments(
        inputs,
        *targets,
        call_options.get("labelled_positions_only", False),
        call_options.get("max_predictions"),
    )


def _keep_layout(function: Callable, mesh: Mesh, donate_argnums: tuple, returns_state: bool) -> Callable:
    """`function(tree, batch)` jitted per tree structure with the tree's own shardings in (and
    out, for a state), the batch split over "data" and everything else replicated."""
    from . import sharding

    replicated = NamedSharding(mesh, PartitionSpec())
    compiled = {}

    def run(tree, batch):
        key = jax.tree_util.tree_structure(tree)
        if key not in compiled:
            shardings = jax.tree_util.tree_map(lambda x: getattr(x, "sharding", replicated), tree)
            out_shardings = (shardings, replicated) if returns_state else replicated
            compiled[key] = jax.jit(
                function,
                in_shardings=(shardings, sharding.batch_sharding(mesh)),
                out_shardings=out_shardings,
                donate_argnums=donate_argnums,
            )
        return compiled[key](tree, sharding.shard_batch(batch, mesh))

    return run


def make_eval_step(
    model: FlaxXLMRobertaPreTrainedModel, *, mesh: Mesh | None = None, **call_options
) -> Callable:
    """A jitted `eval_step(params, batch) -> model output` (dropout off; loss when labelled).
    With a `mesh`, parameters stay in their sharding (`sharding.shard_params`), the batch is
    split over `"data"` and the outputs come back replicated."""

    def eval_step(params, batch: dict):
        return model(**batch, **call_options, params=params, train=False, return_dict=True)

    step = jax.jit(eval_step) if mesh is None else _keep_layout(eval_step, mesh, (), returns_state=False)

    def checked_eval_step(params, batch: dict):
        check_targets(model, batch, **call_options)
        return step(params, batch)

    return checked_eval_step


# ----------------------------------------------------------------------------- data parallelism


def data_parallel_mesh(devices=None) -> Mesh:
    """A one-axis mesh (`"data"`) over `devices` (default: all of them)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicate(tree, mesh: Mesh):
    """Put a pytree (parameters, train state) on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


# ----------------------------------------------------------------------------- resuming


def _checkpoint_manager(directory, max_to_keep: int | None = None):
    # orbax-checkpoint is needed only for resuming: imported here, not with the package.
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp, ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_train_state(directory, state: TrainState, *, max_to_keep: int | None = None) -> int:
    """Checkpoint the whole train state (parameters, optimizer state, step, dropout key) under
    `directory/<step>` with orbax; a checkpoint appears only once completely written, and a
    sharded state is written shard by shard. Returns the step. Needs `orbax-checkpoint`."""
    ocp, manager = _checkpoint_manager(directory, max_to_keep)
    step = int(state.step)
    with manager:
        manager.save(step, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
    return step


def restore_train_state(directory, state: TrainState, step: int | None = None) -> TrainState | None:
    """The state saved under `directory` at `step` (default: the latest), restored into the
    structure, dtypes and shardings of `state` (a freshly created one); None if there is none.
    The data position is `state.step`: feed batch `int(state.step)` next."""
    ocp, manager = _checkpoint_manager(directory)
    with manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
