"""Crash matrix: kill -9 syncd at every named step and at random instants, then check.

    python bench/crash_matrix.py                 # long: every named step + 200 random kills
    python bench/crash_matrix.py --random 20     # fewer random kills
    python bench/crash_matrix.py --quick         # CI size: named steps once, 5 random kills

Each trial runs syncd as a real process against both simulators - `syncd sync --once` with
all three streams, or for every third random kill the daemon (`syncd run`) - kills it
(SIGKILL) at a named crash point or after a random delay, runs syncd again until a round
writes nothing, and verifies: no work order, OT, request or aviso lost or duplicated, every
linked pair agrees field by field (requests / avisos: status), every usage transaction on its
OT exactly once, nothing set aside in quarantine by the crash.  Exit status 1 if any trial
breaks an invariant.  Trials run two at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.sandbox.crashlab import NAMED_POINTS, describe, trial


def _named(args: tuple[str, str]) -> dict[str, Any]:
    phase, point = args
    return describe(trial(f"{phase}/{point}", crash_at=point, phase=phase))


def _random(args: tuple[int, float, str, bool]) -> dict[str, Any]:
    seed, delay, phase, daemon = args
    what = "daemon" if daemon else "once"
    name = f"random-{what}-{seed}@{delay:.2f}s/{phase}"
    return describe(trial(name, kill_after=delay, phase=phase, seed=seed, daemon=daemon))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--random", type=int, default=200, help="random-instant kills")
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count = 5 if args.quick else args.random
    rng = random.Random(args.seed)
    # a clean `sync --once` of this workload takes ~1.5 s; kills spread over 0.2 s .. 3 s cover
    # start-up, the initial sync, the edits, the transactions and the requests.  Every third
    # kill hits the daemon instead (`syncd run`, all streams side by side, a cycle a second),
    # anywhere in its first 6 s.
    random_trials = []
    for n in range(count):
        daemon = n % 3 == 2
        delay = rng.uniform(0.5, 6.0) if daemon else rng.uniform(0.2, 3.0)
        random_trials.append(
            (rng.randint(1, 10_000), delay, rng.choice(["initial", "edits"]), daemon)
        )
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results.extend(pool.map(_named, NAMED_POINTS))
        results.extend(pool.map(_random, random_trials))
    failed = [r for r in results if not r["ok"]]
    never_reached = [
        r for r in results if r["trial"].split("/")[0] in ("initial", "edits") and not r["crashed"]
    ]
    summary = {
        "trials": len(results),
        "named_steps": len(NAMED_POINTS),
        "random_kills": len(random_trials),
        "killed_mid_run": sum(1 for r in results if r["crashed"]),
        "failed": len(failed),
        "named_steps_not_reached": len(never_reached),
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps({"summary": summary, "trials": results}, indent=2, ensure_ascii=False))
    else:
        header = ("trial", "killed", "ok", "pairs", "fields", "div", "lost/dup", "tx dup/miss")
        print("{:<42} {:>6} {:>4} {:>5} {:>6} {:>4} {:>8} {:>11}".format(*header))
        for r in results:
            row = (
                r["trial"],
                "yes" if r["crashed"] else "no",
                "yes" if r["ok"] else "NO",
                r["pairs"],
                r["fields_compared"],
                r["divergences"],
                r["duplicates_or_lost"],
                f"{r['transactions_duplicated']}/{r['transactions_missing']}",
            )
            print("{:<42} {:>6} {:>4} {:>5} {:>6} {:>4} {:>8} {:>11}".format(*row))
        print()
        for key, value in summary.items():
            print(f"{key:>24}: {value}")
        for r in failed:
            print(f"FAILED {r['trial']}: {r['examples']} {r['notes']}")
    return 1 if failed or never_reached else 0


if __name__ == "__main__":
    sys.exit(main())
