"""Peak memory per process when training at xlm-roberta-base size with AdamW.

- PyTorch: one process (plain) against two FSDP2 processes (`fully_shard`, gloo on CPU),
  peak resident memory of each process during 2 training steps (the model is built on the
  meta device and materialised already sharded, so set-up does not set the peak).
- JAX: bytes per device of parameters and AdamW state, one device against FSDP over 2
  devices, from the shardings (`xlmr_flax.sharding.bytes_per_device` on abstract arrays).

    python benchmarks/bench_distributed_memory.py [--batch 2 --length 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GIB = 2**30
# xlm-roberta-base (XLMRobertaConfig's own defaults are BERT's, like the reference's).
BASE = dict(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)


def peak_rss_bytes() -> int:
    """VmHWM: the process's peak resident set since the last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


def torch_worker(batch: int, length: int) -> None:
    """One process of the torch measurement (plain, or FSDP2 under torchrun)."""
    import torch

    from xlmr_core import XLMRobertaConfig
    from xlmr_torch import XLMRobertaForMaskedLM
    from xlmr_torch.training import init_distributed, wrap_model

    setup = init_distributed()
    torch.manual_seed(0)
    with torch.device("meta"):
        model = XLMRobertaForMaskedLM(XLMRobertaConfig(**BASE))
    model = wrap_model(model, "fsdp" if setup.world_size > 1 else "none")
    model.to_empty(device="cpu")
    with torch.no_grad():  # values do not matter for memory; keep them finite
        for parameter in model.parameters():
            local = parameter.to_local() if hasattr(parameter, "to_local") else parameter
            local.normal_(0.0, 0.02)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(5, 250000, (batch, length))
    reset_peak_rss()
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(
        "RESULT " + json.dumps({"rank": setup.rank, "world": setup.world_size, "peak": peak_rss_bytes()}),
        flush=True,
    )
    if setup.world_size > 1:
        torch.distributed.destroy_process_group()


def _results(output: str) -> list[dict]:
    return [json.loads(line[7:]) for line in output.splitlines() if line.startswith("RESULT ")]


def torch_measure(batch: int, length: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONPATH=str(REPO))
    worker = [__file__, "--torch-worker", "--batch", str(batch), "--length", str(length)]
    single = subprocess.run([sys.executable, *worker], env=env, capture_output=True, text=True, timeout=1800)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    fsdp = subprocess.run([*run, *worker], env=env, capture_output=True, text=True, timeout=1800)
    one, two = _results(single.stdout), _results(fsdp.stdout)
    if not one or len(two) != 2:
        raise RuntimeError(single.stderr[-2000:] + fsdp.stdout[-2000:] + fsdp.stderr[-2000:])
    return {"single": one[0]["peak"], "fsdp2": [r["peak"] for r in sorted(two, key=lambda r: r["rank"])]}


def jax_measure() -> dict:
    script = r"""
import json, os, jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding
from xlmr_core import XLMRobertaConfig
import xlmr_flax
from xlmr_flax import sharding
from xlmr_flax.training import create_optimizer
config = XLMRobertaConfig(**json.loads(os.environ["XLMR_BENCH_CONFIG"]))
model_class = xlmr_flax.FlaxXLMRobertaForMaskedLM
params = model_class(config, _do_init=False).parameter_shapes()  # shapes only: no weights
opt = jax.eval_shape(create_optimizer(1e-5).init, params)
out = {}
for name, devices in (("single", 1), ("fsdp", 2)):
    mesh = sharding.make_mesh(data=devices, model=1, devices=jax.devices()[:devices])
    def per_device(tree):
        shardings = sharding.tree_shardings(tree, params, mesh, "fsdp")
        total = 0
        for leaf, s in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(shardings)):
            total += int(np.prod(s.shard_shape(leaf.shape))) * leaf.dtype.itemsize
        return total
    out[name] = {"params": per_device(params), "opt_state": per_device(opt)}
print("RESULT " + json.dumps(out))
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = str(REPO)
    env["XLMR_BENCH_CONFIG"] = json.dumps(BASE)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900
    )
    found = _results(result.stdout)
    if not found:
        raise RuntimeError(result.stderr[-3000:])
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=2, help="sequences per process")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        torch_worker(args.batch, args.length)
        return
    jax_result = jax_measure()
    print("JAX, xlm-roberta-base MLM, AdamW (bytes per device from the shardings):")
    for name, row in jax_result.items():
        params, moments = row["params"] / GIB, row["opt_state"] / GIB
        print(f"  {name:7s} params {params:6.2f} GiB  AdamW state {moments:6.2f} GiB")
    torch_result = torch_measure(args.batch, args.length)
    print(f"PyTorch, xlm-roberta-base MLM, AdamW, batch {args.batch} x {args.length} per process (peak RSS):")
    print(f"  1 process         {torch_result['single'] / GIB:6.2f} GiB")
    peaks = "  ".join(f"{p / GIB:6.2f} GiB" for p in torch_result["fsdp2"])
    print(f"  2 processes FSDP2 {peaks}")


if __name__ == "__main__":
    main()
