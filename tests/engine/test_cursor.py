"""Cursor safety, property-based: whatever happens between page fetches (edits, inserts,
deletes, many records sharing one second), repeated scans never lose the latest version of a
record, for every strategy the capability detection can choose."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.engine.cursor import Query, WorkOrderScan, choose_strategy
from syncd.engine.mapping import iso_z
from syncd.systems.clickmaint import Capabilities, Page

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(second: int) -> str:
    return iso_z(T0 + timedelta(seconds=second)) or ""


class ModelServer:
    """Offset-paged listing with Click Maint's semantics and a knob for each capability."""

    def __init__(self, rng: random.Random, *, honours_filter: bool, honours_sort: bool) -> None:
        self.rng = rng
        self.honours_filter = honours_filter
        self.honours_sort = honours_sort
        self.now = 100
        self.records: dict[int, int] = {}  # id -> updated_at second
        self.created: dict[int, int] = {}
        self.next_id = 1
        self.mutate_rate = 0.0
        self.max_burst = 3

    def insert(self) -> None:
        self.records[self.next_id] = self.now
        self.created[self.next_id] = self.now
        self.next_id += 1

    def mutate(self) -> None:
        for _ in range(self.rng.randint(1, self.max_burst)):
            roll = self.rng.random()
            if roll < 0.6 and self.records:
                self.records[self.rng.choice(list(self.records))] = self.now
            elif roll < 0.9:
                self.insert()
            elif self.records:
                victim = self.rng.choice(list(self.records))
                del self.records[victim]

    def list(self, query: Query) -> Page:
        if self.mutate_rate and self.rng.random() < self.mutate_rate:
            self.mutate()
        self.now += self.rng.choice([0, 0, 1])
        rows = list(self.records.items())
        if self.honours_filter:
            for key, value in query.filters:
                second = int(
                    (datetime.fromisoformat(value.replace("Z", "+00:00")) - T0).total_seconds()
                )
                if key == "updated_at_gteq":
                    rows = [r for r in rows if r[1] >= second]
                elif key == "updated_at_lteq":
                    rows = [r for r in rows if r[1] <= second]
        if query.sort and query.sort.startswith("updated_at") and self.honours_sort:
            rows.sort(key=lambda r: (r[1], r[0]), reverse=query.sort.endswith("desc"))
        elif query.sort == "id asc":
            rows.sort(key=lambda r: r[0])
        else:  # the default: created_at desc
            rows.sort(key=lambda r: (self.created[r[0]], r[0]), reverse=True)
        total = len(rows)
        start = (query.page - 1) * query.per_page
        chunk = rows[start : start + query.per_page]
        items = [{"id": rid, "updated_at": stamp(sec)} for rid, sec in chunk]
        return Page(
            items, query.page, query.per_page, total, max(1, math.ceil(total / query.per_page)), {}
        )


def run_scan(
    server: ModelServer, strategy: str, watermark: str | None, seen: dict[int, str], per_page: int
) -> str | None:
    scan = WorkOrderScan(
        server.list,
        strategy=strategy,
        watermark=watermark,
        per_page=per_page,
        lookback_seconds=3,
        horizon=T0 + timedelta(seconds=server.now - 2),
    )
    for batch in scan:
        for item in batch.items:
            previous = seen.get(item["id"])
            if previous is None or item["updated_at"] > previous:
                seen[item["id"]] = item["updated_at"]
        if batch.checkpoint:
            watermark = batch.checkpoint
    return watermark


CAPS = {
    "keyset": Capabilities(updated_at_filter=True, updated_at_sort=True),
    "desc": Capabilities(updated_at_filter=False, updated_at_sort=True),
    "filter": Capabilities(updated_at_filter=True, updated_at_sort=False),
    "full": Capabilities(updated_at_filter=False, updated_at_sort=False),
}


@pytest.mark.parametrize("strategy", list(CAPS))
@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    initial=st.integers(min_value=0, max_value=120),
    per_page=st.sampled_from([3, 7, 25]),
    mutate_rate=st.sampled_from([0.0, 0.3, 0.8]),
    cycles=st.integers(min_value=1, max_value=6),
    tie_burst=st.booleans(),
)
def test_no_record_version_is_lost(
    strategy, seed, initial, per_page, mutate_rate, cycles, tie_burst
) -> None:
    rng = random.Random(seed)
    caps = CAPS[strategy]
    assert choose_strategy(caps) == strategy
    server = ModelServer(
        rng, honours_filter=caps.updated_at_filter, honours_sort=caps.updated_at_sort
    )
    for _ in range(initial):
        server.insert()
        if not tie_burst:
            server.now += rng.choice([0, 1])
    seen: dict[int, str] = {}
    watermark: str | None = None
    server.mutate_rate = mutate_rate
    for _ in range(cycles):
        watermark = run_scan(server, strategy, watermark, seen, per_page)
        server.now += rng.randint(0, 5)
    # faults stop; time passes beyond the lag; two quiet cycles must catch up completely
    server.mutate_rate = 0.0
    server.now += 10
    for _ in range(2):
        watermark = run_scan(server, strategy, watermark, seen, per_page)
    for rid, second in server.records.items():
        assert seen.get(rid) == stamp(second), f"record {rid} @ {stamp(second)} missed"


def test_ties_larger_than_a_page_are_read_completely() -> None:
    """250 records in one second with pages of 100: the keyset cursor cannot move past the
    second by `updated_at` alone; the tie is read with offset pages."""
    server = ModelServer(random.Random(1), honours_filter=True, honours_sort=True)
    for _ in range(250):
        server.insert()
    server.now += 10
    seen: dict[int, str] = {}
    scan = WorkOrderScan(
        server.list,
        strategy="keyset",
        watermark=None,
        per_page=100,
        lookback_seconds=0,
        horizon=T0 + timedelta(seconds=server.now),
    )
    for batch in scan:
        for item in batch.items:
            seen[item["id"]] = item["updated_at"]
    assert len(seen) == 250
    assert scan.report.complete


def test_desc_scan_stops_at_the_watermark() -> None:
    server = ModelServer(random.Random(2), honours_filter=False, honours_sort=True)
    for _ in range(500):
        server.insert()
        server.now += 1
    watermark = stamp(server.now - 20)
    scan = WorkOrderScan(
        server.list,
        strategy="desc",
        watermark=watermark,
        per_page=10,
        lookback_seconds=0,
        horizon=T0 + timedelta(seconds=server.now),
    )
    items = [i for batch in scan for i in batch.items]
    assert scan.report.pages <= 4  # ~20 recent records, not 50 pages of history
    assert all(i["updated_at"] >= watermark for i in items)


def test_watermark_never_passes_the_lag_horizon() -> None:
    server = ModelServer(random.Random(3), honours_filter=True, honours_sort=True)
    for _ in range(5):
        server.insert()
    horizon = T0 + timedelta(seconds=server.now - 30)
    scan = WorkOrderScan(
        server.list,
        strategy="keyset",
        watermark=None,
        per_page=10,
        lookback_seconds=0,
        horizon=horizon,
    )
    list(scan)
    assert scan.report.final_watermark == iso_z(horizon)
