"""The fuzz suite's default slice: about 1,000 seeded cases over every target, each target in a
child process of its own (memory-limited where native code runs); zero crashes and zero hangs.
`XLMR_FUZZ_SCALE=25` (what `nox -s fuzz` runs through `python -m tests.fuzz`) scales it up."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from .harness import DEFAULT_CASES, TOTAL, available, cases_for, memory_for, run_target

SCALE = float(os.environ.get("XLMR_FUZZ_SCALE", "1"))
SEED = int(os.environ.get("XLMR_FUZZ_SEED", "0"))
# Longest first, two at a time (the machine's two cores): framework start-up dominates the slice.
ORDER = ["model_flax", "model_tf", "cli", "sentencepiece", "text", "model_torch", "tokenizer_json"]
ORDER += [target for target in DEFAULT_CASES if target not in ORDER]


@pytest.fixture(scope="module")
def results():
    """Every available target's tally, run two workers at a time."""
    targets = [target for target in ORDER if available(target)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            target: pool.submit(
                run_target, target, cases_for(target, SCALE), seed=SEED, memory_mb=memory_for(target)
            )
            for target in targets
        }
        tallies = {target: future.result() for target, future in futures.items()}
    for tally in tallies.values():
        TOTAL.add(tally)
    return tallies


@pytest.mark.parametrize("target", list(DEFAULT_CASES))
def test_every_input_works_or_is_a_clean_error(results, target):
    if target not in results:
        pytest.skip(f"{target}: its framework is not installed")
    tally = results[target]
    assert tally.cases == cases_for(target, SCALE)
    assert not tally.failures, "\n".join(tally.failures[:20])
