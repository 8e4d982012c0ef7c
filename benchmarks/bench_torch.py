"""xlmr_torch against the reference implementation, side by side in one process.

xlm-roberta-base shape, random weights, batch 8 x 128, float32, CPU. Three workloads:
forward (inference), one sequence-classification training step with AdamW, and one
masked-LM training step with 15 % of positions labelled. Prints tokens/s and the ratio
ours / reference for each.

The masked-LM step: ours on the labelled-positions path, the reference computing logits for
every position as it must, both with the same optimizer: fused AdamW (ours through
`xlmr_torch.training.adamw`, what our README recommends; the reference as `transformers.Trainer`
builds it by default with torch >= 2.8), and again both with `torch.optim.AdamW`'s plain
default. The four steps alternate within each round (the order rotates) and the per-round
ratio range is printed.

    python benchmarks/bench_torch.py [--repeats 3] [--batch 8] [--length 128] [--layers 12]
                                     [--only masked-lm]
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
from bench_unpadded import interleaved  # noqa: E402 - rounds that rotate who goes first

import xlmr_torch  # noqa: E402
from xlmr_core import XLMRobertaConfig  # noqa: E402
from xlmr_torch.training import adamw  # noqa: E402


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


def train_step(model, inputs, optimizer=None, **forward_kwargs):
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-5)

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
    parser.add_argument("--only", choices=["masked-lm"], help="run only this workload")
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

    # drawn first whichever workloads run, so the masked-LM labels are always the same
    classification_labels = torch.randint(0, 3, (args.batch,), generator=generator)
    forward = classification = None
    if args.only is None:
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
        classification = report(
            "sequence-classification step",
            tokens,
            timed(train_step(ours.train(), {**inputs, "labels": classification_labels}), args.repeats),
            timed(train_step(reference.train(), {**inputs, "labels": classification_labels}), args.repeats),
            1.0,
        )
        del ours, reference

    ours, reference = make_models("ForMaskedLM", config)
    labels = inputs["input_ids"].clone()
    labels[torch.rand(labels.shape, generator=generator) >= 0.15] = -100
    mlm_inputs = {**inputs, "labels": labels}
    ours.train(), reference.train()
    # The same hyper-parameters everywhere (lr 1e-5, weight decay 0.01 on every tensor). The
    # headline pair both use the fused kernel: ours through `adamw`, the reference as its own
    # Trainer builds it by default with torch >= 2.8 ("adamw_torch_fused"). The second pair
    # both use torch.optim.AdamW's plain default (the for-loop update on CPU).
    timings = interleaved(
        {
            "ours": train_step(
                ours,
                mlm_inputs,
                adamw(ours.parameters(), lr=1e-5, max_grad_norm=None),  # as the reference: no clipping
                labelled_positions_only=True,
            ),
            "reference": train_step(reference, mlm_inputs, fused_adamw(reference)),
            "ours, default AdamW": train_step(ours, mlm_inputs, labelled_positions_only=True),
            "reference, default AdamW": train_step(reference, mlm_inputs),
        },
        args.repeats,
    )
    times = {name: timing["times"] for name, timing in timings.items()}
    ratios = {}
    for name, against, label in (
        ("ours", "reference", "masked-LM step (15% labelled)"),
        ("ours, default AdamW", "reference, default AdamW", "  both on AdamW's default"),
    ):
        ratios[name] = report(
            label, tokens, statistics.median(times[name]), statistics.median(times[against]), 2.0
        )
        per_round = [r / o for r, o in zip(times[against], times[name])]
        print(f"{'':<28} per-round ratio {min(per_round):.2f}-{max(per_round):.2f}", flush=True)
    summary = (
        f"masked-LM step {ratios['ours']:.2f} ({ratios['ours, default AdamW']:.2f} both on AdamW's default)"
    )
    if forward is not None:
        summary = f"forward {forward:.2f}, classification step {classification:.2f}, " + summary
    print("ratios: " + summary)


def fused_adamw(model):
    """The reference's optimizer as `transformers.Trainer` makes it by default (torch >= 2.8)."""
    return torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)


if __name__ == "__main__":
    main()
