"""Real-length batches: the reference (padded) against ours padded and ours unpadded.

At xlm-roberta-base size, random weights, float32, CPU, the forward pass of the bare model on
batches of 32 texts whose token lengths follow a fixed heavy-tailed mix (`LENGTHS` below),
each batch right-padded to its longest text as a data collator does. For each framework, in
one process, the reference with its default attention (padded: it has no other path), ours on
the padded batch and ours with `unpadded=True` run in interleaved rounds (the order rotates
every round), after one first call each that pays compilation. Throughput counts real tokens
only, so padding is work that earns nothing.

    python benchmarks/bench_unpadded.py [--framework torch|tf|flax|all] [--rounds 3] [--layers 12]

The TF reference runs on Keras 2 (`tf_keras`, which `transformers` imports itself) in the
same process as our Keras 3 models; nothing of ours reaches it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xlmr_core import (
    XLMRobertaConfig,  # noqa: E402
    unpadding,  # noqa: E402
)
from xlmr_core.unpadding import padding_fraction, static_budgets  # noqa: E402

# The workload: token lengths (with <s> and </s>) are log-normal with median 64 and sigma 0.9,
# clipped to [8, 512]: half the texts are under 64 tokens, one in ten over 200, about one in a
# hundred reaches 512 (sentences, with some paragraphs and documents among them). A batch of 32
# is padded to its longest member, so most of a padded batch is padding.
LENGTHS = {"median": 64, "sigma": 0.9, "low": 8, "high": 512}
BATCH_SIZE = 32
BATCH_SEEDS = (0, 1)  # two batches per round: longest 219 and 430 tokens
# The padding-fraction sweep: a batch of 8 x 256 whose real-token share is 1 - fraction.
SWEEP_SHAPE = (8, 256)
SWEEP_FRACTIONS = (0.0, 0.25, 0.5, 0.75)


# ----------------------------------------------------------------------------- the workload


def text_lengths(count: int, seed: int) -> np.ndarray:
    """`count` token lengths drawn from `LENGTHS`, reproducibly from `seed`."""
    rng = np.random.default_rng(seed)
    drawn = rng.lognormal(np.log(LENGTHS["median"]), LENGTHS["sigma"], count)
    return np.clip(np.rint(drawn), LENGTHS["low"], LENGTHS["high"]).astype(int)


def padded_batch(lengths, vocab_size: int, seed: int, width: int | None = None) -> dict:
    """int32 `input_ids` / `attention_mask` right-padded to `width` (default: the longest).

    Each text is <s> random pieces </s>; padding is the pad id 1 with mask 0, as a tokenizer
    with `padding=True` writes it.
    """
    rng = np.random.default_rng(seed)
    width = int(max(lengths)) if width is None else width
    ids = np.full((len(lengths), width), 1, np.int32)
    mask = np.zeros((len(lengths), width), np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(5, vocab_size, length)
        ids[row, 0], ids[row, length - 1] = 0, 2
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


def workload(vocab_size: int) -> list[dict]:
    """The benchmark's batches of `BATCH_SIZE` texts, one per seed in `BATCH_SEEDS`."""
    return [padded_batch(text_lengths(BATCH_SIZE, seed), vocab_size, seed) for seed in BATCH_SEEDS]


def sweep_batch(fraction: float, vocab_size: int) -> dict:
    """A `SWEEP_SHAPE` batch with `fraction` of its positions padding (row 0 is full length).

    The other rows keep the proportions of lengths drawn from `LENGTHS`, scaled (and capped
    at the width) until the batch holds exactly its share of real tokens.
    """
    rows, width = SWEEP_SHAPE
    wanted = round((1 - fraction) * rows * width) - width
    weights = text_lengths(rows - 1, seed=7).astype(float)
    low, high = 0.0, float(width)
    for _ in range(60):  # bisect the scale: the total grows with it
        scale = (low + high) / 2
        low, high = (scale, high) if np.minimum(width, scale * weights).sum() < wanted else (low, scale)
    rest = np.clip(np.rint(np.minimum(width, high * weights)), 1, width).astype(int)
    for row in np.argsort(-weights):  # rounding: move the remainder onto rows with room
        rest[row] = np.clip(rest[row] + wanted - rest.sum(), 1, width)
    return padded_batch([width, *rest], vocab_size, seed=7, width=width)


def real_tokens(batches: list[dict]) -> int:
    return int(sum(batch["attention_mask"].sum() for batch in batches))


def describe(batches: list[dict]) -> dict:
    """Shape, real tokens and padding fraction of `batches` (for the report)."""
    masks = [batch["attention_mask"] for batch in batches]
    positions = sum(mask.size for mask in masks)
    tokens = real_tokens(batches)
    return {
        "shapes": [list(mask.shape) for mask in masks],
        "real_tokens": tokens,
        "positions": positions,
        "padding_fraction": 1 - tokens / positions,
        "per_batch_padding": [padding_fraction(mask) for mask in masks],
    }


