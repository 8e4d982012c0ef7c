"""The real-length workload and the interleaved timing of benchmarks/bench_unpadded.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_unpadded.py"
_spec = importlib.util.spec_from_file_location("bench_unpadded_under_test", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_lengths_follow_the_documented_distribution():
    lengths = bench.text_lengths(100_000, seed=0)
    assert lengths.min() == bench.LENGTHS["low"] and lengths.max() == bench.LENGTHS["high"]
    assert np.median(lengths) == pytest.approx(bench.LENGTHS["median"], rel=0.03)
    # log-normal: P(L > 200) = P(z > ln(200 / 64) / 0.9) = 10 %
    assert np.mean(lengths > 200) == pytest.approx(0.103, abs=0.01)


def test_workload_is_reproducible_and_mostly_padding():
    first, again = bench.workload(1000), bench.workload(1000)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    facts = bench.describe(first)
    assert facts["shapes"] == [[32, 219], [32, 430]]
    assert facts["padding_fraction"] == pytest.approx(1 - 4989 / 20768)


def test_batches_are_right_padded_texts_with_bos_and_eos():
    batch = bench.workload(1000)[0]
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        length = int(mask.sum())
        assert mask[:length].all() and not mask[length:].any()
        assert ids[0] == 0 and ids[length - 1] == 2 and (ids[length:] == 1).all()


@pytest.mark.parametrize("fraction", bench.SWEEP_FRACTIONS)
def test_sweep_batches_have_exactly_their_padding_fraction(fraction):
    mask = bench.sweep_batch(fraction, 1000)["attention_mask"]
    assert mask.shape == bench.SWEEP_SHAPE
    assert bench.padding_fraction(mask) == pytest.approx(fraction, abs=0.5 / mask.size)
    assert mask[0].all()  # the first row sets the padded width


def test_interleaved_rounds_rotate_who_goes_first():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    result = bench.interleaved(steps, rounds=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(result[name]["times"]) == 3 for name in "abc")


def test_round_ratios_are_per_round_throughput_ratios():
    timings = {"fast": {"times": [1.0, 2.0]}, "slow": {"times": [3.0, 3.0]}}
    assert bench.round_ratios(timings, "fast", "slow") == [3.0, 1.5]
