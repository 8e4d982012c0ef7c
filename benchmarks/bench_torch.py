"""xlmr_torch against the reference implementation, side by side in one process.

xlm-roberta-base shape, random weights, batch 8 x 128, float32, CPU. Three workloads:
forward (inference), one sequence-classification training step with AdamW, and one
masked-LM training step with 15 % of positions labelled (ours on the labelled-positions
path, the reference computing logits for every position as it must). Prints tokens/s
and the ratio ours / reference for each.

    python benchmarks/bench_torch.py [--repeats 3] [--batch 8] [--length 128] [--layers 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("USE_TF", "0")  # the reference would otherwise import TensorFlow too
os.environ.setdefault("USE_FLAX", "0")

import torch  # noqa: E402
import transformers  # noqa: E402

import xlmr_torch  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402


def timed(step, repeats: int) -> float:
    """Median seconds of `step()` over `repeats` runs, after one warm-up run."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_models(head: str, config: XLMRobertaConfig):
    """Ours and the reference's `head`, with identical weights."""
    torch.manual_seed(0)
    ours = getattr(xlmr_torch, f"XLMRoberta{head}")(config)
    reference_config = transformers.XLMRobertaConfig(**config.to_dict())
    reference_config._attn_implementation = "sdpa"
    reference = getattr(transformers, f"XLMRoberta{head}")(reference_config)
    missing, unexpected = reference.load_state_dict(ours.state_dict(), strict=False)
    assert not [k for k in missing if "position_ids" not in k] and not unexpected, (missing, unexpected)
    return ours, reference


def batch(config, batch_size, length, generator):
    input_ids = torch.randint(3, config.vocab_size, (batch_size, length), generator=generator)
    input_ids[:, 0] = 0
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def forward_step(model, inputs):
    def step():
        with torch.inference_mode():
            model(**inputs)

    return step


def train_step(model, inputs, **forward_kwargs):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(**inputs, **forward_kwargs).loss
        loss.backward()
        optimizer.step()

    return step


def report(name, tokens, ours_s, reference_s, target):
    ratio = reference_s / ours_s
    verdict = "meets" if ratio >= target else "BELOW"
    print(
        f"{name:<28} ours {tokens / ours_s:9.1f} tok/s   reference {tokens / reference_s:9.1f} tok/s   "
        f"ratio {ratio:5.2f}  ({verdict} target {target:.1f})",
        flush=True,
    )
    return ratio


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12 = xlm-roberta-base)")
    args = parser.parse_args()

    config = XLMRobertaConfig.from_pretrained("xlm-roberta-base", num_hidden_layers=args.layers, num_labels=3)
    generator = torch.Generator().manual_seed(0)
    inputs = batch(config, args.batch, args.length, generator)
    tokens = args.batch * args.length
    print(
        f"xlm-roberta-base shape ({config.num_hidden_layers} layers, vocab {config.vocab_size}), "
        f"batch {args.batch} x {args.length}, float32, CPU, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, transformers {transformers.__version__}, median of {args.repeats}",
        flush=True,
    )

    ours, reference = make_models("Model", config)
    ours.eval(), reference.eval()
    forward = report(
        "forward",
        tokens,
        timed(forward_step(ours, inputs), args.repeats),
        timed(forward_step(reference, inputs), args.repeats),
        1.0,
    )
    del ours, reference

    ours, reference = make_models("ForSequenceClassification", config)
    labels = torch.randint(0, 3, (args.batch,), generator=generator)
    classification = report(
        "sequence-classification step",
        tokens,
        timed(train_step(ours.train(), {**inputs, "labels": labels}), args.repeats),
        timed(train_step(reference.train(), {**inputs, "labels": labels}), args.repeats),
        1.0,
    )
    del ours, reference

    ours, reference = make_models("ForMaskedLM", config)
    labels = inputs["input_ids"].clone()
    labels[torch.rand(labels.shape, generator=generator) >= 0.15] = -100
    mlm_inputs = {**inputs, "labels": labels}
    masked_lm = report(
        "masked-LM step (15% labelled)",
        tokens,
        timed(train_step(ours.train(), mlm_inputs, labelled_positions_only=True), args.repeats),
        timed(train_step(reference.train(), mlm_inputs), args.repeats),
        2.0,
    )
    print(
        f"ratios: forward {forward:.2f}, classification step {classification:.2f}, "
        f"masked-LM step {masked_lm:.2f}"
    )


if __name__ == "__main__":
    main()
