"""Finding Click Maint work orders that changed since the watermark, without losing any.

Strategies, best first (which one applies is decided by capability detection):

* ``keyset`` — `filter[updated_at_gteq]=<cursor>&sort=updated_at asc`, always page 1, moving the
  cursor to the last `updated_at` seen.  No offsets, so records moving while we page cannot
  make us skip anything; records edited meanwhile get a newer `updated_at` and come later.  If a
  whole page shares one second, that second is read with offset pages (twice, until a pass
  finds nothing new).  Progress can be checkpointed after every page.
* ``desc`` — no usable filter: `sort=updated_at desc` from page 1 down to the first record
  older than the watermark.  Edits and inserts during paging only cause duplicates; a shrinking
  `total` (deletion) makes the pass unstable and the watermark does not move.
* ``filter`` — filter works, sort does not: offset pages inside `updated_at >= cursor` in the
  server's default order; the watermark moves only if `total` stayed the same throughout.
* ``full`` — neither: every page, every time (run on a slower schedule); same stability rule.

A complete, stable pass has seen every record stamped up to `server_now - lag` (the horizon),
so that is where the watermark goes (an idle cycle then costs one request); each scan starts at
`watermark - lookback`;
duplicates are expected and removed by the caller comparing `(id, updated_at)` with the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..systems.clickmaint import Capabilities, Page
from .mapping import iso_z, parse_iso

EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Query:
    page: int
    per_page: int
    sort: str | None
    filters: Sequence[tuple[str, Any]]


Fetch = Callable[[Query], Page]


@dataclass
class Batch:
    items: list[dict[str, Any]]
    #: a watermark that is safe to store once this batch's items are committed (or None)
    checkpoint: str | None = None


@dataclass
class ScanReport:
    strategy: str = ""
    pages: int = 0
    items: int = 0
    complete: bool = False
    stable: bool = True
    final_watermark: str | None = None
    notes: list[str] = field(default_factory=list)


def choose_strategy(caps: Capabilities) -> str:
    if caps.updated_at_filter and caps.updated_at_sort:
        return "keyset"
    if caps.updated_at_sort:
        return "desc"
    if caps.updated_at_filter:
        return "filter"
    if caps.updated_at_filter is None and caps.updated_at_sort is None:
        return "desc"  # unknown (empty account): desc is correct either way, just not cheap
    return "full"


def _ts(item: dict[str, Any]) -> str:
    value = item.get("updated_at")
    try:
        return iso_z(parse_iso(value, "updated_at")) or EPOCH
    except Exception:
        return EPOCH  # unreadable: the record itself is quarantined by the mapping


def _minus(ts: str, seconds: int) -> str:
    moment = parse_iso(ts, "watermark")
    assert moment is not None
    return iso_z(moment - timedelta(seconds=seconds)) or EPOCH


def _plus_second(ts: str) -> str:
    moment = parse_iso(ts, "cursor")
    assert moment is not None
    return iso_z(moment + timedelta(seconds=1)) or EPOCH


class WorkOrderScan:
    """One pass over changed records; iterate it for batches, then read `report`."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        strategy: str,
        watermark: str | None,
        per_page: int,
        lookback_seconds: int,
        horizon: datetime | Callable[[], datetime],
    ) -> None:
        self.fetch = fetch
        self.strategy = strategy
        self.per_page = per_page
        self.start = _minus(watermark, lookback_seconds) if watermark else None
        self._horizon_of = horizon if callable(horizon) else (lambda: horizon)
        self._horizon: str | None = None if callable(horizon) else iso_z(horizon) or EPOCH
        self.report = ScanReport(strategy=strategy)
        self._tie_ok = True

    @property
    def horizon(self) -> str:
        """server_now - lag, fixed at the first answer of the scan: a fresh process learns
        the server's clock from that answer's `Date` header, and a horizon taken from the
        local clock before it could lie in the server's future and skip changes for good."""
        if self._horizon is None:
            self._horizon = iso_z(self._horizon_of()) or EPOCH
        return self._horizon

    def _over_budget(self, prev_total_pages: int, page_no: int) -> bool:
        """Offset scans chase a list that can grow while we read it; stop at twice its size."""
        if page_no > 2 * prev_total_pages + 5:
            self.report.stable = False
            self.report.notes.append("listing kept growing during the scan; stopped early")
            return True
        return False

    def _get(self, query: Query) -> Page:
        if self._horizon is not None:
            page = self.fetch(query)
        else:
            sent = time.monotonic()
            page = self.fetch(query)
            # the server's clock is known now; the horizon is its time when the page was asked
            elapsed = timedelta(seconds=time.monotonic() - sent)
            self._horizon = iso_z(self._horizon_of() - elapsed) or EPOCH
        self.report.pages += 1
        self.report.items += len(page.items)
        return page

    def _cap(self, ts: str) -> str:
        return min(ts, self.horizon)

    def __iter__(self) -> Iterator[Batch]:
        if self.strategy == "keyset":
            yield from self._keyset()
        elif self.strategy == "desc":
            yield from self._desc()
        else:
            yield from self._offset(with_filter=self.strategy == "filter")

    # -- keyset ---------------------------------------------------------------------------
    def _keyset(self) -> Iterator[Batch]:
        cursor = self.start or EPOCH
        while True:
            page = self._get(
                Query(1, self.per_page, "updated_at asc", [("updated_at_gteq", cursor)])
            )
            stamps = [_ts(i) for i in page.items]
            if stamps != sorted(stamps) or (stamps and stamps[0] < cursor):
                self.report.stable = False
                self.report.notes.append("server ignored sort/filter mid-scan")
                yield Batch(page.items)
                return
            short = len(page.items) < self.per_page or page.total <= len(page.items)
            if short or (stamps and stamps[0] > self.horizon):
                # done: or only records newer than the horizon are left, and those are read
                # next cycle (this also bounds a scan while the server keeps changing)
                self.report.complete = True
                self.report.final_watermark = self.horizon
                yield Batch(page.items, checkpoint=self.report.final_watermark)
                return
            last = stamps[-1]
            if last == cursor:
                # a full page inside one second: read that second with offsets, then move on
                yield Batch(page.items)
                yield from self._tie(cursor)
                if not self._tie_ok:
                    self.report.stable = False  # keep the watermark before this second
                    return
                cursor = _plus_second(cursor)
                yield Batch([], checkpoint=self._cap(cursor))
                continue
            cursor = last
            yield Batch(page.items, checkpoint=self._cap(cursor))

    def _tie(self, second: str) -> Iterator[Batch]:
        """Read every record stamped `second` with offset pages, until a pass is clean.

        Nothing new can enter a second that is behind the horizon; records can only leave it
        (an edit gives them a newer stamp), which shifts the offsets and lowers `total`.  A pass
        during which `total` did not move is therefore complete; otherwise read again (already
        seen ids are skipped).  `self._tie_ok` is False if no pass was ever clean.
        """
        seen: set[Any] = set()
        self._tie_ok = False
        for _ in range(20):
            added = 0
            totals: set[int] = set()
            page_no = 1
            while True:
                page = self._get(
                    Query(
                        page_no,
                        self.per_page,
                        "id asc",
                        [("updated_at_gteq", second), ("updated_at_lteq", second)],
                    )
                )
                totals.add(page.total)
                fresh = [i for i in page.items if i.get("id") not in seen]
                seen.update(i.get("id") for i in page.items)
                added += len(fresh)
                if fresh:
                    yield Batch(fresh)
                if not page.items or page_no >= page.total_pages:
                    break
                page_no += 1
            if len(totals) == 1:
                # nobody left the second while we read it, so no offset shifted: complete
                self._tie_ok = True
                break
        self.report.notes.append(f"{len(seen)} records share updated_at {second}")

    # -- desc -----------------------------------------------------------------------------
    def _desc(self) -> Iterator[Batch]:
        page_no = 1
        prev_total: int | None = None
        first_pages = 1
        while True:
            page = self._get(Query(page_no, self.per_page, "updated_at desc", []))
            if prev_total is None:
                prev_total = page.total
                first_pages = page.total_pages
            elif page.total < prev_total:
                self.report.stable = False  # a deletion may have shifted records upwards
            prev_total = page.total  # compare each page with the one before it
            stamps = [_ts(i) for i in page.items]
            if stamps != sorted(stamps, reverse=True):
                self.report.stable = False
                self.report.notes.append("server ignored sort=updated_at desc")
            keep = [
                i
                for i, s in zip(page.items, stamps, strict=True)
                if not self.start or s >= self.start
            ]
            reached_old = self.start is not None and any(s < self.start for s in stamps)
            last_page = not page.items or page_no >= page.total_pages
            if reached_old or last_page:
                self.report.complete = True
                if self.report.stable:
                    self.report.final_watermark = self.horizon
                yield Batch(keep, checkpoint=self.report.final_watermark)
                return
            yield Batch(keep)
            page_no += 1
            if self._over_budget(first_pages, page_no):
                return

    # -- offset (filter only / full) --------------------------------------------------------
    def _offset(self, *, with_filter: bool) -> Iterator[Batch]:
        page_no = 1
        prev_total: int | None = None
        first_pages = 1
        filters = [("updated_at_gteq", self.start)] if (with_filter and self.start) else []
        while True:
            page = self._get(Query(page_no, self.per_page, None, filters))
            if prev_total is None:
                prev_total = page.total
                first_pages = page.total_pages
            elif page.total != prev_total:
                self.report.stable = False
            prev_total = page.total
            stamps = [_ts(i) for i in page.items]
            keep = [
                i
                for i, s in zip(page.items, stamps, strict=True)
                if not self.start or s >= self.start
            ]
            if not page.items or page_no >= page.total_pages:
                self.report.complete = True
                if self.report.stable:
                    self.report.final_watermark = self.horizon
                yield Batch(keep, checkpoint=self.report.final_watermark)
                return
            yield Batch(keep)
            page_no += 1
            if self._over_budget(first_pages, page_no):
                return
