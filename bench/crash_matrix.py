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
    parser.add_argument(
        "--render", metavar="RESULTS", help="print the Markdown results of a --json run"
    )
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text(encoding="utf-8"))))
        return 0
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


def render(results: dict[str, Any]) -> str:
    """The results section of docs/crash-matrix.md, from a `--json` run."""
    summary, trials = results["summary"], results["trials"]
    named = [t for t in trials if t["trial"].split("/")[0] in ("initial", "edits")]
    by_mode = {
        mode: [t for t in trials if t["trial"].startswith(f"random-{mode}-")]
        for mode in ("once", "daemon")
    }

    def total(key: str, rows: list[dict[str, Any]] = trials) -> int:
        return sum(int(t.get(key) or 0) for t in rows)

    bad = total("divergences") + total("duplicates_or_lost")
    lines = [
        "| | |",
        "|---|---|",
        f"| trials | {summary['trials']} ({summary['seconds']:.0f} s, 2 at a time) |",
        f"| named steps (each reached and killed) | {len(named)} "
        f"({sum(1 for t in named if t['crashed'])} killed) |",
    ]
    for mode, rows in by_mode.items():
        what = "`syncd sync --once`" if mode == "once" else "the daemon (`syncd run`)"
        lines.append(
            f"| random kills of {what} | {len(rows)} "
            f"({sum(1 for t in rows if t['crashed'])} landed while it was running) |"
        )
    lines += [
        f"| work-order pairs / fields verified | {total('pairs'):,} / "
        f"{total('fields_compared'):,} |",
        f"| request ⇄ aviso pairs verified | {total('request_pairs'):,} |",
        f"| divergent fields, lost or duplicated records | {bad} |",
        f"| transactions duplicated / missing | {total('transactions_duplicated')} / "
        f"{total('transactions_missing')} |",
        f"| request / aviso problems | {total('request_problems')} |",
        f"| records set aside by a crash | {sum(len(t.get('set_aside') or []) for t in trials)} |",
        f"| **failed trials** | **{summary['failed']}** |",
        "",
        "Named steps:",
        "",
        "| trial | killed | pairs | fields | requests | divergences | lost/duplicated "
        "| tx duplicated/missing | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in named:
        lines.append(
            f"| `{t['trial']}` | {'yes' if t['crashed'] else 'no'} | {t['pairs']} "
            f"| {t['fields_compared']} | {t.get('request_pairs', 0)} | {t['divergences']} "
            f"| {t['duplicates_or_lost']} "
            f"| {t['transactions_duplicated']}/{t['transactions_missing']} "
            f"| {'ok' if t['ok'] else 'FAILED'} |"
        )
    failed = [t for t in trials if not t["ok"]]
    if failed:
        lines += ["", "Failed trials:", ""]
        lines += [
            f"* `{t['trial']}`: {t['examples']} {t.get('set_aside')} {t['notes']}" for t in failed
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
