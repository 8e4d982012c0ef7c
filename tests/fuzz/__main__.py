"""`python -m tests.fuzz [--scale S] [--seed N] [TARGET ...]`: run the fuzz targets and end with
`fuzz: N cases, C clean errors, A accepted, X crashes, H hangs`; exit 1 on any crash or hang."""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from .harness import DEFAULT_CASES, Tally, available, cases_for, memory_for, run_target


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"some of: {', '.join(DEFAULT_CASES)}")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("XLMR_FUZZ_SCALE", "1")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("XLMR_FUZZ_SEED", "0")))
    parser.add_argument("--jobs", type=int, default=2, help="targets run at once (default 2)")
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(DEFAULT_CASES))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_CASES)}")
    os.environ["XLMR_FUZZ_SCALE"] = str(args.scale)  # the workers size their set-up by it
    total = Tally()
    targets = [target for target in args.targets or list(DEFAULT_CASES) if available(target)]
    for target in sorted(set(args.targets or DEFAULT_CASES) - set(targets)):
        print(f"{target:15s} skipped: its framework is not installed", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each target is a child process
        futures = [
            pool.submit(
                run_target,
                target,
                cases_for(target, args.scale),
                seed=args.seed,
                memory_mb=memory_for(target),
            )
            for target in targets
        ]
        for target, future in zip(targets, futures):
            tally = future.result()
            ties = f"; {tally.ties} of them slow != fast by a segmentation tie" if tally.ties else ""
            print(f"{target:15s} {tally.line()[6:]} ({tally.seconds:.0f} s){ties}", flush=True)
            for failure in tally.failures[:50]:
                print(f"  {failure}", flush=True)
            if len(tally.failures) > 50:
                print(f"  ... and {len(tally.failures) - 50} more", flush=True)
            total.add(tally)
    print(total.line(), flush=True)
    return 1 if total.crashes or total.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
