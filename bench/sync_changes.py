"""Benchmark: sync N changed work orders each way against both simulators.

The issue's target: for 2,000 changed work orders each way, Click Maint requests per synced
record must stay at or below 1.05 writes + 0.02 reads (Click Maint allows 300 requests per
5 minutes, so every request per record is a budget question), and wall time and peak RSS are
reported.

Phases (the simulators run in their own process, each syncd phase in a fresh one):

1. setup, not measured: seed both simulators, sync until a cycle writes nothing.  The rate limit
   is raised for this phase and its cost is reported separately.  Click Maint's clock runs an
   hour behind meanwhile, so the setup records are old news when the measurement starts, as
   in a daemon whose initial sync happened long ago, and one idle cycle after the jump moves
   the watermark to "now" (otherwise the scan's lookback window would re-read the setup's
   last writes and charge their pages to the measured changes).
2. N work orders are renamed in Click Maint and the notes of N *other* OTs are edited in
   mantenimiento (open OTs only: closed ones are re-read only every tenth cycle by design).
   The benchmark then waits `lag_seconds` + 1 s, as a daemon's interval would.
3. measured: sync until a cycle writes nothing; count requests on both servers, check that
   every change arrived, compare with the target.  Exit status 1 if it is not met (the read
   target is judged from 2,000 each way, the size the issue states it for; smaller runs report
   it).

    .venv/bin/python bench/sync_changes.py                  # 2,000 each way, fast budget
    .venv/bin/python bench/sync_changes.py --quick          # 200 each way, seconds
    .venv/bin/python bench/sync_changes.py --realistic-budget   # 300 requests per 5 s
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _support
from _simhost import SimHost, SimOptions
from _support import UNTHROTTLED, in_fresh_process, machine, mib, ratio, table

TARGET_WRITES = 1.05
TARGET_READS = 0.02
#: the size the issue states the targets for; below it the read ratio is reported, not judged:
#: each cycle pays a fixed few reads (the lookback page, the same-second re-read) that 2,000
#: records spread thin and 200 records do not
TARGET_SIZE = 2000
SETUP_AGE = 3600.0  # seconds Click Maint's clock runs behind during setup
FAST_WINDOW = 300.0
REAL_LIMIT = 300  # Click Maint's published limit ...
REAL_WINDOW = 5.0  # ... per 5 minutes, scaled to 5 seconds so the run stays short
TAG = "bench-rev"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


@dataclass(frozen=True)
class Budget:
    limit: int
    window: float

    def describe(self) -> str:
        return f"{self.limit:,} requests / {self.window:g} s"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = 200 if args.quick else args.size
    seeds = math.ceil(size * args.seed_factor)
    measured_budget = (
        Budget(REAL_LIMIT, REAL_WINDOW)
        if args.realistic_budget
        else Budget(UNTHROTTLED, FAST_WINDOW)
    )
    print(f"sync benchmark: {size:,} changed work orders each way, sockets on loopback")
    print(f"machine: {machine()}")
    print(
        f"seed: {seeds:,} work orders in Click Maint and {seeds:,} OTs in mantenimiento; "
        f"setup budget {Budget(UNTHROTTLED, FAST_WINDOW).describe()} (not measured)"
    )
    print(f"measured Click Maint budget (simulator and client): {measured_budget.describe()}")
    spread = f"spread over {args.spread:g} s" if args.spread else "one bulk edit"
    print(f"Click Maint edits: {spread}\n")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        directory = (args.workdir or Path(tmp)) / f"sync-{size}"
        outcome = run(directory, size, seeds, measured_budget, args)
    print(render(outcome, size, measured_budget))
    return verdict(outcome, size)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2000, help="changed records each way")
    parser.add_argument("--quick", action="store_true", help="200 each way (CI smoke run)")
    parser.add_argument(
        "--realistic-budget",
        action="store_true",
        help=f"measure with Click Maint's {REAL_LIMIT} requests per window, window scaled "
        f"from 5 min to {REAL_WINDOW:g} s",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="stamp the Click Maint edits evenly over this many seconds before the run "
        "(default 0: one bulk edit, all within a second or two)",
    )
    parser.add_argument(
        "--seed-factor",
        type=float,
        default=1.4,
        help="records seeded per side = size x this (enough open pairs for both change sets)",
    )
    parser.add_argument("--max-cycles", type=int, default=6, help="give up after this many")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here (debugging)")
    return parser.parse_args(argv)


# -- orchestration (this process is not measured) --------------------------------------------
def run(directory: Path, size: int, seeds: int, budget: Budget, args: argparse.Namespace) -> dict:
    options = SimOptions(
        directory=directory,
        work_orders=seeds,
        ots=seeds,
        variant={"rate_limit": UNTHROTTLED, "rate_window": FAST_WINDOW},
        cm_skew=-SETUP_AGE,
    )
    with SimHost(options) as sims:
        fast = _support.write_bench_config(
            directory, "setup", rate_limit=UNTHROTTLED, window=FAST_WINDOW
        )
        setup = in_fresh_process(sync_until_quiet, fast, args.max_cycles)
        setup["server"] = sims.call("logs")
        cm_pairs, mt_pairs = pick_pairs(fast, size)
        sims.call("cm_skew", seconds=0.0)
        # one idle cycle after the clock jump, as a daemon runs every minute: it re-reads the
        # setup's last writes (the lookback) and moves the watermark to "now", so the measured
        # cycles pay for the changes and their own echoes, not for the setup's tail
        setup["settle"] = in_fresh_process(sync_until_quiet, fast, 1)
        if args.spread:
            # `--spread` back-dates the edits over the last N seconds; they must still be newer
            # than the settle cycle, as edits made during a daemon's interval are (stamped
            # before the watermark minus the lookback they would be a clock-skew test)
            time.sleep(args.spread)
        cm_ids = [cm for cm, _mt in cm_pairs]
        sims.call("change_cm_titles", ids=cm_ids, tag=TAG, spread=args.spread)
        sims.call("change_mt_notes", ids=[mt for _cm, mt in mt_pairs], tag=TAG)
        measure = _support.write_bench_config(
            directory, "measure", rate_limit=budget.limit, window=budget.window
        )
        sims.call("cm_variant", rate_limit=budget.limit, rate_window=budget.window)
        sims.call("reset_logs")
        lag = _support.load_bench_config(measure).clickmaint.lag_seconds
        time.sleep(lag + 1)  # changes older than the scan's lag, as after a daemon interval
        measured = in_fresh_process(sync_until_quiet, measure, args.max_cycles)
        measured["server"] = sims.call("logs")
        measured["arrived"] = sims.call("verify", cm_changed=cm_pairs, mt_changed=mt_pairs, tag=TAG)
    return {"setup": setup, "measured": measured, "seeds": seeds}


def pick_pairs(config_path: Path, size: int) -> tuple[list[list[int]], list[list[int]]]:
    """Two disjoint sets of `size` linked pairs whose OT is open, alternating along the ids so
    that both sets mix pairs that started in Click Maint with pairs that started in
    mantenimiento."""
    from syncd.ledger.store import Ledger

    config = _support.load_bench_config(config_path)
    # not read-only: a read-only open refuses a ledger whose schema this checkout would
    # migrate, and this throwaway ledger is about to be written by the measured phase anyway
    ledger = Ledger.open(config.ledger_path)
    try:
        pairs = [
            [int(link.cm_id), int(link.mt_id)]
            for link in ledger.iter_links("work_orders", state="active", mt_open=True)
        ]
    finally:
        ledger.close()
    if len(pairs) < 2 * size:
        raise SystemExit(
            f"only {len(pairs)} open linked pairs after setup, {2 * size} needed: "
            "raise --seed-factor"
        )
    pairs.sort()
    return pairs[0 : 2 * size : 2], pairs[1 : 2 * size : 2]


# -- the measured process ---------------------------------------------------------------------
def sync_until_quiet(conn: Connection, config_path: Path, max_cycles: int) -> None:
    """Entry point of a spawned syncd process: its peak RSS is the one reported."""
    import traceback

    try:
        conn.send((True, _cycles(config_path, max_cycles)))
    except Exception:
        conn.send((False, traceback.format_exc()))


def _cycles(config_path: Path, max_cycles: int) -> dict[str, Any]:
    """Run work_orders cycles the way the daemon does (one App, a ledger per cycle) until one
    writes nothing."""
    from syncd.app import App

    _support.log_to_file(config_path.parent / "syncd.log")
    app = App(_support.load_bench_config(config_path))
    probe = Probe(app)
    baseline = _support.peak_rss_kib()
    cycles: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for number in range(1, max_cycles + 1):
            cycles.append(_one_cycle(app, probe, number))
            if cycles[-1]["status"] not in ("ok", "partial") or not cycles[-1]["writes"]:
                break
    finally:
        app.close()
    return {
        "cycles": cycles,
        "seconds": time.perf_counter() - started,
        "baseline_kib": baseline,
        "peak_kib": _support.peak_rss_kib(),
        "client": app.stats.snapshot(),
        "per_page": app.config.clickmaint.per_page,
    }


class Probe:
    """Counts, inside the measured process, what the request totals alone cannot explain:
    which kind of Click Maint list query each GET was, how many items they returned, and how
    long calls waited for the rate budget.  It wraps two bound methods of this App's objects;
    syncd's code is unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pages: Counter[str] = Counter()
        self.items = 0
        self.budget_wait = 0.0
        list_page, acquire = app.cm.list_page, app.cm_budget.acquire

        def counted_list_page(path: str, **kw: Any) -> Any:
            page = list_page(path, **kw)
            self.pages[_query_kind(kw)] += 1
            self.items += len(page.items)
            return page

        def timed_acquire(**kw: Any) -> float:
            waited = acquire(**kw)
            self.budget_wait += waited
            return waited

        app.cm.list_page = counted_list_page
        app.cm_budget.acquire = timed_acquire

    def counts(self) -> dict[str, float]:
        stats = self.app.stats
        return {
            "cm_get": stats.count(server="clickmaint", method="GET"),
            "cm_write": sum(stats.count(server="clickmaint", method=m) for m in WRITE_METHODS),
            "mt": stats.count(server="mantenimiento"),
            "scan_pages": self.pages["scan"],
            "tie_pages": self.pages["same second"],
            "other_pages": self.pages["other"],
            "items_read": self.items,
            "budget_wait": self.budget_wait,
        }


