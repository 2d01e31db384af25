"""Benchmark: page N Click Maint work orders through `ClickMaintClient.iter_pages`.

Two claims are checked, over a real loopback socket:

* requests: a full listing costs exactly `ceil(N / per_page_cap)` GETs (every request counts
  against Click Maint's 300 per 5 minutes, so one wasted page per listing matters);
* memory: `iter_pages` holds one page at a time, so the client's peak RSS must not grow with N
  (the 10k run may differ from the 1k run by at most 10 %).

Each size runs in a fresh process (so peak RSS is comparable) and the simulator in yet another
one (so its records are not counted).  Exit status 1 if either claim fails.

    .venv/bin/python bench/pagination.py --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _support
from _simhost import SimHost, SimOptions
from _support import UNTHROTTLED, in_fresh_process, machine, mib, table

WINDOW = 300.0


@dataclass(frozen=True)
class SizeResult:
    size: int
    cap: int
    detect_requests: int
    requests: int
    server_requests: int
    items: int
    ids_ok: bool
    seconds: float
    baseline_kib: int
    peak_kib: int

    @property
    def expected(self) -> int:
        return max(1, math.ceil(self.size / self.cap))

    @property
    def match(self) -> bool:
        return self.requests == self.expected == self.server_requests and self.ids_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print("pagination benchmark: ClickMaintClient.iter_pages over a loopback socket")
    print(f"machine: {machine()}")
    print(
        f"rate limit raised to {UNTHROTTLED:,} requests / {WINDOW:.0f} s in the simulator and "
        "in the client budget: this measures paging, not throttling"
    )
    print(f"simulator per_page cap: {args.cap}; the client detects it (detect_capabilities)\n")
    results = [run_size(size, args.cap, args.workdir) for size in sizes]
    print(report(results))
    return verdict(results, args.tolerance)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated work order counts")
    parser.add_argument("--cap", type=int, default=100, help="simulator per_page cap")
    parser.add_argument(
        "--tolerance", type=float, default=0.10, help="allowed peak RSS growth, largest/smallest"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here (debugging)")
    return parser.parse_args(argv)


def run_size(size: int, cap: int, workdir: Path | None) -> SizeResult:
    """One size: a simulator process seeded with `size` work orders, a fresh client process."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        directory = (workdir or Path(tmp)) / f"pagination-{size}"
        options = SimOptions(
            directory=directory,
            work_orders=size,
            ots=0,
            variant={"rate_limit": UNTHROTTLED, "rate_window": WINDOW, "per_page_cap": cap},
        )
        with SimHost(options) as sims:
            ids = sims.call("work_order_ids")
            config = _support.write_bench_config(
                directory, "pagination", rate_limit=UNTHROTTLED, window=WINDOW
            )
            sims.call("reset_logs")
            measured = in_fresh_process(measure_client, config)
            server = sims.call("logs")["cm"]["by_route"]
    pages = server.get("GET /api/v1/work_orders", 0) - measured["detect_requests"]
    return SizeResult(
        size=size,
        cap=measured["cap"],
        detect_requests=measured["detect_requests"],
        requests=measured["requests"],
        server_requests=pages,
        items=measured["items"],
        ids_ok=measured["items"] == ids["count"] == size and measured["id_sum"] == ids["sum"],
        seconds=measured["seconds"],
        baseline_kib=measured["baseline_kib"],
        peak_kib=measured["peak_kib"],
    )


def measure_client(conn: Connection, config_path: Path) -> None:
    """The measured process: build syncd's real client, detect the cap, page everything."""
    import traceback

    try:
        conn.send((True, _page_everything(config_path)))
    except Exception:
        conn.send((False, traceback.format_exc()))


def _page_everything(config_path: Path) -> dict[str, Any]:
    from syncd.app import App

    _support.log_to_file(config_path.parent / "syncd.log")
    app = App(_support.load_bench_config(config_path))
    try:
        caps = app.cm.detect_capabilities()
        detect_requests = app.stats.count(server="clickmaint", method="GET")
        baseline = _support.peak_rss_kib()
        items = id_sum = 0
        started = time.perf_counter()
        for page in app.cm.iter_pages("/work_orders", per_page=caps.per_page_cap):
            for item in page.items:  # consumed one by one, nothing kept
                items += 1
                id_sum += int(item["id"])
        seconds = time.perf_counter() - started
        requests = app.stats.count(server="clickmaint", method="GET") - detect_requests
    finally:
        app.close()
    return {
        "cap": caps.per_page_cap,
        "detect_requests": detect_requests,
        "requests": requests,
        "items": items,
        "id_sum": id_sum,
        "seconds": seconds,
        "baseline_kib": baseline,
        "peak_kib": _support.peak_rss_kib(),
    }


def report(results: list[SizeResult]) -> str:
    rows = [
        [
            f"{r.size:,}",
            r.cap,
            r.requests,
            r.server_requests,
            r.expected,
            "yes" if r.match else "NO",
            f"{r.items:,}" + ("" if r.ids_ok else " (ids wrong!)"),
            f"{r.seconds:.2f} s",
            f"{r.size / r.seconds:,.0f}/s" if r.seconds else "-",
            mib(r.baseline_kib),
            mib(r.peak_kib),
            f"{(r.peak_kib - r.baseline_kib) / 1024:+.1f} MiB",
        ]
        for r in results
    ]
    headers = [
        "N",
        "cap",
        "requests (client)",
        "requests (server)",
        "ceil(N/cap)",
        "match",
        "items seen",
        "wall",
        "items/s",
        "RSS before paging",
        "peak RSS",
        "growth while paging",
    ]
    lines = [table(headers, rows)]
    detect = sorted({r.detect_requests for r in results})
    lines.append(f"\n(cap detection: {'/'.join(map(str, detect))} GETs per run, not counted above)")
    if len(results) >= 2:
        small, large = results[0], results[-1]
        lines.append(
            f"peak RSS ratio {large.size:,}/{small.size:,}: "
            f"{_support.ratio(large.peak_kib, small.peak_kib):.3f}"
        )
    return "\n".join(lines)


def verdict(results: list[SizeResult], tolerance: float) -> int:
    failures = [
        f"N={r.size}: {r.requests} client / {r.server_requests} server requests, "
        f"expected {r.expected}, ids {'ok' if r.ids_ok else 'WRONG'}"
        for r in results
        if not r.match
    ]
    if len(results) >= 2:
        growth = _support.ratio(results[-1].peak_kib, results[0].peak_kib)
        if abs(growth - 1) > tolerance:
            failures.append(f"peak RSS ratio {growth:.3f} is outside 1 ± {tolerance:.2f}")
    if failures:
        print("\nFAIL: " + "; ".join(failures))
        return 1
    print(f"\nPASS: requests == ceil(N/cap) for every size; peak RSS within ±{tolerance:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