def work(batches: list[dict], config: XLMRobertaConfig) -> dict:
    """Matrix-product FLOPs of the encoder on `batches`: the reference padded, ours unpadded.

    Per token and layer the dense layers cost 8h² + 4hf; attention costs 4h per (query, key)
    pair: S² per padded row for the reference; Σ L_i² for PyTorch unpadded (exact count, per
    sequence); the token budget's rows and 64² per block pair (`static_budgets`) in TF and
    Flax. Their ratio is the speed-up at equal FLOP rates, what removing padding can buy.
    """
    h, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 8 * h * h + 4 * h * f
    reference = torch_unpadded = blocked = 0
    for batch in batches:
        mask = batch["attention_mask"]
        rows, width = mask.shape
        lengths = mask.sum(axis=1)
        budgets = static_budgets(mask)
        block = unpadding.attention_block_size(width)
        reference += rows * width * (dense + 4 * h * width)
        torch_unpadded += int(lengths.sum()) * dense + 4 * h * int((lengths**2).sum())
        blocked += budgets["token_budget"] * dense + 4 * h * budgets["pair_budget"] * block * block
    return {
        "reference_gflop": layers * reference / 1e9,
        "ceiling_torch": reference / torch_unpadded,
        "ceiling_blocked": reference / blocked,
    }


# ----------------------------------------------------------------------------- timing


def interleaved(steps: dict, rounds: int) -> dict:
    """Time every `steps[name]()` once per round, the order rotating from round to round.

    Returns, per name, the first call's seconds (compilation, warm-up) and each round's
    seconds; rotating the order means no implementation always runs first (or last, after
    the others have warmed the caches or heated the CPU).
    """
    names = list(steps)
    result = {name: {"times": []} for name in names}
    for name in names:
        start = time.perf_counter()
        steps[name]()
        result[name]["first"] = time.perf_counter() - start
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name]()
            result[name]["times"].append(time.perf_counter() - start)
    for name in names:
        result[name]["median"] = statistics.median(result[name]["times"])
    return result


def round_ratios(timings: dict, faster: str, slower: str) -> list[float]:
    """Per round, throughput of `faster` over that of `slower` (= slower's seconds / faster's)."""
    return [s / f for f, s in zip(timings[faster]["times"], timings[slower]["times"])]


# ----------------------------------------------------------------------------- the steps


def torch_steps(config: XLMRobertaConfig):
    """Build the models once; return `steps(batches)`: a `run()` per implementation (reference,
    ours padded, ours unpadded), each returning the first batch's last hidden state.

    Random weights: speed does not depend on them (agreement is the tests' job).
    """
    import torch
    import transformers

    import xlmr_torch

    torch.manual_seed(0)
    ours = xlmr_torch.XLMRobertaModel(config).eval()
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    reference_config._attn_implementation = "sdpa"
    reference = transformers.XLMRobertaModel(reference_config).eval()

    def steps(batches):
        inputs = [{k: torch.from_numpy(v).long() for k, v in batch.items()} for batch in batches]

        def step(model, **options):
            def run():
                with torch.inference_mode():
                    return [model(**batch, **options).last_hidden_state for batch in inputs][0].numpy()

            return run

        return {
            "reference": step(reference),
            "ours padded": step(ours),
            "ours unpadded": step(ours, unpadded=True),
        }

    return steps


def tf_steps(config: XLMRobertaConfig):
    """The same under XLA (`tf.function(jit_compile=True)`); ours unpadded compiles per budget pair."""
    import tensorflow as tf
    import transformers  # its TF port imports tf_keras (Keras 2) itself

    import xlmr_tf

    ours = xlmr_tf.TFXLMRobertaModel(config)
    reference = transformers.TFXLMRobertaModel(transformers.XLMRobertaConfig(**config.to_dict()))

    def forward_for(model, unpadded: bool):
        @tf.function(jit_compile=True)
        def forward(input_ids, attention_mask, tokens, pairs):
            options = {"unpadded": True, "token_budget": tokens, "pair_budget": pairs} if unpadded else {}
            out = model(input_ids=input_ids, attention_mask=attention_mask, training=False, **options)
            return out.last_hidden_state

        return forward

    forwards = {
        "reference": forward_for(reference, False),
        "ours padded": forward_for(ours, False),
        "ours unpadded": forward_for(ours, True),
    }

    def steps(batches):
        return {name: tf_step(forward, batches) for name, forward in forwards.items()}

    return steps


