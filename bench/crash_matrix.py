"""Crash matrix: kill -9 syncd at every named step and at random instants, then check.

    python bench/crash_matrix.py            # long: every named step, 200 random kills of
                                            # `sync --once` that landed, 100 of the daemon;
                                            # writes bench/results/crash_matrix.json
    python bench/crash_matrix.py --quick    # CI size: named steps, 4 + 2 random kills
    python bench/crash_matrix.py --render bench/results/crash_matrix.json   # the docs' tables

Each trial runs syncd as a real process against both simulators - `syncd sync --once` with
all three streams, or the daemon (`syncd run`) while a Click Maint user keeps editing - kills
it (SIGKILL) at a named crash point or at a random instant, runs syncd again until a round
writes nothing, and verifies: no work order, OT, request or aviso lost or duplicated, every
linked pair agrees field by field (requests / avisos: status), every usage transaction in
Click Maint's own data on its OT exactly once, nothing set aside in quarantine by the crash.

Random instants are drawn inside the work: an uncrashed `sync --once` of each phase is timed
first (from its first cycle's start to its last cycle's end, with 5-25 ms of latency on every
request), and each kill comes a uniform random delay after the killed run's first cycle
started, within that span.  A kill *landed* if it left a cycle unfinished (its ledger run still
`running`); it hit a *writing* cycle if that cycle had already passed a crash point (each sits
right after a remote write).  Random `sync --once` trials are drawn until `--random` of them
landed.  Daemon kills come a random delay (0-5 s) after the daemon's first work_orders cycle
began.  Exit status 1 if any trial breaks an invariant, a named step is not reached, or fewer
kills landed than asked.  Trials run two at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _support

from syncd.sandbox.crashlab import (
    NAMED_POINTS,
    PHASES,
    RANDOM_LATENCY_MS,
    Window,
    describe,
    measure,
    trial,
)

RESULTS = _support.ROOT / "bench" / "results" / "crash_matrix.json"
RANDOM_PHASES = ("initial", "edits")
#: daemon kills: a delay after its first work_orders cycle began (the first cycles of the
#: three streams are staggered 2 s apart, then each runs every second)
DAEMON_DELAY = (0.0, 5.0)


def _named(args: tuple[str, str]) -> dict[str, Any]:
    phase, point = args
    return describe(trial(f"{phase}/{point}", crash_at=point, phase=phase))


def _random(args: tuple[str, int, float, str]) -> dict[str, Any]:
    what, seed, delay, phase = args
    name = f"random-{what}-{seed}@{delay:.2f}s/{phase}"
    result = trial(
        name,
        kill_after=delay,
        phase=phase,
        seed=seed,
        daemon=what == "daemon",
        latency_ms=RANDOM_LATENCY_MS,
    )
    return describe(result)


def _measure(phase: str) -> Window:
    return measure(phase)


def draw(what: str, n: int, seed: int, windows: dict[str, Window]) -> tuple[str, int, float, str]:
    """Trial `n` of its kind, the same on every run with the same `--seed`."""
    rng = random.Random(f"{seed}-{what}-{n}")
    phase = rng.choice(RANDOM_PHASES)
    delay = rng.uniform(*DAEMON_DELAY) if what == "daemon" else windows[phase].draw(rng)
    return what, rng.randint(1, 10_000), delay, phase


def run_random(
    pool: ProcessPoolExecutor,
    windows: dict[str, Window],
    *,
    landed_once: int,
    daemon: int,
    seed: int,
    workers: int,
) -> list[dict[str, Any]]:
    """Daemon kills (a fixed number) and `sync --once` kills until `landed_once` landed (at
    most twice as many tried)."""
    results: list[dict[str, Any]] = []
    pending: dict[Future[dict[str, Any]], str] = {}
    tried = {"once": 0, "daemon": 0}

    def landed() -> int:
        return sum(1 for r in results if r["trial"].startswith("random-once-") and r["in_flight"])

    def want(what: str) -> bool:
        if what == "daemon":
            return tried["daemon"] < daemon
        running = sum(1 for kind in pending.values() if kind == "once")
        return landed() + running < landed_once and tried["once"] < 2 * landed_once

    while True:
        while len(pending) < 2 * workers:
            # one daemon kill for every two of `sync --once`, as long as both are wanted
            kinds = ["daemon"] if tried["daemon"] * 2 < tried["once"] else ["once"]
            kinds += ["once", "daemon"]
            what = next((k for k in kinds if want(k)), None)
            if what is None:
                break
            job = draw(what, tried[what], seed, windows)
            tried[what] += 1
            pending[pool.submit(_random, job)] = what
        if not pending:
            return results
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            del pending[future]
            results.append(future.result())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--random", type=int, default=200, help="random kills of `sync --once` that must land"
    )
    parser.add_argument("--daemon", type=int, default=None, help="daemon kills (random / 2)")
    parser.add_argument("--quick", action="store_true", help="CI size: 4 + 2 random kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write the JSON results here (default: {RESULTS.relative_to(_support.ROOT)} for "
        "the long run, nothing with --quick)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--render", metavar="RESULTS", help="print the Markdown results of a saved run"
    )
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(Path(args.render).read_text(encoding="utf-8"))))
        return 0
    landed_once = 4 if args.quick else args.random
    daemon = 2 if args.quick else (args.daemon if args.daemon is not None else args.random // 2)
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    started = time.monotonic()
    at = datetime.now(UTC)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        windows = dict(zip(RANDOM_PHASES, pool.map(_measure, RANDOM_PHASES), strict=True))
        results = list(pool.map(_named, NAMED_POINTS))
        results += run_random(
            pool,
            windows,
            landed_once=landed_once,
            daemon=daemon,
            seed=args.seed,
            workers=args.workers,
        )
    summary = summarise(results, landed_once, daemon)
    summary.update(
        seconds=round(time.monotonic() - started, 1),
        started=at.strftime("%Y-%m-%d %H:%M UTC"),
        commit=_support.git_commit(),
        machine=_support.machine(),
        command="python bench/crash_matrix.py " + " ".join(sys.argv[1:]),
        seed=args.seed,
        latency_ms=list(RANDOM_LATENCY_MS),
        windows={
            p: {"span": round(w.span, 2), "seconds": round(w.seconds, 2), "points": w.points}
            for p, w in windows.items()
        },
    )
    report = {"summary": summary, "trials": results}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(table(results))
        print()
        print(render(report))
        if out is not None:
            print(f"\nresults written to {out}")
    return 0 if summary["passed"] else 1


def summarise(results: list[dict[str, Any]], landed_once: int, daemon: int) -> dict[str, Any]:
    named = [r for r in results if r["trial"].split("/")[0] in PHASES]
    once = [r for r in results if r["trial"].startswith("random-once-")]
    daemons = [r for r in results if r["trial"].startswith("random-daemon-")]
    failed = [r["trial"] for r in results if not r["ok"]]
    not_reached = [r["trial"] for r in named if not r["crashed"]]
    landed = sum(1 for r in once if r["in_flight"])
    return {
        "trials": len(results),
        "named_steps": len(named),
        "named_steps_not_reached": not_reached,
        "once_tried": len(once),
        "once_landed": landed,
        "once_landed_writing": sum(1 for r in once if r["in_flight"] and r["writing"]),
        "once_wanted": landed_once,
        "daemon_kills": len(daemons),
        "daemon_in_flight": sum(1 for r in daemons if r["in_flight"]),
        "daemon_writing": sum(1 for r in daemons if r["writing"]),
        "failed": failed,
        "passed": not failed
        and not not_reached
        and landed >= landed_once
        and len(daemons) >= daemon,
    }


def table(results: list[dict[str, Any]]) -> str:
    header = ("trial", "killed", "landed", "writing", "ok", "pairs", "div", "lost", "tx exp/prob")
    fmt = "{:<44} {:>6} {:>6} {:>7} {:>4} {:>5} {:>4} {:>5} {:>11}"
    lines = [fmt.format(*header)]
    for r in results:
        lines.append(
            fmt.format(
                r["trial"],
                "yes" if r["crashed"] else "no",
                "yes" if r["in_flight"] else "no",
                "yes" if r["writing"] else "no",
                "yes" if r["ok"] else "NO",
                r["pairs"],
                r["divergences"],
                r["duplicates_or_lost"],
                f"{r['transactions_expected']}/{r['transaction_problems']}",
            )
        )
    for r in results:
        if not r["ok"]:
            lines.append(f"FAILED {r['trial']}: {r['examples']} {r['set_aside']} {r['notes']}")
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """The results section of docs/crash-matrix.md, from a saved run."""
    s, trials = results["summary"], results["trials"]
    named = [t for t in trials if t["trial"].split("/")[0] in PHASES]
    once = [t for t in trials if t["trial"].startswith("random-once-")]
    daemons = [t for t in trials if t["trial"].startswith("random-daemon-")]

    def total(key: str) -> int:
        return sum(int(t.get(key) or 0) for t in trials)

    bad = total("divergences") + total("duplicates_or_lost")
    windows = "; ".join(
        f"{phase} {w['span']:.1f} s" for phase, w in sorted(s.get("windows", {}).items())
    )
    lines = [
        f"`{s['command'].strip()}` on {s['started']} at commit `{s['commit']}` "
        f"({s['machine']}), {s['seconds']:.0f} s, two trials at a time.",
        "",
        "| | |",
        "|---|---|",
        f"| trials | {s['trials']} |",
        f"| named steps (each reached and killed) | {len(named)} "
        f"({sum(1 for t in named if t['crashed'])} killed) |",
        f"| random kills of `syncd sync --once` | {len(once)} tried, **{s['once_landed']} "
        f"landed** (a cycle left unfinished), {s['once_landed_writing']} of them in a cycle "
        "that had already written |",
        f"| random kills of the daemon (`syncd run`, a user editing) | {len(daemons)}: "
        f"{s['daemon_in_flight']} left a cycle unfinished, {s['daemon_writing']} of them a "
        "cycle that had already written |",
        f"| work measured per phase (first cycle start to last cycle end, uncrashed, "
        f"{s['latency_ms'][0]}-{s['latency_ms'][1]} ms latency) | {windows} |",
        f"| work-order pairs / fields verified | {total('pairs'):,} / "
        f"{total('fields_compared'):,} |",
        f"| request ⇄ aviso pairs verified | {total('request_pairs'):,} |",
        f"| usage transactions checked in Click Maint's data (each on its OT exactly once) "
        f"| {total('transactions_expected'):,} |",
        f"| divergent fields, lost or duplicated records | {bad} |",
        f"| transactions duplicated / missing (ledger view; server view problems) | "
        f"{total('transactions_duplicated')} / {total('transactions_missing')}; "
        f"{total('transaction_problems')} |",
        f"| request / aviso problems | {total('request_problems')} |",
        f"| records set aside by a crash | {sum(len(t.get('set_aside') or []) for t in trials)} |",
        f"| **failed trials** | **{len(s['failed'])}** |",
        "",
        "Named steps:",
        "",
        "| trial | killed | pairs | fields | requests | tx checked | divergences "
        "| lost/duplicated | tx problems | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in named:
        tx = t["transactions_duplicated"] + t["transactions_missing"] + t["transaction_problems"]
        lines.append(
            f"| `{t['trial']}` | {'yes' if t['crashed'] else 'no'} | {t['pairs']} "
            f"| {t['fields_compared']} | {t.get('request_pairs', 0)} "
            f"| {t['transactions_expected']} | {t['divergences']} | {t['duplicates_or_lost']} "
            f"| {tx} | {'ok' if t['ok'] else 'FAILED'} |"
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