def _query_kind(kw: dict[str, Any]) -> str:
    """The change scan sorts by updated_at; a page full of one second is re-read in id order
    ("same second"); anything else is detection, adoption or reconciliation."""
    sort = kw.get("sort") or ""
    if sort.startswith("updated_at"):
        return "scan"
    if sort == "id asc":
        return "same second"
    return "other"


def _one_cycle(app: Any, probe: Probe, number: int) -> dict[str, Any]:
    before = probe.counts()
    started = time.perf_counter()
    ledger = app.open_ledger()
    try:
        report = app.stream("work_orders", app.runtime(ledger)).run(kind="once")
    finally:
        ledger.close()
    seconds = time.perf_counter() - started
    after = probe.counts()
    return {
        "cycle": number,
        "seconds": seconds,
        "status": report.status,
        "error": report.error,
        "writes": report.writes,
        "counts": dict(report.counts),
        "notes": report.notes[:5],
        "requests": {k: after[k] - before[k] for k in after},
    }


# -- reporting ----------------------------------------------------------------------------------
def by_method(log: dict[str, Any]) -> Counter[str]:
    """Server-side request log -> counts per HTTP method."""
    out: Counter[str] = Counter()
    for route, n in log["by_route"].items():
        out[route.split(" ", 1)[0]] += n
    return out


