"""A fuzz worker: `python -m tests.fuzz.worker TARGET SEED MEMORY_MB`, one case index per line on
stdin, one JSON verdict per line on stdout (see `harness`). Anything the code under test prints
goes to /dev/null, so it cannot corrupt the verdicts."""

from __future__ import annotations

import json
import os
import resource
import sys


def main() -> None:
    target, seed, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if memory_mb:
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    verdicts = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process

    from .harness import describe, is_clean
    from .targets import TARGETS, TIE, Broken, Refused

    runner = TARGETS[target](seed)
    verdicts.write(json.dumps({"ready": True}) + "\n")
    verdicts.flush()
    for line in sys.stdin:
        try:
            verdict = {"outcome": "accepted", "tie": runner.case(int(line)) == TIE}
        except Refused:
            verdict = {"outcome": "clean"}
        except Broken as broken:
            verdict = {"outcome": "crash", "detail": f"broken rule: {broken}"[:400]}
        except BaseException as error:  # noqa: BLE001 - judging every error is the point
            clean, why = is_clean(error)
            verdict = (
                {"outcome": "clean"}
                if clean
                else {"outcome": "crash", "detail": f"{describe(error)} [{why}]"}
            )
        verdicts.write(json.dumps(verdict) + "\n")
        verdicts.flush()


if __name__ == "__main__":
    main()
