"""The measurements behind benchmarks/report.py, one task per process.

    python benchmarks/_workers.py TASK SETTINGS.json RESULT.json

Tasks (report.py runs them one after another, never two at once):
  torch         ours and the reference PyTorch: matmul peak, forward, train steps (sequence
                classification, masked LM), length sweep, real-length batches padded and
                unpadded, the padding-fraction sweep, bf16
  tf            ours (Keras 3) and the reference TF port (Keras 2 `tf_keras`, which
                `transformers` imports itself) under XLA: the same but masked LM and bf16
  flax          ours and the reference Flax, both `jax.jit`-compiled: the same but masked LM
  load          one implementation in a fresh process: import, `from_pretrained`, one
                forward pass, peak resident memory
  tokenizers    ours and the reference's slow and fast tokenizers

Ours and the reference are timed in interleaved rounds (`bench_unpadded.interleaved`): a
first call of each (which pays tracing and XLA compilation where there is one), then
`repeats` rounds in which each runs once, the order rotating, so that neither always goes
first; the per-round ratios show the machine's noise. Each task writes a JSON result;
report.py turns the results into tables.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

START = time.perf_counter()
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]


# ----------------------------------------------------------------------------- shared helpers


def memory_bytes(field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (peak) of this process, from /proc/self/status.

    Not `ru_maxrss`: Linux keeps that across fork and exec, so a worker would report its
    parent's peak whenever the parent's was larger. VmHWM belongs to the address space and
    starts afresh at exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def pin_threads(threads: int) -> list[int]:
    """Run on `threads` cores, so that every framework (XLA's thread pool included) uses as many."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    return cores


import bench_unpadded  # noqa: E402 - the real-length workload
import numpy as np  # noqa: E402
from bench_unpadded import interleaved  # noqa: E402 - ours and the reference alternate in rounds


def measure(step, repeats: int) -> dict:
    """Seconds of a first call of `step` and the median of `repeats` calls after it."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first": first, "median": statistics.median(times), "times": times}


def best_of(step, repeats: int) -> float:
    """Shortest of `repeats` timed calls of `step`, after one untimed call."""
    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(step, n: int, repeats: int) -> float:
    """GFLOP/s of the best of `repeats` n x n x n products computed by `step()`."""
    return 2 * n**3 / best_of(step, repeats) / 1e9


def benchmark_inputs(vocab_size: int, batch: int, length: int, seed: int = 0):
    """int32 ids (first token <s>, no padding), an all-ones mask and two-class labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab_size, (batch, length)).astype(np.int32)
    ids[:, 0] = 0
    return ids, np.ones_like(ids), (np.arange(batch) % 2).astype(np.int32)


