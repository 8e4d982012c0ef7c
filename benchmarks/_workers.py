"""The measurements behind benchmarks/report.py, one task per process.

    python benchmarks/_workers.py TASK SETTINGS.json RESULT.json

Tasks (report.py runs them one after another, never two at once):
  torch         ours and the reference PyTorch: matmul peak, forward, train step, length sweep
  tf            ours (Keras 3) under XLA: the same
  tf-reference  the reference TF port under XLA; needs TF_USE_LEGACY_KERAS=1 (Keras 2,
                `tf_keras`) and so never shares a process with our Keras 3 code
  flax          ours and the reference Flax, both `jax.jit`-compiled: the same
  load          one implementation in a fresh process: import, `from_pretrained`, one
                forward pass, peak resident memory
  tokenizers    ours and the reference's slow and fast tokenizers

Every task times the same workload the same way: a first call (which pays tracing and XLA
compilation where there is one), then the median of `repeats` further calls. It writes a
JSON result; report.py turns the results into tables.
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
    for name, model in models.items():
        model.eval()
        result["forward"][name] = measure(bench_torch.forward_step(model, as_batch(ids, mask)), repeats)
    for batch, length in sweep_shapes(settings):
        sweep_ids, sweep_mask, _ = benchmark_inputs(config.vocab_size, batch, length)
        for name, model in models.items():
            step = bench_torch.forward_step(model, as_batch(sweep_ids, sweep_mask))
            result["sweep"][name][length] = {"batch": batch, **measure(step, settings["sweep_repeats"])}
    del models

    # Once timed, a model (with its gradients and AdamW state) is let go before the next one.
    pair = dict(zip(("ours", "reference"), bench_torch.make_models("ForSequenceClassification", config)))
    inputs = {**as_batch(ids, mask), "labels": torch.from_numpy(labels).long()}
    for name in ("ours", "reference"):
        model = pair.pop(name)
        result["train"][name] = measure(bench_torch.train_step(model.train(), inputs), repeats)
        del model
        gc.collect()
    return result


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


def xla_forward_measurements(tf, model, config, settings: dict, result: dict, name: str) -> None:
    """Forward at the benchmark shape and every sweep shape through one `jit_compile=True` function."""
    forward = tf.function(
        lambda ids, mask: model(input_ids=ids, attention_mask=mask, training=False).last_hidden_state,
        jit_compile=True,
    )

    def step_for(ids, mask):
        ids, mask = tf.constant(ids), tf.constant(mask)
        return lambda: forward(ids, mask).numpy()

    ids, mask, _ = benchmark_inputs(config.vocab_size, settings["batch"], settings["length"])
    result["forward"][name] = measure(step_for(ids, mask), settings["repeats"])
    for batch, length in sweep_shapes(settings):
        sweep_ids, sweep_mask, _ = benchmark_inputs(config.vocab_size, batch, length)
        measured = measure(step_for(sweep_ids, sweep_mask), settings["sweep_repeats"])
        result["sweep"][name][length] = {"batch": batch, **measured}


def task_tf(settings: dict) -> dict:
    """Our Keras 3 models: forward under `tf.function(jit_compile=True)`, the Keras train step
    (`compile(jit_compile=True)` + `train_on_batch`, AdamW, dropout on)."""
    tf = configure_tensorflow(settings["threads"])
    import bench_tf  # the Keras fine-tuning step it times
    import keras

    import xlmr_tf

    config = xlmr_config(settings)
    result = {
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        **tensorflow_facts(tf, settings),
        "forward": {},
        "train": {},
        "sweep": {"ours": {}},
    }
    keras.utils.set_random_seed(0)
    model = xlmr_tf.TFXLMRobertaModel(config)
    xla_forward_measurements(tf, model, config, settings, result, "ours")
    del model
    keras.backend.clear_session()

    ids, mask, labels = benchmark_inputs(config.vocab_size, settings["batch"], settings["length"])
    median, first = bench_tf.tf_train_step(config, ids, mask, labels, settings["repeats"], jit_compile=True)
    result["train"]["ours"] = {"first": first, "median": median}
    return result


def task_tf_reference(settings: dict) -> dict:
    """The reference TF port (transformers on Keras 2), the same workload as `task_tf`.

    Runs only with TF_USE_LEGACY_KERAS=1; imports nothing of ours but the config and the
    helpers above, and checks at the end that our Keras 3 code never came in.
    """
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("the reference TF port needs TF_USE_LEGACY_KERAS=1 (Keras 2, tf_keras)")
    tf = configure_tensorflow(settings["threads"])
    import tf_keras
    import transformers

    config = xlmr_config(settings)
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    result = {
        "versions": {"tf_keras": tf_keras.__version__, "transformers": transformers.__version__},
        **tensorflow_facts(tf, settings),
        "forward": {},
        "train": {},
        "sweep": {"reference": {}},
    }
    tf_keras.utils.set_random_seed(0)
    model = transformers.TFXLMRobertaModel(reference_config)
    xla_forward_measurements(tf, model, config, settings, result, "reference")
    del model
    tf_keras.backend.clear_session()

    # The same Keras step as ours: compile without a loss (the model computes it from the
    # labels in the batch), AdamW with Keras' default weight decay, one train_on_batch.
    ids, mask, labels = benchmark_inputs(config.vocab_size, settings["batch"], settings["length"])
    model = transformers.TFXLMRobertaForSequenceClassification(reference_config)
    model.compile(optimizer=tf_keras.optimizers.AdamW(1e-5), jit_compile=True)
    features = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    result["train"]["reference"] = measure(lambda: model.train_on_batch(features), settings["repeats"])
    if "xlmr_tf" in sys.modules or "keras.src" in sys.modules:
        raise RuntimeError("Keras 3 was imported into the reference TF process")
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
    for name, model in models.items():
        run, compile_seconds = compile_forward(model, ids, mask)
        result["forward"][name] = {"compile": compile_seconds, **measure(run, repeats)}
    for batch, length in sweep_shapes(settings):
        sweep_ids, sweep_mask, _ = benchmark_inputs(config.vocab_size, batch, length)
        for name, model in models.items():
            run, compile_seconds = compile_forward(model, sweep_ids, sweep_mask)
            measured = measure(run, settings["sweep_repeats"])
            result["sweep"][name][length] = {"batch": batch, "compile": compile_seconds, **measured}
    del models

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
        compile_seconds = time.perf_counter() - start

        def step(compiled=compiled, holder=holder):
            holder["state"], loss = compiled(holder["state"], batch)
            loss.block_until_ready()

        result["train"][name] = {"compile": compile_seconds, **measure(step, repeats)}
        del model, holder, compiled
    return result


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
    "tf-reference": task_tf_reference,
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