def tf_step(forward, batches):
    """`run()` of the compiled `forward` over `batches` (Python-int budgets: one trace per bucket)."""
    import tensorflow as tf

    inputs = [{k: tf.constant(v) for k, v in batch.items()} for batch in batches]
    budgets = [static_budgets(b["attention_mask"]) for b in batches]

    def run():
        outs = [
            forward(b["input_ids"], b["attention_mask"], budget["token_budget"], budget["pair_budget"])
            for b, budget in zip(inputs, budgets)
        ]
        return [out.numpy() for out in outs][0]

    return run


def flax_steps(config: XLMRobertaConfig):
    """The same, `jax.jit`-compiled; ours unpadded with static token and pair budgets per batch."""
    import jax
    import transformers

    import xlmr_flax

    ours = xlmr_flax.FlaxXLMRobertaModel(config, seed=0)
    reference = transformers.FlaxXLMRobertaModel(transformers.XLMRobertaConfig(**config.to_dict()), seed=0)

    def step(model, unpadded: bool, batches):
        calls = []
        for batch in batches:
            ids, mask = batch["input_ids"], batch["attention_mask"]
            options = {}
            if unpadded:
                options = {"unpadded": True, **static_budgets(mask)}
            forward = jax.jit(
                lambda params, i, m, o=options: model(i, m, params=params, **o).last_hidden_state
            )
            calls.append(forward.lower(model.params, ids, mask).compile())
            calls[-1] = (calls[-1], ids, mask)

        def run():
            outs = [compiled(model.params, ids, mask) for compiled, ids, mask in calls]
            return [np.asarray(out.block_until_ready()) for out in outs][0]

        return run

    def steps(batches):
        return {
            "reference": step(reference, False, batches),
            "ours padded": step(ours, False, batches),
            "ours unpadded": step(ours, True, batches),
        }

    return steps


STEP_BUILDERS = {"torch": torch_steps, "tf": tf_steps, "flax": flax_steps}


def unpadded_diff(outputs: dict, mask: np.ndarray) -> float:
    """Largest |unpadded - padded| of our last hidden state at real positions (padding must be 0)."""
    keep = mask.astype(bool)
    padded, unpadded = outputs["ours padded"], outputs["ours unpadded"]
    if np.any(unpadded[~keep]):
        raise AssertionError("unpadded=True left non-zero values at padded positions")
    return float(np.abs(unpadded[keep] - padded[keep]).max())


def measure(steps_for, batches: list[dict], rounds: int) -> dict:
    """Interleaved timings, real-token throughputs, per-round ratios and agreement on `batches`."""
    steps = steps_for(batches)
    outputs = {name: step() for name, step in steps.items()}  # also the first (compiling) call
    timings = interleaved(steps, rounds)
    tokens = real_tokens(batches)
    return {
        "timings": timings,
        "tokens_per_s": {name: tokens / t["median"] for name, t in timings.items()},
        "unpadded_vs_reference": round_ratios(timings, "ours unpadded", "reference"),
        "unpadded_vs_padded": round_ratios(timings, "ours unpadded", "ours padded"),
        "padded_vs_reference": round_ratios(timings, "ours padded", "reference"),
        "unpadded_max_abs_diff": unpadded_diff(outputs, batches[0]["attention_mask"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--framework", choices=[*STEP_BUILDERS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12 = xlm-roberta-base)")
    args = parser.parse_args()
    config = XLMRobertaConfig.from_pretrained("xlm-roberta-base", num_hidden_layers=args.layers)
    batches = workload(config.vocab_size)
    facts = describe(batches)
    print(
        f"xlm-roberta-base shape ({config.num_hidden_layers} layers), "
        f"{len(batches)} batches {facts['shapes']}, "
        f"{facts['real_tokens']} real tokens of {facts['positions']} positions: "
        f"padding fraction {facts['padding_fraction']:.2f}; median of {args.rounds} interleaved rounds",
        flush=True,
    )
    ceiling = work(batches, config)
    print(
        f"matrix-product FLOPs, reference padded / ours unpadded: {ceiling['ceiling_torch']:.2f}x "
        f"(torch: exact tokens, per sequence), {ceiling['ceiling_blocked']:.2f}x (TF, Flax: token "
        "and pair budgets, 64-token blocks): the speed-up at equal FLOP rates",
        flush=True,
    )
    for framework in STEP_BUILDERS if args.framework == "all" else [args.framework]:
        result = measure(STEP_BUILDERS[framework](config), batches, args.rounds)
        rates = result["tokens_per_s"]
        ratios = result["unpadded_vs_reference"]
        print(
            f"{framework:<6} real tok/s: reference {rates['reference']:7.0f}  ours padded "
            f"{rates['ours padded']:7.0f}  ours unpadded {rates['ours unpadded']:7.0f}   "
            f"unpadded / reference {statistics.median(ratios):.2f}x "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f})   "
            f"max |unpadded - padded| {result['unpadded_max_abs_diff']:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