def metrics(phase: dict[str, Any]) -> dict[str, Any]:
    cm = by_method(phase["server"]["cm"])
    mt = by_method(phase["server"]["mt"])
    counts: Counter[str] = Counter()
    for cycle in phase["cycles"]:
        counts.update(cycle["counts"])
    return {
        "cm_get": cm["GET"],
        "cm_write": sum(cm[m] for m in WRITE_METHODS),
        "cm_total": phase["server"]["cm"]["total"],
        "cm_429": phase["server"]["cm"]["by_status"].get("429", 0),
        "mt_get": mt["GET"],
        "mt_total": phase["server"]["mt"]["total"],
        "counts": counts,
        "quiet": bool(phase["cycles"]) and not phase["cycles"][-1]["writes"],
    }


def render(outcome: dict[str, Any], size: int, budget: Budget) -> str:
    setup, measured = outcome["setup"], outcome["measured"]
    return "\n\n".join(
        [
            "## setup (rate limit raised, not measured)\n" + render_setup(setup),
            "## measured cycles\n" + render_cycles(measured),
            "## measured totals\n" + render_totals(measured, size, budget),
        ]
    )


def render_setup(setup: dict[str, Any]) -> str:
    m = metrics(setup)
    c = m["counts"]
    rows = [
        [
            len(setup["cycles"]),
            f"{c['created_cm']:,} / {c['created_mt']:,}",
            f"{m['cm_get']:,}",
            f"{m['cm_write']:,}",
            f"{m['mt_total']:,}",
            f"{setup['seconds']:.1f} s",
            mib(setup["peak_kib"]),
            "yes" if m["quiet"] else "NO",
        ]
    ]
    headers = [
        "cycles",
        "created in CM / in mt",
        "CM GET",
        "CM writes",
        "mt requests",
        "wall",
        "peak RSS",
        "quiet",
    ]
    return table(headers, rows)