def sweep_shapes(settings: dict) -> list[tuple[int, int]]:
    """(batch, length) for each sweep length, about `sweep_tokens` tokens per batch."""
    return [(max(1, settings["sweep_tokens"] // length), length) for length in settings["sweep_lengths"]]


def xlmr_config(settings: dict):
    from xlmr_core import XLMRobertaConfig

    return XLMRobertaConfig.from_dict(settings["config"])


# ----------------------------------------------------------------------------- PyTorch


def task_torch(settings: dict) -> dict:
    """Ours and the reference PyTorch in one process, eager, `inference_mode` for the forward."""
    import torch

    torch.set_num_threads(settings["threads"])
    import bench_torch  # ours/reference pairs with identical weights, the forward and AdamW steps
    import transformers

    config, repeats = xlmr_config(settings), settings["repeats"]
    ids, mask, labels = benchmark_inputs(config.vocab_size, settings["batch"], settings["length"])

    def as_batch(ids, mask):
        return {"input_ids": torch.from_numpy(ids).long(), "attention_mask": torch.from_numpy(mask).long()}

    n = settings["matmul_size"]
    left, right = torch.randn(n, n), torch.randn(n, n)
    peak = matmul_gflops(lambda: torch.mm(left, right), n, settings["matmul_repeats"])
    result = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "threads": {
            "torch.get_num_threads()": torch.get_num_threads(),
            "torch.get_num_interop_threads()": torch.get_num_interop_threads(),
        },
        "matmul_gflops": {"torch.mm": peak},
        "forward": {},
        "train": {},
        "sweep": {"ours": {}, "reference": {}},
    }
    models = dict(zip(("ours", "reference"), bench_torch.make_models("Model", config)))
    for model in models.values():
        model.eval()
    result["forward"] = interleaved(
        {name: bench_torch.forward_step(model, as_batch(ids, mask)) for name, model in models.items()},
        repeats,
    )
    for batch, length in sweep_shapes(settings):
        sweep_ids, sweep_mask, _ = benchmark_inputs(config.vocab_size, batch, length)
        steps = {
            name: bench_torch.forward_step(m, as_batch(sweep_ids, sweep_mask)) for name, m in models.items()
        }
        for name, measured in interleaved(steps, settings["sweep_repeats"]).items():
            result["sweep"][name][length] = {"batch": batch, **measured}
    result["bf16"] = torch_bf16(models, as_batch(ids, mask), repeats)
    del models
    gc.collect()
    real_length_measurements(bench_unpadded.torch_steps, config, settings, result)

    # Both models of a pair, with their gradients and AdamW states, live while they alternate.
    pair = dict(zip(("ours", "reference"), bench_torch.make_models("ForSequenceClassification", config)))
    inputs = {**as_batch(ids, mask), "labels": torch.from_numpy(labels).long()}
    steps = {name: bench_torch.train_step(model.train(), inputs) for name, model in pair.items()}
    result["train"] = interleaved(steps, repeats)
    del pair, steps
    gc.collect()
    result["masked_lm"] = torch_masked_lm(config, as_batch(ids, mask), repeats)
    return result


def torch_bf16(models: dict, inputs: dict, repeats: int) -> dict:
    """Forward in float32, bfloat16 weights and activations, and float32 weights under autocast.

    Ours in all three, the reference in bfloat16; also how far ours in bf16 lands from ours in
    float32 against the README's bound.
    """
    import copy

    import bench_torch
    import torch

    result = {
        "native_bf16": native_bf16(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "matmul_gflops": bf16_matmuls_torch(),
    }
    if not result["native_bf16"]:
        # Without AVX512-BF16 or AMX a bf16 product runs at a few percent of float32 here (see
        # matmul_gflops): one base-size forward would take many minutes, and says nothing more.
        return result
    ours_bf16 = copy.deepcopy(models["ours"]).to(torch.bfloat16)
    reference_bf16 = copy.deepcopy(models["reference"]).to(torch.bfloat16)

    def autocast_step():
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
            models["ours"](**inputs)

    steps = {
        "ours float32": bench_torch.forward_step(models["ours"], inputs),
        "ours bfloat16": bench_torch.forward_step(ours_bf16, inputs),
        "ours autocast": autocast_step,
        "reference bfloat16": bench_torch.forward_step(reference_bf16, inputs),
    }
    timings = interleaved(steps, repeats)
    with torch.inference_mode():
        full = models["ours"](**inputs).last_hidden_state
        half = ours_bf16(**inputs).last_hidden_state.float()
    layers = models["ours"].config.num_hidden_layers
    return {
        **result,
        "timings": timings,
        "max_abs_diff": float((half - full).abs().max()),
        "bound": bf16_bound(layers, float(full.abs().max())),
    }


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_MATMUL_SIZE = 1024


def bf16_matmuls_torch() -> dict:
    """GFLOP/s of one n x n product in float32 and in bfloat16 (best of 3)."""
    import torch

    n = BF16_MATMUL_SIZE
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        left, right = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        rates[f"torch.mm {str(dtype).split('.')[1]}"] = matmul_gflops(
            lambda left=left, right=right: torch.mm(left, right), n, 3
        )
    return rates


def bf16_matmuls_jax() -> dict:
    import jax
    import jax.numpy as jnp

    n = BF16_MATMUL_SIZE
    product = jax.jit(jnp.matmul)
    rates = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        left = right = jnp.ones((n, n), dtype)
        rates[f"jnp.matmul {jnp.dtype(dtype).name}"] = matmul_gflops(
            lambda left=left, right=right: product(left, right).block_until_ready(), n, 3
        )
    return rates


def bf16_bound(layers: int, largest: float) -> float:
    """The README's bf16 agreement bound: 8 · 2⁻⁸ · (layers + 1) · max |float32 output|."""
    return 8 * 2**-8 * (layers + 1) * largest


def torch_masked_lm(config, inputs: dict, repeats: int) -> dict:
    """The masked-LM step with 15 % of positions labelled: ours on its labelled-positions path,
    the reference computing logits everywhere (as it must), alternating."""
    import bench_torch
    import torch

    from xlmr_torch.training import adamw

    generator = torch.Generator().manual_seed(0)
    labels = inputs["input_ids"].clone()
    labels[torch.rand(labels.shape, generator=generator) >= 0.15] = -100
    pair = dict(zip(("ours", "reference"), bench_torch.make_models("ForMaskedLM", config)))
    batch = {**inputs, "labels": labels}
    # Both on fused AdamW: ours through `adamw` (what the README recommends), the reference as
    # transformers.Trainer builds it by default with torch >= 2.8.
    steps = {
        "ours": bench_torch.train_step(
            pair["ours"].train(),
            batch,
            adamw(pair["ours"].parameters(), lr=1e-5, max_grad_norm=None),  # as the reference: no clipping
            labelled_positions_only=True,
        ),
        "reference": bench_torch.train_step(
            pair["reference"].train(), batch, bench_torch.fused_adamw(pair["reference"])
        ),
    }
    return {
        "labelled_fraction": float((labels != -100).float().mean()),
        "timings": interleaved(steps, repeats),
    }


def real_length_measurements(steps_builder, config, settings: dict, result: dict) -> None:
    """Real-length batches (reference padded, ours padded and unpadded) and the padding sweep."""
    steps_for = steps_builder(config)
    batches = bench_unpadded.workload(config.vocab_size)
    result["unpadded"] = {
        "workload": bench_unpadded.describe(batches),
        "work": bench_unpadded.work(batches, config),
        **bench_unpadded.measure(steps_for, batches, settings["unpadded_rounds"]),
    }
    result["padding_sweep"] = {}
    for fraction in bench_unpadded.SWEEP_FRACTIONS:
        sweep = [bench_unpadded.sweep_batch(fraction, config.vocab_size)]
        measured = bench_unpadded.measure(steps_for, sweep, settings["sweep_repeats"])
        result["padding_sweep"][str(fraction)] = {"workload": bench_unpadded.describe(sweep), **measured}
    del steps_for
    gc.collect()


# ----------------------------------------------------------------------------- TensorFlow


def configure_tensorflow(threads: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def tensorflow_facts(tf, settings: dict) -> dict:
    n = settings["matmul_size"]
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    xla_matmul = tf.function(tf.linalg.matmul, jit_compile=True)
    return {
        "threads": {
            "tf intra-op threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf inter-op threads": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "matmul_gflops": {
            "tf.linalg.matmul": matmul_gflops(
                lambda: tf.linalg.matmul(a, b).numpy(), n, settings["matmul_repeats"]
            ),
            "tf.linalg.matmul (XLA)": matmul_gflops(
                lambda: xla_matmul(a, b).numpy(), n, settings["matmul_repeats"]
            ),
        },
    }


def xla_forwards(tf, models: dict):
    """`jit_compile=True` forward functions of `models`, returning the last hidden state."""

    def compiled(model):
        return tf.function(
            lambda ids, mask: model(input_ids=ids, attention_mask=mask, training=False).last_hidden_state,
            jit_compile=True,
        )

    return {name: compiled(model) for name, model in models.items()}


def xla_steps(tf, forwards: dict, ids, mask) -> dict:
    ids, mask = tf.constant(ids), tf.constant(mask)
    return {name: (lambda forward=forward: forward(ids, mask).numpy()) for name, forward in forwards.items()}


def task_tf(settings: dict) -> dict:
    """Ours (Keras 3) and the reference TF port (Keras 2, `tf_keras`) in one process: forward under
    `tf.function(jit_compile=True)`, the Keras train step (`compile(jit_compile=True)` +
    `train_on_batch`, AdamW, dropout on), alternating."""
    tf = configure_tensorflow(settings["threads"])
    import keras
    import tf_keras
    import transformers  # its TF port runs on tf_keras, which it imports itself

    import xlmr_tf

    config = xlmr_config(settings)
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    repeats = settings["repeats"]
    result = {
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tf_keras": tf_keras.__version__,
        },
        **tensorflow_facts(tf, settings),
        "sweep": {"ours": {}, "reference": {}},
    }
    keras.utils.set_random_seed(0)
    tf_keras.utils.set_random_seed(0)
    models = {
        "ours": xlmr_tf.TFXLMRobertaModel(config),
        "reference": transformers.TFXLMRobertaModel(reference_config),
    }
    forwards = xla_forwards(tf, models)
    ids, mask, labels = benchmark_inputs(config.vocab_size, settings["batch"], settings["length"])
    result["forward"] = interleaved(xla_steps(tf, forwards, ids, mask), repeats)
    for batch, length in sweep_shapes(settings):
        sweep_ids, sweep_mask, _ = benchmark_inputs(config.vocab_size, batch, length)
        measured = interleaved(xla_steps(tf, forwards, sweep_ids, sweep_mask), settings["sweep_repeats"])
        for name, point in measured.items():
            result["sweep"][name][length] = {"batch": batch, **point}
    del models, forwards
    keras.backend.clear_session()
    tf_keras.backend.clear_session()
    gc.collect()
    real_length_measurements(bench_unpadded.tf_steps, config, settings, result)

    # The same Keras step for both: compile without a loss (the model computes it from the labels
    # in the batch), AdamW with Keras' default weight decay, one train_on_batch.
    features = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    ours = xlmr_tf.TFXLMRobertaForSequenceClassification(config)
    ours.compile(optimizer=keras.optimizers.AdamW(1e-5), jit_compile=True)
    reference = transformers.TFXLMRobertaForSequenceClassification(reference_config)
    reference.compile(optimizer=tf_keras.optimizers.AdamW(1e-5), jit_compile=True)
    steps = {
        "ours": lambda: ours.train_on_batch(features),
        "reference": lambda: reference.train_on_batch(features),
    }
    result["train"] = interleaved(steps, repeats)
    return result


# ----------------------------------------------------------------------------- Flax


def flax_train_step(loss_fn):
    """A jitted, state-donating `step(state, batch) -> (state, loss)`: value_and_grad, optimizer update.

    Ours and the reference go through this same step so that only the model differs.
    """
    import jax

    grad_fn = jax.value_and_grad(loss_fn)

    def step(state, batch):
        dropout_rng, step_rng = jax.random.split(state.dropout_rng)
        loss, grads = grad_fn(state.params, batch, step_rng)
        return state.apply_gradients(grads=grads, dropout_rng=dropout_rng), loss

    return jax.jit(step, donate_argnums=(0,))


def task_flax(settings: dict) -> dict:
    """Ours and the reference Flax in one process, every forward and step `jax.jit`-compiled ahead."""
    import jax
    import jax.numpy as jnp
    import optax
    import transformers
    from bench_flax import compile_forward  # jitted forward, compiled ahead, for any Flax model

    import xlmr_flax
    from xlmr_flax.training import create_optimizer, create_train_state, make_loss_fn

    config, repeats = xlmr_config(settings), settings["repeats"]
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    n = settings["matmul_size"]
    left, right = jnp.ones((n, n), jnp.float32), jnp.ones((n, n), jnp.float32)
    jitted_matmul = jax.jit(jnp.matmul)
    peak = matmul_gflops(
        lambda: jitted_matmul(left, right).block_until_ready(), n, settings["matmul_repeats"]
    )
    result = {
        "versions": {"jax": jax.__version__, "transformers": transformers.__version__},
        "threads": {"jax devices": str(jax.devices())},
        "matmul_gflops": {"jnp.matmul (jit)": peak},
        "forward": {},
        "train": {},
        "sweep": {"ours": {}, "reference": {}},
    }
    models = {
        "ours": xlmr_flax.FlaxXLMRobertaModel(config, seed=0),
        "reference": transformers.FlaxXLMRobertaModel(reference_config, seed=0),
    }
    ids, mask, labels = benchmark_inputs(config.vocab_size, settings["batch"], settings["length"])
    result["forward"] = interleaved_compiled(compile_forward, models, ids, mask, repeats)
    for batch, length in sweep_shapes(settings):
        sweep_ids, sweep_mask, _ = benchmark_inputs(config.vocab_size, batch, length)
        measured = interleaved_compiled(
            compile_forward, models, sweep_ids, sweep_mask, settings["sweep_repeats"]
        )
        for name, point in measured.items():
            result["sweep"][name][length] = {"batch": batch, **point}
    result["bf16"] = flax_bf16(config, reference_config, models["ours"], ids, mask, repeats)
    del models
    gc.collect()
    real_length_measurements(bench_unpadded.flax_steps, config, settings, result)

    def reference_loss(model):
        # The reference Flax port computes no loss: cross-entropy over its logits.
        def loss_fn(params, batch, dropout_rng):
            logits = model(
                batch["input_ids"],
                batch["attention_mask"],
                params=params,
                dropout_rng=dropout_rng,
                train=True,
            ).logits
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

        return loss_fn

    batch = {
        "input_ids": jnp.asarray(ids),
        "attention_mask": jnp.asarray(mask),
        "labels": jnp.asarray(labels),
    }
    # Both train states (weights, AdamW moments) live while the two steps alternate.
    steps, compile_seconds = {}, {}
    for name in ("ours", "reference"):
        if name == "ours":
            model = xlmr_flax.FlaxXLMRobertaForSequenceClassification(config, seed=0)
            loss_fn = make_loss_fn(model)  # the model's own loss, as the shipped step uses
        else:
            model = transformers.FlaxXLMRobertaForSequenceClassification(reference_config, seed=0)
            loss_fn = reference_loss(model)
        # AdamW, weight decay 0.01 off biases and LayerNorm, no clipping (as the torch step).
        holder = {"state": create_train_state(model, create_optimizer(1e-5, max_grad_norm=None), seed=0)}
        start = time.perf_counter()
        compiled = flax_train_step(loss_fn).lower(holder["state"], batch).compile()
        compile_seconds[name] = time.perf_counter() - start

        def step(compiled=compiled, holder=holder):
            holder["state"], loss = compiled(holder["state"], batch)
            loss.block_until_ready()

        steps[name] = step
        del model
    result["train"] = interleaved(steps, repeats)
    for name, seconds in compile_seconds.items():
        result["train"][name]["compile"] = seconds
    return result


def interleaved_compiled(compile_forward, models: dict, ids, mask, repeats: int) -> dict:
    """Compile every model's forward ahead for these inputs, then time them alternating."""
    runs, compile_seconds = {}, {}
    for name, model in models.items():
        runs[name], compile_seconds[name] = compile_forward(model, ids, mask)
    measured = interleaved(runs, repeats)
    for name, seconds in compile_seconds.items():
        measured[name]["compile"] = seconds
    return measured


def flax_bf16(config, reference_config, ours, ids, mask, repeats: int) -> dict:
    """Forward with `dtype=jnp.bfloat16` (compute in bf16, float32 weights) against ours in float32,
    and the reference in bf16; also how far ours in bf16 lands from float32 against the README's bound."""
    import jax.numpy as jnp
    import transformers
    from bench_flax import compile_forward

    import xlmr_flax

    models = {
        "ours float32": ours,
        "ours bfloat16": xlmr_flax.FlaxXLMRobertaModel(config, seed=0, dtype=jnp.bfloat16),
        "reference bfloat16": transformers.FlaxXLMRobertaModel(reference_config, seed=0, dtype=jnp.bfloat16),
    }
    models["ours bfloat16"].params = ours.params
    timings = interleaved_compiled(compile_forward, models, ids, mask, repeats)
    full = np.asarray(ours(ids, mask).last_hidden_state)
    half = np.asarray(models["ours bfloat16"](ids, mask).last_hidden_state).astype(np.float32)
    return {
        "native_bf16": native_bf16(),
        "matmul_gflops": bf16_matmuls_jax(),
        "timings": timings,
        "max_abs_diff": float(np.abs(half - full).max()),
        "bound": bf16_bound(config.num_hidden_layers, float(np.abs(full).max())),
    }


# ----------------------------------------------------------------------------- loading


def _load_torch(implementation: str, directory: str, threads: int):
    import torch

    torch.set_num_threads(threads)
    if implementation == "ours":
        import xlmr_torch

        cls = xlmr_torch.XLMRobertaModel
    else:
        import transformers

        cls = transformers.XLMRobertaModel
    imported = time.perf_counter()

    def forward(model, ids, mask):
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long())
        return out.last_hidden_state.numpy()

    return imported, (lambda: cls.from_pretrained(directory).eval()), forward


def _load_tf(implementation: str, directory: str, source: str, threads: int):
    configure_tensorflow(threads)
    if implementation == "ours":
        import xlmr_tf

        load = lambda: xlmr_tf.TFXLMRobertaModel.from_pretrained(directory)  # noqa: E731
    else:
        import transformers

        # Without this the reference reads model.safetensors first when both files are there.
        options = {"use_safetensors": source == "model.safetensors"}
        load = lambda: transformers.TFXLMRobertaModel.from_pretrained(directory, **options)  # noqa: E731
    imported = time.perf_counter()

    def forward(model, ids, mask):
        return model(input_ids=ids, attention_mask=mask, training=False).last_hidden_state.numpy()

    return imported, load, forward


def _load_flax(implementation: str, directory: str):
    import numpy as np

    if implementation == "ours":
        import xlmr_flax

        cls = xlmr_flax.FlaxXLMRobertaModel
    else:
        import transformers

        cls = transformers.FlaxXLMRobertaModel
    imported = time.perf_counter()

    def forward(model, ids, mask):
        return np.asarray(model(ids, mask).last_hidden_state)

    return imported, (lambda: cls.from_pretrained(directory)), forward


def task_load(settings: dict) -> dict:
    """Import, `from_pretrained` and one forward pass of one implementation, with peak RSS."""
    framework, implementation = settings["framework"], settings["implementation"]
    directory, source = settings["directory"], settings["source"]
    if framework == "torch":
        imported, load, forward = _load_torch(implementation, directory, settings["threads"])
    elif framework == "tf":
        imported, load, forward = _load_tf(implementation, directory, source, settings["threads"])
    else:
        imported, load, forward = _load_flax(implementation, directory)
    rss_after_import = memory_bytes("VmRSS")

    start = time.perf_counter()
    try:
        model = load()
    except Exception as error:
        if implementation == "ours":
            raise
        # A limitation of the reference, reported as such rather than as a failed measurement.
        return {"reference_error": f"{type(error).__name__}: {error}"}
    loaded = time.perf_counter()
    rss_after_load = memory_bytes("VmRSS")
    ids, mask, _ = benchmark_inputs(settings["config"]["vocab_size"], settings["batch"], settings["length"])
    output = forward(model, ids, mask)
    done = time.perf_counter()
    return {
        "import": imported - START,
        "load": loaded - start,
        "forward": done - loaded,
        "rss_after_import": rss_after_import,
        "rss_after_load": rss_after_load,
        "peak_rss": memory_bytes("VmHWM"),
        # A corner of the output, compared across implementations: the same weights must give
        # the same numbers (a loader that silently leaves weights random would not).
        "output_corner": output[:, :8, :8].astype(float).tolist(),
    }


# ----------------------------------------------------------------------------- tokenizers


def task_tokenizers(settings: dict) -> dict:
    """Sentences per second of our and the reference's slow and fast tokenizers (bench_tokenizers)."""
    import bench_tokenizers

    from tests.core.texts import benchmark_sentences

    start = time.perf_counter()
    tokenizers = bench_tokenizers.build_tokenizers(bench_tokenizers.vocabulary_path())
    built = time.perf_counter() - start
    sentences = benchmark_sentences(settings["count"])
    rates = bench_tokenizers.sentence_rates(
        tokenizers, sentences, settings["batch_size"], settings["repeats"]
    )
    return {"rates": rates, "sentences": len(sentences), "build_seconds": built}


TASKS = {
    "torch": task_torch,
    "tf": task_tf,
    "flax": task_flax,
    "load": task_load,
    "tokenizers": task_tokenizers,
}


def main() -> None:
    task, settings_path, result_path = sys.argv[1:4]
    settings = json.loads(Path(settings_path).read_text())
    cores = pin_threads(settings["threads"])
    result = TASKS[task](settings)
    result["cores"] = cores
    result["loadavg"] = os.getloadavg()
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
