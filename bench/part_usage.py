"""Benchmark: the part_usage stream, 1,000 vs 10,000 parts.

Claims checked, over real loopback sockets:

* an idle cycle costs the same number of Click Maint requests whatever the catalogue size
  (ideally 1: one page of the parts listing, sorted and filtered by `updated_at`);
* mirroring M usage transactions costs few Click Maint reads per transaction (the parts
  listing, then one `transaction_history` page per part that moved) and one mantenimiento
  write each;
* every transaction lands on its OT exactly once (`syncd/sandbox/verify.py` plus a per
  transaction check against the OT it must be on).

Per size N (each in its own simulator process; syncd in a fresh process driven cycle by cycle):

1. setup: `--work-orders` work orders synced to mantenimiento (the work_orders stream);
2. first sync: the catalogue is grown to N parts (each with its first restock, 31-90 days ago)
   and part_usage runs until quiet: it pages every part's history once (reported separately);
3. idle: the Click Maint clock jumps past the lookback window; syncd learns the new time from
   the next answer's `Date` header, so the first cycle after the jump still uses the old time
   and the second one moves the watermark past the lookback window.  Cycles 3 and 4 after the
   jump are the idle ones;
4. M usage transactions on linked work orders, twice: "spread" (M different parts, the worst
   case: one history page per part) and "hot parts" (the same M over the nine catalogue parts
   that have a mantenimiento material), each followed by an idle measurement as in 3.

The rate limit is raised in the simulator and the client budget (this counts requests, it does
not wait for them).  Exit status 1 if the idle cost differs between sizes, a transaction is
missing or duplicated, or syncd's end-state check fails.

    .venv/bin/python bench/part_usage.py                    # 1,000 and 10,000 parts, M = 200
    .venv/bin/python bench/part_usage.py --quick            # 1,000 and 10,000 parts, M = 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _support
from _simhost import SimHost, SimOptions
from _support import UNTHROTTLED, Worker, machine, mib, ratio, server_requests, table

WINDOW = 300.0
STREAM = "part_usage"
#: catalogue parts whose number maps to a mantenimiento material (LAMP-LED-18 has none)
HOT_PARTS = 9
HISTORY_ROUTE = "clickmaint GET /parts/{id}/transaction_history"
LISTING_ROUTE = "clickmaint GET /parts"


@dataclass
class Scenario:
    name: str
    transactions: int
    parts: int
    cycles: list[dict[str, Any]]
    server: dict[str, int]
    placed: dict[str, Any]
    idle: list[dict[str, Any]]

    @property
    def mirroring(self) -> list[dict[str, Any]]:
        """Cycles that wrote (the last, quiet one only confirms and costs an idle cycle)."""
        return [c for c in self.cycles if c["req"]["mt_write"]] or self.cycles[:1]

    @property
    def mirrored(self) -> int:
        return sum(c["counts"].get("mirrored", 0) for c in self.cycles)


@dataclass
class SizeResult:
    parts: int
    transactions_seeded: int
    setup: list[dict[str, Any]]
    first: list[dict[str, Any]]
    first_server: dict[str, int]
    idle: list[dict[str, Any]]
    scenarios: list[Scenario] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)
    peak_kib: int = 0

    def idle_cost(self, key: str = "cm_get") -> list[int]:
        """Requests of the measured idle cycles (every idle measurement, all scenarios)."""
        runs = [self.idle, *(s.idle for s in self.scenarios)]
        return [sum(c["req"][k] for k in _keys(key)) for run in runs for c in run[-2:]]


def _keys(key: str) -> tuple[str, ...]:
    return (
        ("cm_get", "cm_write") if key == "cm" else ("mt_get", "mt_write") if key == "mt" else (key,)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    usages = 50 if args.quick else args.usages
    print("part_usage benchmark: Click Maint part transactions -> mantenimiento, loopback")
    print(f"machine: {machine()}")
    print(
        f"rate limit raised to {UNTHROTTLED:,} / {WINDOW:.0f} s (requests are counted, not "
        f"waited for); {args.work_orders} work orders linked first; M = {usages} usages\n"
    )
    results = [run_size(size, usages, args) for size in sizes]
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps([as_dict(r) for r in results], indent=1))
    return verdict(results)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated part counts")
    parser.add_argument("--usages", type=int, default=200, help="M usage transactions per run")
    parser.add_argument("--quick", action="store_true", help="M = 50 (CI smoke run)")
    parser.add_argument(
        "--work-orders", type=int, default=300, help="work orders seeded and linked first"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here (debugging)")
    return parser.parse_args(argv)


# -- orchestration ------------------------------------------------------------------------------
def run_size(size: int, usages: int, args: argparse.Namespace) -> SizeResult:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        directory = (args.workdir or Path(tmp)) / f"part-usage-{size}"
        options = SimOptions(
            directory=directory,
            work_orders=args.work_orders,
            ots=0,
            variant={"rate_limit": UNTHROTTLED, "rate_window": WINDOW},
        )
        with SimHost(options) as sims:
            seeded = sims.call("add_parts", total=size)
            config = _support.write_bench_config(
                directory, "bench", rate_limit=UNTHROTTLED, window=WINDOW
            )
            settings = _support.load_bench_config(config).clickmaint
            jump = settings.lookback_seconds + settings.lag_seconds + 1
            with Worker(config) as worker:
                setup = worker.until_quiet("work_orders")
                sims.call("reset_logs")
                first = worker.until_quiet(STREAM)
                first_server = server_requests(sims.call("logs"))
                result = SizeResult(
                    parts=seeded["parts"],
                    transactions_seeded=seeded["transactions"],
                    setup=setup,
                    first=first,
                    first_server=first_server,
                    idle=idle_cycles(worker, sims, jump),
                )
                links = linked_ots(config)
                for name, pairs in plan_usages(sims, links, usages):
                    result.scenarios.append(
                        run_scenario(worker, sims, name, pairs, links, settings.lag_seconds, jump)
                    )
                result.peak_kib = worker.peak_rss_kib()
            result.check = sims.call("verify_all", config_path=str(config))
    return result


def idle_cycles(worker: Worker, sims: SimHost, jump: float) -> list[dict[str, Any]]:
    """Four cycles after the Click Maint clock jumped `jump` seconds (past the lookback).

    Cycle 1 still computes its horizon from the old server time (syncd learns the new one from
    that cycle's first answer); cycle 2 moves the watermark past the lookback window, so it
    may re-read what changed just before the jump; cycles 3 and 4 are idle.
    """
    sims.call("cm_advance", seconds=jump)
    return [worker.cycle(STREAM) for _ in range(4)]


def linked_ots(config_path: Path) -> dict[int, int]:
    """Click Maint work order id -> OT id, for links whose OT is open."""
    from syncd.ledger.store import Ledger

    ledger = Ledger.open(_support.load_bench_config(config_path).ledger_path, readonly=True)
    try:
        return {
            int(link.cm_id): int(link.mt_id)
            for link in ledger.iter_links("work_orders", state="active", mt_open=True)
        }
    finally:
        ledger.close()


def plan_usages(
    sims: SimHost, links: dict[int, int], usages: int
) -> list[tuple[str, list[list[int]]]]:
    """Two batches of `usages` [work order, part] pairs: M different parts, then M usages over
    the catalogue's fast movers (the parts that already have a mantenimiento material)."""
    work_orders = sorted(links)
    parts = sims.call("part_ids")
    hot = parts[:HOT_PARTS]
    others = [p for p in sims.call("part_ids", with_material=False) if p not in set(hot)]
    if len(others) < usages:
        raise SystemExit(f"only {len(others)} parts for {usages} usages on different parts")

    def wo(index: int) -> int:
        return work_orders[index % len(work_orders)]

    spread = [[wo(i), others[i * len(others) // usages]] for i in range(usages)]
    concentrated = [[wo(i + usages), hot[i % len(hot)]] for i in range(usages)]
    return [("spread (M parts)", spread), (f"hot parts ({len(hot)} parts)", concentrated)]


def run_scenario(
    worker: Worker,
    sims: SimHost,
    name: str,
    pairs: list[list[int]],
    links: dict[int, int],
    lag: float,
    jump: float,
) -> Scenario:
    """Add the usages, wait out the lag as a daemon interval would, sync until quiet, check."""
    tx_ids = sims.call("add_usages", pairs=pairs)
    time.sleep(lag + 1)
    sims.call("reset_logs")
    cycles = worker.until_quiet(STREAM)
    server = server_requests(sims.call("logs"))
    expected = {str(tx): links[wo] for tx, (wo, _part) in zip(tx_ids, pairs, strict=True)}
    return Scenario(
        name=name,
        transactions=len(pairs),
        parts=len({part for _wo, part in pairs}),
        cycles=cycles,
        server=server,
        placed=sims.call("usage_on_ots", expected=expected),
        idle=idle_cycles(worker, sims, jump),
    )


# -- reporting ------------------------------------------------------------------------------------
def _sum(cycles: list[dict[str, Any]], key: str) -> int:
    return sum(c["req"][k] for c in cycles for k in _keys(key))


def _route(cycles: list[dict[str, Any]], route: str) -> int:
    return sum(c["routes"].get(route, 0) for c in cycles)


def render(results: list[SizeResult]) -> str:
    return "\n\n".join(
        [
            "## first sync (every part's history paged once)\n" + render_first(results),
            "## idle cycles after the clock jump (cycles 3 and 4 are the idle ones)\n"
            + render_idle(results),
            "## M usage transactions on linked work orders\n" + render_usage(results),
            "## end state\n" + render_check(results),
        ]
    )


def render_first(results: list[SizeResult]) -> str:
    rows = []
    for r in results:
        cm = _sum(r.first, "cm")
        counts: dict[str, int] = {}
        for cycle in r.first:
            for key, value in cycle["counts"].items():
                counts[key] = counts.get(key, 0) + value
        rows.append(
            [
                f"{r.parts:,}",
                f"{r.transactions_seeded:,}",
                len(r.first),
                f"{cm:,} = {_route(r.first, LISTING_ROUTE)} + "
                f"{_route(r.first, HISTORY_ROUTE):,} + "
                f"{cm - _route(r.first, LISTING_ROUTE) - _route(r.first, HISTORY_ROUTE)}",
                f"{r.first_server['cm_get'] + r.first_server['cm_write']:,}",
                f"{ratio(cm, r.parts):.3f}",
                f"{counts.get('mirrored', 0):,} / {counts.get('not_mirrored', 0):,}",
                f"{_sum(r.first, 'mt'):,}",
                f"{sum(c['seconds'] for c in r.first):.1f} s",
            ]
        )
    headers = [
        "parts",
        "transactions",
        "cycles",
        "CM requests = listing + histories + other",
        "CM (server)",
        "CM per part",
        "mirrored / not mirrored",
        "mt requests",
        "wall",
    ]
    return table(headers, rows)


def render_idle(results: list[SizeResult]) -> str:
    rows = []
    for r in results:
        for label, cycles in [
            ("after first sync", r.idle),
            *((s.name, s.idle) for s in r.scenarios),
        ]:
            rows.append(
                [
                    f"{r.parts:,}",
                    label,
                    " / ".join(str(_sum([c], "cm")) for c in cycles),
                    " / ".join(str(_sum([c], "mt")) for c in cycles),
                    " / ".join(f"{c['seconds'] * 1000:.0f}" for c in cycles),
                ]
            )
    headers = [
        "parts",
        "measured",
        "CM requests, cycles 1 / 2 / 3 / 4",
        "mt requests, cycles 1 / 2 / 3 / 4",
        "wall ms, cycles 1 / 2 / 3 / 4",
    ]
    lines = [table(headers, rows)]
    costs = {r.parts: sorted(set(r.idle_cost("cm"))) for r in results}
    mt_costs = {r.parts: sorted(set(r.idle_cost("mt"))) for r in results}
    lines.append(
        "\nidle cycle (cycles 3-4): CM requests "
        + ", ".join(f"{n:,} parts: {'/'.join(map(str, c))}" for n, c in costs.items())
        + "; mt requests "
        + ", ".join(f"{n:,} parts: {'/'.join(map(str, c))}" for n, c in mt_costs.items())
    )
    return "\n".join(lines)


def render_usage(results: list[SizeResult]) -> str:
    rows = []
    for r in results:
        for s in r.scenarios:
            work = s.mirroring
            cm, mt = _sum(work, "cm"), _sum(work, "mt")
            rows.append(
                [
                    f"{r.parts:,}",
                    s.name,
                    f"{s.mirrored} of {s.transactions}",
                    f"{len(s.cycles)} ({len(work)} wrote)",
                    f"{cm} = {_route(work, LISTING_ROUTE)} + {_route(work, HISTORY_ROUTE)} + "
                    f"{cm - _route(work, LISTING_ROUTE) - _route(work, HISTORY_ROUTE)}",
                    f"{ratio(cm, s.mirrored):.3f}",
                    f"{mt} ({_sum(work, 'mt_write')} writes)",
                    f"{ratio(mt, s.mirrored):.2f}",
                    f"{ratio(_sum(work, 'mt_write'), s.mirrored):.2f}",
                    f"{s.placed['exactly_once']} of {s.placed['expected']}",
                ]
            )
    headers = [
        "parts",
        "usages on",
        "mirrored",
        "cycles",
        "CM requests = listing + histories + other",
        "CM per tx",
        "mt requests",
        "mt per tx",
        "mt writes per tx",
        "on its OT exactly once",
    ]
    note = (
        "\nRequests of the cycles that mirrored (the quiet cycle that follows costs what an idle "
        "cycle costs). mt requests include the per-cycle fixed cost: `_reverse_direction` reads "
        "the materials of every open linked OT each cycle."
    )
    return table(headers, rows) + note


def render_check(results: list[SizeResult]) -> str:
    rows = [
        [
            f"{r.parts:,}",
            "yes" if r.check.get("ok") else "NO",
            r.check.get("pairs"),
            r.check.get("transactions_duplicated"),
            r.check.get("transactions_missing"),
            r.check.get("duplicates_or_lost"),
            r.check.get("divergences"),
            r.check.get("quarantined"),
            mib(r.peak_kib),
        ]
        for r in results
    ]
    headers = [
        "parts",
        "verify ok",
        "pairs",
        "tx duplicated",
        "tx missing",
        "unlinked",
        "divergences",
        "quarantined",
        "peak RSS (syncd)",
    ]
    return table(headers, rows)


def as_dict(result: SizeResult) -> dict[str, Any]:
    """A compact, JSON-able summary (perf_report.py keeps it with the report's data)."""
    return {
        "parts": result.parts,
        "first_cm": _sum(result.first, "cm"),
        "first_mt": _sum(result.first, "mt"),
        "first_seconds": sum(c["seconds"] for c in result.first),
        "idle_cm": result.idle_cost("cm"),
        "idle_mt": result.idle_cost("mt"),
        "scenarios": [
            {
                "name": s.name,
                "transactions": s.transactions,
                "parts": s.parts,
                "mirrored": s.mirrored,
                "cm": _sum(s.mirroring, "cm"),
                "mt": _sum(s.mirroring, "mt"),
                "mt_write": _sum(s.mirroring, "mt_write"),
                "exactly_once": s.placed["exactly_once"],
            }
            for s in result.scenarios
        ],
        "check_ok": bool(result.check.get("ok")),
        "peak_kib": result.peak_kib,
    }


def verdict(results: list[SizeResult]) -> int:
    failures = []
    idle = {r.parts: set(r.idle_cost("cm")) for r in results}
    if len({frozenset(v) for v in idle.values()}) != 1 or any(len(v) != 1 for v in idle.values()):
        failures.append(f"Click Maint requests per idle cycle differ: {idle}")
    for r in results:
        for s in r.scenarios:
            if s.placed["exactly_once"] != s.transactions or s.mirrored != s.transactions:
                failures.append(
                    f"{r.parts} parts, {s.name}: {s.mirrored} mirrored, "
                    f"{s.placed['exactly_once']} of {s.transactions} exactly once on their OT "
                    f"(missing {s.placed['missing']}, wrong {s.placed['wrong']})"
                )
        if not r.check.get("ok"):
            failures.append(f"{r.parts} parts: verify failed: {r.check.get('examples')}")
    if failures:
        print("\nFAIL: " + "; ".join(failures))
        return 1
    cost = next(iter(next(iter(idle.values()))))
    print(
        f"\nPASS: {cost} Click Maint request(s) per idle cycle for every size; every transaction "
        "is on its OT exactly once"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