def render_cycles(measured: dict[str, Any]) -> str:
    rows = []
    for c in measured["cycles"]:
        r = c["requests"]
        rows.append(
            [
                c["cycle"],
                c["status"],
                f"{c['seconds']:.1f} s",
                c["counts"].get("updated_cm", 0),
                c["counts"].get("updated_mt", 0),
                f"{r['cm_get']} = {r['scan_pages']} + {r['tie_pages']} + {r['other_pages']}",
                r["items_read"],
                r["cm_write"],
                r["mt"],
                f"{r['budget_wait']:.1f} s",
                c["counts"].get("quarantined", 0),
            ]
        )
    headers = [
        "cycle",
        "status",
        "wall",
        "updated in CM",
        "updated in mt",
        "CM GET = scan + same-second + other",
        "CM items read",
        "CM writes",
        "mt requests",
        "budget wait",
        "quarantined",
    ]
    notes = [f"cycle {c['cycle']}: {n}" for c in measured["cycles"] for n in c["notes"]]
    errors = [f"cycle {c['cycle']}: {c['error']}" for c in measured["cycles"] if c["error"]]
    return "\n".join([table(headers, rows), *notes, *errors])


def render_totals(measured: dict[str, Any], size: int, budget: Budget) -> str:
    m = metrics(measured)
    arrived = measured["arrived"]
    to_cm, to_mt = arrived["to_cm"], arrived["to_mt"]
    total = to_cm + to_mt
    per_page = measured["per_page"]
    rows = [
        ["records changed (each way)", f"{size:,} in CM, {size:,} in mt"],
        ["records synced mt → CM / CM → mt", f"{to_cm:,} / {to_mt:,} (checked on the servers)"],
        ["cycles until quiet", f"{len(measured['cycles'])} (quiet: {_yn(m['quiet'])})"],
        ["CM GET requests", f"{m['cm_get']:,}"],
        ["CM write requests (POST/PATCH)", f"{m['cm_write']:,}"],
        ["CM 429 answers", f"{m['cm_429']:,}"],
        ["CM retries by the client", f"{measured['client']['retries'].get('clickmaint', 0):,}"],
        ["CM writes per synced record", f"{ratio(m['cm_write'], total):.4f}"],
        ["CM reads per synced record", f"{ratio(m['cm_get'], total):.4f}"],
        ["CM writes per record synced to CM", f"{ratio(m['cm_write'], to_cm):.4f}"],
        ["CM reads per record synced to CM", f"{ratio(m['cm_get'], to_cm):.4f}"],
        [
            "CM reads lower bound (each change and each own write read once)",
            f"{floor_reads(to_mt, m['cm_write'], per_page)} "
            f"= {ratio(floor_reads(to_mt, m['cm_write'], per_page), total):.4f} per synced record",
        ],
        ["mt requests per synced record", f"{ratio(m['mt_total'], total):.2f}"],
        ["mt requests (GET / all)", f"{m['mt_get']:,} / {m['mt_total']:,}"],
        ["wall time (measured cycles)", f"{measured['seconds']:.1f} s"],
        ["records per second", f"{ratio(total, measured['seconds']):.1f}"],
        ["peak RSS (syncd process)", mib(measured["peak_kib"])],
        ["RSS before the first cycle", mib(measured["baseline_kib"])],
    ]
    if budget.limit != UNTHROTTLED:
        rows += budget_rows(m, measured, budget)
    writes_ok, reads_ok = targets(m, to_cm, total)
    reads_verdict = (
        ("met" if reads_ok else "NOT met")
        if size >= TARGET_SIZE
        else (f"{'met' if reads_ok else 'not met'}; informational below {TARGET_SIZE:,} each way")
    )
    rows += [
        [
            f"target: ≤ {TARGET_WRITES} CM writes per record synced to CM",
            f"{ratio(m['cm_write'], to_cm):.4f} → {'met' if writes_ok else 'NOT met'}",
        ],
        [
            f"target: ≤ {TARGET_READS} CM reads per synced record",
            f"{ratio(m['cm_get'], total):.4f} → {reads_verdict}",
        ],
    ]
    return table(["measure", "value"], rows)


