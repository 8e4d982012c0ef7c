"""Training at scale with `xlmr_torch`: DDP / FSDP2 wrapping, exact global-batch losses, and
resumable, atomic training checkpoints.

    setup = init_distributed()                       # reads torchrun's environment; no-op alone
    model = wrap_model(model, "fsdp")                # or "ddp", or "none"
    optimizer = adamw(model, lr=1e-4)                # fused AdamW: the fastest update
    ...
    loss = global_mean_loss(out.loss, micro_units, total_units, setup.world_size)
    ...
    save_training_checkpoint(output / "checkpoint-00000100", model, optimizer, scheduler, step=100)
    step = load_training_checkpoint(latest_checkpoint(output), model, optimizer, scheduler)

Checkpoints hold the model and optimizer state, the scheduler, every rank's RNG state and
the step, so a resumed run continues bit for bit. Under DDP (or one process) the model and
optimizer state are full `torch.save` files written by rank 0; under FSDP2 they are a
`torch.distributed.checkpoint` (DCP) folder in which every rank writes its own shards, so
no rank ever gathers the whole state. Either way they are written into a hidden temporary
folder and renamed into place only when every rank has written its part: a crash
mid-write never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from xlmr_core import optimization
from xlmr_core.modeling_utils import IGNORE_INDEX

CHECKPOINT_PREFIX = "checkpoint-"


# ----------------------------------------------------------------------------- process group


@dataclass(frozen=True)
class DistributedSetup:
    """Where this process stands: `rank` of `world_size`, on `device`."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistributedSetup:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, nccl
    on CUDA); a plain `python` run stays single-process and creates no group."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or dist.is_initialized():
        rank = dist.get_rank() if dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_initialized() else 1
        local = int(os.environ.get("LOCAL_RANK", 0))
        return DistributedSetup(rank, world, local, torch.device(f"cuda:{local}" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return DistributedSetup(dist.get_rank(), dist.get_world_size(), local, device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap_model(model: nn.Module, strategy: str = "ddp", device: torch.device | None = None) -> nn.Module:
    """Wrap `model` for data-parallel training: `"ddp"` (replicated weights, averaged
    gradients), `"fsdp"` (FSDP2 `fully_shard`: weights, gradients and optimizer state
    sharded, one unit per encoder layer plus the root) or `"none"`."""
    if strategy == "none" or not dist.is_initialized():
        return model
    if strategy == "ddp":
        device_ids = [device] if device is not None and device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # One unit per layer bounds the unsharded working set to one layer at a time; the
        # root unit holds embeddings and heads together, so the tied LM-head matrix stays tied.
        for layer in model.base_model.encoder.layer:
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"strategy must be 'ddp', 'fsdp' or 'none', got {strategy!r}")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The `XLMRoberta*` module inside a DDP wrapper (FSDP2 shards in place: the same module)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_fsdp(model: nn.Module) -> bool:
    """Whether `model` was sharded with FSDP2 `fully_shard` (its parameters are DTensors)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(unwrap_model(model), FSDPModule)


# ----------------------------------------------------------------------------- exact losses


def loss_units(head: str, batch: dict) -> int:
    """How many terms the head's mean loss averages over in `batch`: labelled tokens for the
    token-level heads (shifted by one for causal LM), examples for the others."""
    if head in ("XLMRobertaForMaskedLM", "XLMRobertaForTokenClassification"):
        return int((batch["labels"] != IGNORE_INDEX).sum())
    if head == "XLMRobertaForCausalLM":
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    if head == "XLMRobertaForQuestionAnswering":
        return int(batch["start_positions"].shape[0])
    return int(batch["labels"].shape[0])


def global_mean_loss(loss: torch.Tensor, units: int, total_units: int, world_size: int) -> torch.Tensor:
    """Rescale a micro-batch's mean `loss` so that summing the backward passes of every
    micro-batch and averaging over ranks (what DDP and FSDP do) gives the gradient of the
    mean over the whole global batch, however unevenly the labelled tokens fall."""
    return loss * (units * world_size / max(total_units, 1))


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Skip (or resume) the gradient all-reduce / reduce-scatter during accumulation."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model.require_backward_grad_sync = enabled
    elif hasattr(model, "set_requires_gradient_sync"):  # an FSDP2 module
        model.set_requires_gradient_sync(enabled)


def linear_schedule(optimizer: torch.optim.Optimizer, num_training_steps: int, num_warmup_steps: int = 0):
    """LambdaLR: linear warm-up to the base rate, then linear decay to 0 at `num_training_steps`."""

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return (step + 1) / max(1, num_warmup_steps)
        return max(0.0, (num_training_steps - step) / max(1, num_training_steps - num_warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on all but biases and LayerNorm (`xlmr_core.optimization.decays`)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if optimization.decays(name) else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def adamw(
    params,
    lr: float,
    *,
    weight_decay: float = optimization.WEIGHT_DECAY,
    betas: tuple[float, float] = optimization.BETAS,
    eps: float = optimization.EPSILON,
    max_grad_norm: float | None = optimization.MAX_GRAD_NORM,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """`torch.optim.AdamW` with the shared recipe (`xlmr_core.optimization`, the same update as
    `xlmr_tf.training.adamw` and `xlmr_flax.training.create_optimizer`), on its fused kernel
    where the parameters allow it: the recommended optimizer for our models.

    `params` is a model (weight decay then off biases and LayerNorm, `decay_parameter_groups`)
    or what `torch.optim` takes: parameters or groups. Every `step()` first clips the
    gradients to the global norm `max_grad_norm` (`clip_grad_norm_`; None: no clipping). The
    fused kernel updates each tensor in one pass instead of the ~10 elementwise passes of the
    default CPU loop; at xlm-roberta-base size (278M parameters) that is most of a second a
    step on CPU. Same update to float32 rounding. `fused=None` picks it when every parameter is
    a plain floating-point tensor on CPU or CUDA; sharded (DTensor) parameters keep torch's default.
    """
    if isinstance(params, nn.Module):
        params = decay_parameter_groups(params, weight_decay)
    params = [{**g, "params": list(g["params"])} if isinstance(g, dict) else g for g in params]
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if fused is None:
        # type() not isinstance(): FSDP2's DTensor parameters are subclasses.
        fused = bool(tensors) and all(
            type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") and p.is_floating_point()
            for p in tensors
        )
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)
    if max_grad_norm is not None:
        # Clipping belongs to the recipe (optax and Keras clip inside the optimizer): a hook
        # makes every step() clip, in any training loop.
        def clip(_optimizer, _args, _kwargs) -> None:
            nn.utils.clip_grad_norm_(tensors, max_grad_norm)

        optimizer.register_step_pre_hook(clip)
    return optimizer


# ----------------------------------------------------------------------------- full state


def _distributed() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def full_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict on CPU (collective under FSDP: every rank calls it;
    only rank 0 receives the tensors)."""
    if not _distributed():
        return {k: v.detach().cpu().clone() for k, v in unwrap_model(model).state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(unwrap_model(model), options=options)


def _full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    if not _distributed():
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(unwrap_model(model), optimizer, options=options)


def save_pretrained_full(model: nn.Module, model_class: type, directory: str | os.PathLike) -> None:
    """`save_pretrained` from a DDP, FSDP2 or plain model: gathers the full weights (every rank
    must call this) and rank 0 writes the shared checkpoint format."""
    state = full_model_state_dict(model)
    if dist.is_initialized() and dist.get_rank() != 0:
        barrier()
        return
    inner = unwrap_model(model)
    if _distributed() and not isinstance(model, nn.parallel.DistributedDataParallel):
        # FSDP2 parameters are DTensors: write through a plain module holding the gathered weights.
        inner = model_class(inner.config)
        inner.load_state_dict(state)
    inner.save_pretrained(directory)
    barrier()


# ----------------------------------------------------------------------------- RNG state


def rng_state() -> dict:
    """Every generator that dropout, masking or shuffling may draw from, in this process."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        # plain tensors and numbers only, so the file loads with torch.load(weights_only=True)
        "numpy": (torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


# DCP's index of a sharded checkpoint, written by rank 0 once every rank has written its shards.
DCP_METADATA = ".metadata"


def _sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """This rank's shards of the model and optimizer state (DTensors under FSDP2), keyed by
    parameter names, as DCP saves and loads them. Collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(unwrap_model(model), optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step in `output_dir` (temporary folders of an
    interrupted write are hidden and never chosen), or None."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / "trainer_state.json").is_file()
    ]
    return max(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def save_training_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    *,
    step: int,
    extra: dict | None = None,
) -> Path:
    """Write model, optimizer, scheduler, per-rank RNG and `step` (+ JSON-able `extra`) to
    `directory`, atomically: all of it or nothing. Every rank must call this. Under FSDP2
    the model and optimizer go through `torch.distributed.checkpoint`, each rank writing
    its own shards; otherwise rank 0 writes them whole (`model.pt`, `optimizer.pt`)."""
    final = Path(directory)
    temporary = final.parent / f".{final.name}.tmp"
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    sharded = is_fsdp(model)
    if sharded:
        state = _sharded_state(model, optimizer)
    else:
        model_state = full_model_state_dict(model)  # collectives first, on every rank
        optimizer_state = _full_optimizer_state_dict(model, optimizer)
    if rank == 0:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    barrier()
    if sharded:
        import torch.distributed.checkpoint as dcp

        # Collective: every rank writes (and fsyncs) its shards, then rank 0 the index.
        dcp.save(state, checkpoint_id=temporary)
    torch.save(rng_state(), temporary / f"rng_rank{rank}.pt")
    if rank == 0:
        if not sharded:
            torch.save(model_state, temporary / "model.pt")
            torch.save(optimizer_state, temporary / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), temporary / "scheduler.pt")
        # trainer_state.json is what marks a checkpoint complete; it is written last.
        trainer_state = {"step": step, "world_size": world, **(extra or {})}
        (temporary / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
    barrier()
    if rank == 0:
        for path in temporary.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():  # a rename cannot replace a non-empty folder: move the old one aside
            stale = final.parent / f".{final.name}.old"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)
            os.replace(temporary, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(temporary, final)
        directory_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    barrier()
    return final


def load_training_checkpoint(
    directory: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler=None
) -> dict:
    """Restore what `save_training_checkpoint` wrote into an already wrapped `model` and its
    `optimizer` (same world size); returns the trainer state (`step` and the extras). Every
    rank must call this."""
    directory = Path(directory)
    trainer_state = json.loads((directory / "trainer_state.json").read_text())
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if trainer_state["world_size"] != world:
        raise ValueError(
            f"checkpoint {directory} was written by {trainer_state['world_size']} processes; "
            f"resuming needs the same number, got {world}"
        )
    if (directory / DCP_METADATA).is_file():
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        # DCP fills the state dict it is given in place, each rank reading only its shards;
        # an optimizer that has not stepped yet gets its moments created first, to be filled.
        state = _sharded_state(model, optimizer)
        dcp.load(state, checkpoint_id=directory)
        set_state_dict(
            unwrap_model(model),
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optimizer"],
        )
        _load_scheduler_and_rng(directory, scheduler, rank)
        return trainer_state
    model_state = torch.load(directory / "model.pt", weights_only=True)
    optimizer_state = torch.load(directory / "optimizer.pt", weights_only=True)
    if _distributed():
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(unwrap_model(model), model_state, options=options)
        set_optimizer_state_dict(unwrap_model(model), optimizer, optimizer_state, options=options)
    else:
        unwrap_model(model).load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
    _load_scheduler_and_rng(directory, scheduler, rank)
    return trainer_state


def _load_scheduler_and_rng(directory: Path, scheduler, rank: int) -> None:
    if scheduler is not None and (directory / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(directory / f"rng_rank{rank}.pt", weights_only=True))
