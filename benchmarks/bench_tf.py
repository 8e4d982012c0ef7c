"""xlmr_tf (Keras 3) against xlmr_torch, side by side in one process, on CPU.

Times, on an xlm-roberta-base-sized config, batch 8 x 128, float32:
  - the bare encoder forward pass: TF eager, TF under XLA (`tf.function(jit_compile=True)`),
    torch (`inference_mode`);
  - one fine-tuning step (sequence classification, AdamW, dropout on): TF through Keras
    (`compile` + the `fit` step, `train_on_batch`), with and without `jit_compile`,
    against torch (forward, backward, `optimizer.step()`).
Prints seconds, tokens/s and the TF/torch throughput ratio (> 1 means TF is faster).
Tracing/compilation is paid in the warm-up call and reported separately.

    python benchmarks/bench_tf.py [--batch 8] [--length 128] [--repeats 5] [--layers N] [--vocab-size V]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import xlmr_tf  # noqa: E402
import xlmr_torch  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds of `repeats` calls, seconds of the first, warm-up, call)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), first


def bench_forward(config, ids, mask, repeats):
    torch.manual_seed(0)
    torch_model = xlmr_torch.XLMRobertaModel(config).eval()
    ids_t, mask_t = torch.from_numpy(ids).long(), torch.from_numpy(mask).long()

    def torch_forward():
        with torch.inference_mode():
            torch_model(ids_t, attention_mask=mask_t).last_hidden_state.sum().item()

    keras.utils.set_random_seed(0)
    tf_model = xlmr_tf.TFXLMRobertaModel(config)
    ids_f, mask_f = tf.constant(ids), tf.constant(mask)
    xla = tf.function(lambda i, m: tf_model(i, attention_mask=m).last_hidden_state, jit_compile=True)

    def tf_eager():
        tf_model(ids_f, attention_mask=mask_f).last_hidden_state.numpy()

    def tf_xla():
        xla(ids_f, mask_f).numpy()

    results = {"torch": timed(torch_forward, repeats)}
    results["tf eager"] = timed(tf_eager, repeats)
    results["tf XLA"] = timed(tf_xla, repeats)
    return results


def torch_train_step(config, ids, mask, labels, repeats):
    torch.manual_seed(0)
    model = xlmr_torch.XLMRobertaForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = {
        "input_ids": torch.from_numpy(ids).long(),
        "attention_mask": torch.from_numpy(mask).long(),
        "labels": torch.from_numpy(labels).long(),
    }

    def step():
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()

    return timed(step, repeats)


def tf_train_step(config, ids, mask, labels, repeats, jit_compile):
    keras.utils.set_random_seed(0)
    model = xlmr_tf.TFXLMRobertaForSequenceClassification(config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-5), jit_compile=jit_compile)
    features = {"input_ids": ids, "attention_mask": mask, "labels": labels.astype(np.int32)}
    return timed(lambda: model.train_on_batch(features), repeats)


def bench_train_step(config, ids, mask, repeats):
    """One model at a time (each holds weights, gradients and AdamW state)."""
    config = config.copy(num_labels=2)
    labels = np.arange(len(ids)) % 2
    results = {"torch": torch_train_step(config, ids, mask, labels, repeats)}
    gc.collect()
    for name, jit_compile in (("tf fit step", False), ("tf fit step XLA", True)):
        results[name] = tf_train_step(config, ids, mask, labels, repeats, jit_compile)
        keras.backend.clear_session()
        gc.collect()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=None, help="fewer layers for a quick run")
    parser.add_argument("--vocab-size", type=int, default=None, help="smaller vocabulary (report it)")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()

    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    if args.vocab_size:
        overrides["vocab_size"] = args.vocab_size
    config = XLMRobertaConfig.from_pretrained("xlm-roberta-base", **overrides)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, (args.batch, args.length)).astype(np.int32)
    mask = np.ones_like(ids)
    tokens = args.batch * args.length

    print(
        f"xlm-roberta-base config: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocab {config.vocab_size}; batch {args.batch} x {args.length}, float32, CPU; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), tensorflow {tf.__version__}, "
        f"keras {keras.__version__}; median of {args.repeats}"
    )
    sections = [("forward", bench_forward(config, ids, mask, args.repeats))]
    if not args.skip_train:
        sections.append(("train step (AdamW)", bench_train_step(config, ids, mask, args.repeats)))
    for title, results in sections:
        torch_seconds = results["torch"][0]
        print(f"\n{title}")
        print(f"  {'':18} {'seconds':>8} {'tokens/s':>10} {'vs torch':>9} {'first call s':>13}")
        for name, (seconds, first) in results.items():
            ratio = torch_seconds / seconds
            print(f"  {name:18} {seconds:8.3f} {tokens / seconds:10.0f} {ratio:8.2f}x {first:13.2f}")


if __name__ == "__main__":
    main()