def floor_reads(cm_changes: int, cm_writes: int, per_page: int) -> int:
    """Fewest GETs an updated_at scan can do: every changed work order is read once, and so is
    every work order syncd itself wrote (a write bumps updated_at; the scan cannot tell it is
    an echo before reading it)."""
    return math.ceil(cm_changes / per_page) + math.ceil(cm_writes / per_page)


def budget_rows(m: dict[str, Any], measured: dict[str, Any], budget: Budget) -> list[list[str]]:
    """Wall time against the budget's steady rate (requests / limit x window).

    The client keeps `rate_reserve` requests of each window back, so even a run that did
    nothing but Click Maint requests would need about limit / (limit - reserve) of it.
    """
    seconds = measured["seconds"]
    waited = sum(c["requests"]["budget_wait"] for c in measured["cycles"])
    by_writes = m["cm_write"] / budget.limit * budget.window
    by_all = m["cm_total"] / budget.limit * budget.window
    return [
        ["time spent waiting for the CM budget", f"{waited:.1f} s"],
        ["theoretical minimum: CM writes / (limit per window)", f"{by_writes:.1f} s"],
        ["wall / that minimum", f"{ratio(seconds, by_writes):.2f}"],
        ["theoretical minimum: all CM requests / (limit per window)", f"{by_all:.1f} s"],
        ["wall / that minimum", f"{ratio(seconds, by_all):.2f}"],
    ]


def targets(m: dict[str, Any], to_cm: int, total: int) -> tuple[bool, bool]:
    writes_ok = ratio(m["cm_write"], to_cm) <= TARGET_WRITES
    reads_ok = ratio(m["cm_get"], total) <= TARGET_READS
    return writes_ok, reads_ok


def verdict(outcome: dict[str, Any], size: int) -> int:
    measured = outcome["measured"]
    m = metrics(measured)
    arrived = measured["arrived"]
    failures = []
    if arrived["to_cm"] != size or arrived["to_mt"] != size:
        failures.append(
            f"not every change arrived ({arrived['to_cm']}/{size} to CM, "
            f"{arrived['to_mt']}/{size} to mt)"
        )
    if not m["quiet"]:
        failures.append("no quiet cycle")
    writes_ok, reads_ok = targets(m, arrived["to_cm"], arrived["to_cm"] + arrived["to_mt"])
    if not writes_ok:
        failures.append(f"more than {TARGET_WRITES} CM writes per record")
    if not reads_ok and size >= TARGET_SIZE:
        failures.append(f"more than {TARGET_READS} CM reads per record")
    if failures:
        print("\nFAIL: " + "; ".join(failures))
        return 1
    if size >= TARGET_SIZE:
        print("\nPASS: every change arrived and the Click Maint request target is met")
    else:
        print(
            "\nPASS: every change arrived and the Click Maint write target is met "
            f"(the read target is judged from {TARGET_SIZE:,} each way)"
        )
    return 0


def _yn(value: bool) -> str:
    return "yes" if value else "NO"


if __name__ == "__main__":
    sys.exit(main())
