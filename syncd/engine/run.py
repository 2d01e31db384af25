"""Driving one stream once: the run record, cooperative stop, error policy, dry-run plumbing.

A stream class implements `cycle_body(run)`; `run_stream` wraps it with what every stream
needs: a run row in the ledger, a log context (stream + run id on every line), translation of
exceptions into a run status, and the rule that a stop request ends the cycle between records,
after the current record is committed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from ..config import Config
from ..faultpoints import crashpoint
from ..ledger.models import OPERATOR_HOLD, Intent
from ..ledger.store import Ledger
from ..systems.clickmaint import Capabilities, Page
from ..systems.errors import (
    AuthFailed,
    BadResponse,
    BudgetExhausted,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    Rejected,
    RemoteError,
    ServerError,
    Unavailable,
)
from .cursor import Query, WorkOrderScan, choose_strategy
from .mapping import MappingError, parse_iso
from .ports import ClickMaintPort, MantenimientoPort

log = structlog.get_logger("syncd.engine")
T = TypeVar("T")

#: what to do about server answers an operator can fix
_HINTS = {
    "orden finalizada": "the sync user must be a manager (superuser or group 'Gerentes') to "
    "edit REALIZADA OTs",
    "Title can't be blank": "Click Maint requires a title",
}


def reason_of(exc: Exception) -> str:
    """A quarantine reason: the error, shortened, plus a hint when the fix is known."""
    text = str(exc)
    if len(text) > 300:
        text = text[:297] + "..."
    for needle, hint in _HINTS.items():
        if needle in text:
            text = f"{text} (hint: {hint})"
    return text


#: how long an unknown `sort=updated_at` answer is kept before the probe is repeated
UNKNOWN_SORT_RECHECK = timedelta(minutes=10)


def capabilities_key(path: str) -> str:
    return "cm_capabilities" if path == "/work_orders" else f"cm_capabilities:{path}"


class StopRequested(Exception):
    """Raised between records when the daemon is asked to stop."""


class MappingChanged(Exception):
    """The mapping fingerprint differs from the ledger's: an explicit re-baseline is required."""


@dataclass
class Planned:
    """One remote write a dry run would have made."""

    action: str
    target: str
    record: str
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = " ".join(f"{k}={v!r}" for k, v in self.detail.items())
        return f"{self.action:<14} {self.target:<13} {self.record:<10} {extra}".rstrip()


@dataclass
class CycleReport:
    stream: str
    run_id: str
    kind: str
    status: str = "ok"  # ok | partial | failed | stopped
    counts: Counter[str] = field(default_factory=Counter)
    planned: list[Planned] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    cm_requests: int = 0
    #: for a `partial` cycle: seconds until the rate budget can serve the next request
    budget_wait: float = 0.0

    @property
    def writes(self) -> int:
        return sum(
            v
            for k, v in self.counts.items()
            if k.startswith(("created_", "updated_", "cancelled_", "mirrored"))
        )

    def summary(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "counts": dict(self.counts),
            "error": self.error,
            "seconds": round(time.monotonic() - self.started, 2),
            "cm_requests": self.cm_requests,
            "notes": self.notes[:20],
        }


@dataclass
class Runtime:
    """Everything a stream needs for one cycle."""

    config: Config
    ledger: Ledger
    cm: ClickMaintPort
    mt: MantenimientoPort
    stop: threading.Event = field(default_factory=threading.Event)
    heartbeat: Callable[[], None] = lambda: None
    dry_run: bool = False
    #: number of Click Maint requests sent so far by this process (for per-cycle caps)
    cm_request_count: Callable[[], int] = lambda: 0
    #: lets the clients give up waiting for budget at this monotonic time (partial progress)
    set_deadline: Callable[[float | None], None] = lambda _deadline: None
    progress: Callable[[str, int, int | None], None] = lambda _what, _done, _total: None
    #: wall-clock time of the last read of each OT, kept by the App across cycles (for the
    #: `newest` policy, which needs to bound when a change on mantenimiento happened)
    mt_reads: dict[str, float] = field(default_factory=dict)

    def check_stop(self) -> None:
        self.heartbeat()
        if self.stop.is_set():
            raise StopRequested()


#: failures that concern the whole server, not one record: they end the cycle
FATAL_REMOTE = (AuthFailed, PermissionDenied, Unavailable)
#: failures that concern one record (or one answer about it): set it aside, go on.  A 429
#: that outlasted the retries is one of them: the record waits for its retry, the cycle goes
#: on (a storm of them ends the cycle through the streams' failures-in-a-row guard)
RECORD_ERRORS = (MappingError, Rejected, BadResponse, ServerError, RateLimited)


class Stream:
    name = "stream"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ledger = rt.ledger
        self.cm = rt.cm
        self.mt = rt.mt
        self.config = rt.config
        self.report: CycleReport | None = None
        self.log = log.bind(stream=self.name)

    # to be implemented by streams
    def cycle_body(self, report: CycleReport, **options: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def settings(self) -> Any:
        return getattr(self.config.streams, self.name)

    def run(self, kind: str = "cycle", **options: Any) -> CycleReport:
        run_id = self.ledger.start_run(self.name, kind)
        report = CycleReport(stream=self.name, run_id=run_id, kind=kind)
        self.report = report
        self.log = log.bind(stream=self.name, run_id=run_id)
        cm_before = self.rt.cm_request_count()
        interval = float(self.settings.interval_seconds)
        deadline = None if kind != "cycle" else time.monotonic() + max(60.0, interval)
        self.rt.set_deadline(deadline)
        with structlog.contextvars.bound_contextvars(stream=self.name, run_id=run_id):
            self.log.info("cycle.start", kind=kind, dry_run=self.rt.dry_run)
            try:
                self.cycle_body(report, **options)
            except StopRequested:
                report.status = "stopped"
                report.notes.append("stopped on request after committing the current record")
            except BudgetExhausted as exc:
                report.status = "partial"
                report.budget_wait = max(0.0, float(exc.wait))
                report.notes.append(str(exc))
                self.log.warning("cycle.budget_exhausted", wait=round(exc.wait, 1))
            except MappingChanged as exc:
                report.status = "failed"
                report.error = str(exc)
                self.log.error("cycle.mapping_changed", error=str(exc))
            except RemoteError as exc:
                report.status = "failed"
                report.error = str(exc)
                self.log.error("cycle.remote_error", error=str(exc), kind=type(exc).__name__)
            except Exception as exc:
                report.status = "failed"
                report.error = f"{type(exc).__name__}: {exc}"
                self.log.exception("cycle.crashed")
            except BaseException:
                report.status = "interrupted"  # Ctrl-C: recorded, then re-raised
                raise
            finally:
                self.rt.set_deadline(None)
                report.cm_requests = self.rt.cm_request_count() - cm_before
                if not self.rt.dry_run or kind != "dry-run":
                    self.ledger.finish_run(run_id, report.status, report.summary(), report.error)
                self.log.info(
                    "cycle.end",
                    status=report.status,
                    counts=dict(report.counts),
                    cm_requests=report.cm_requests,
                    seconds=round(time.monotonic() - report.started, 2),
                )
        return report

    # -- helpers shared by streams ------------------------------------------------------------
    def resume_outbox(self, resume: Callable[[Intent], None]) -> None:
        """Look for the result of every create that may have happened.

        A look that fails (a server error after the retries, a garbled answer) leaves the
        intent for the next cycle instead of failing this one: under a flaky server every
        cycle starts here, and a cycle that always fails here never gets further.
        """
        assert self.report is not None
        for intent in self.ledger.live_intents(self.name):
            self.rt.check_stop()
            try:
                resume(intent)
            except FATAL_REMOTE:
                raise
            except RECORD_ERRORS as exc:
                self.report.counts["outbox_later"] += 1
                self.log.warning("outbox.resume_later", token=intent.token, error=str(exc))

    def cm_now(self) -> datetime:
        """Click Maint's clock (learnt from `Date` headers), only ever compared with its own
        stamps."""
        server_time = getattr(self.cm, "server_time", None)
        moment = server_time() if callable(server_time) else None
        return moment if isinstance(moment, datetime) else datetime.now(UTC)

    def clickmaint_scan(
        self,
        path: str,
        watermark: str | None,
        *,
        caps: Capabilities | None = None,
        lookback: int | None = None,
        before_fetch: Callable[[], None] = lambda: None,
    ) -> WorkOrderScan:
        """A change scan of one Click Maint listing with the configured page size and lag."""
        caps = caps or self.cm_capabilities(path)
        cfg = self.config.clickmaint

        def fetch(query: Query) -> Page:
            before_fetch()
            return self.cm.list_page(
                path,
                page=query.page,
                per_page=query.per_page,
                sort=query.sort,
                filters=query.filters,
            )

        return WorkOrderScan(
            fetch,
            strategy=choose_strategy(caps),
            watermark=watermark,
            per_page=max(1, min(cfg.per_page, caps.per_page_cap)),
            lookback_seconds=cfg.lookback_seconds if lookback is None else lookback,
            horizon=lambda: self.cm_now() - timedelta(seconds=cfg.lag_seconds),
        )

    def find_in_clickmaint(
        self, path: str, token: str, *, text_field: str = "description"
    ) -> dict[str, Any] | None:
        """The record whose text carries an outbox token: filtered search, verified locally
        (an unsupported filter returns everything), else the newest five pages."""
        page = self.cm.list_page(path, per_page=50, filters=[(f"{text_field}_cont", token)])
        for item in page.items:
            if token in str(item.get(text_field) or ""):
                return item
        if page.total <= len(page.items):
            return None
        for current in self.cm.iter_pages(path, per_page=100, sort="created_at desc"):
            for item in current.items:
                if token in str(item.get(text_field) or ""):
                    return item
            if current.page >= 5:
                break
        return None

    def open_intent(
        self,
        intent: Intent | None,
        resume: Callable[[Intent], None],
        *,
        source_side: str,
        source_id: str,
        payload: dict[str, Any],
        op: str = "create",
        high_water: str | None = None,
    ) -> Intent | None:
        """The outbox row a create is about to use, or None when there is nothing to send.

        A retry brings its own intent.  Otherwise the create is journalled first; if a live
        intent for the same source already exists, an earlier attempt may have landed, so it
        is resumed (looked for by its marker) instead of being sent a second time.
        """
        if intent is not None:
            return intent
        intent = self.ledger.add_intent(
            stream=self.name,
            op=op,
            source_side=source_side,
            source_id=source_id,
            target_side="mt" if source_side == "cm" else "cm",
            payload=payload,
            high_water=high_water,
        )
        if intent.state != "pending":
            resume(intent)
            return None
        return intent

    def send_create(
        self,
        intent: Intent,
        send: Callable[[], T],
        *,
        side: str,
        record_id: str,
        target: str,
    ) -> T | None:
        """The one place a create leaves the process.

        The intent is marked `sent` before the request: from then on, a crash or an answer
        that never came means "look for the marker before sending again".  A refused create
        quarantines the source record with the server's reason.
        """
        assert self.report is not None
        crashpoint("create.intent")
        self.ledger.mark_intent(intent.token, "sent", count_attempt=True)
        crashpoint("create.sent")
        try:
            return send()
        except OutcomeUnknown as exc:
            self.ledger.mark_intent(intent.token, "unknown", error=str(exc))
            self.report.counts["outcome_unknown"] += 1
            self.log.warning(
                "create.outcome_unknown", side=side, record=record_id, outbox=intent.token
            )
        except Rejected as exc:
            self.ledger.mark_intent(intent.token, "failed", error=str(exc))
            self.quarantine(side, record_id, f"{target} refused the create: {reason_of(exc)}")
        return None

    def cm_capabilities(self, path: str = "/work_orders") -> Capabilities:
        """What the Click Maint listing at `path` honours; probed at most once per TTL."""
        key = capabilities_key(path)
        cached = self.ledger.get_meta(key)
        ttl = timedelta(hours=self.config.clickmaint.capability_ttl_hours)
        if cached:
            caps = Capabilities.from_dict(cached)
            detected = parse_iso(caps.detected_at, "detected_at") if caps.detected_at else None
            age = datetime.now(UTC) - detected if detected is not None else None
            if age is not None and age < ttl and caps.updated_at_filter is not None:
                if caps.updated_at_sort is not None:
                    return caps
                # every record stamped in one second: the sort answer is asked again soon,
                # not after the whole TTL (an unknown filter answer, an empty account, costs
                # one request and is asked every cycle)
                if age < UNKNOWN_SORT_RECHECK:
                    return caps
        caps = self.cm.detect_capabilities(path)
        self.log.info("clickmaint.capabilities", path=path, **caps.to_dict())
        if not self.rt.dry_run:
            self.ledger.set_meta(key, caps.to_dict())
        return caps

    def history(self, action: str, *, cm_id: Any = None, mt_id: Any = None, **detail: Any) -> None:
        assert self.report is not None
        self.ledger.record(
            self.name,
            action,
            cm_id=None if cm_id is None else str(cm_id),
            mt_id=None if mt_id is None else str(mt_id),
            run_id=self.report.run_id,
            **detail,
        )

    def plan(self, action: str, target: str, record: Any, **detail: Any) -> None:
        assert self.report is not None
        self.report.planned.append(Planned(action, target, str(record), detail))

    def quarantine(
        self, side: str, record_id: Any, reason: str, detail: str = "", *, hold: bool = False
    ) -> None:
        """Set a record aside; `hold`: no automatic retry, an operator decides."""
        assert self.report is not None
        if hold:
            item = self.ledger.hold(self.name, side, str(record_id), reason)
        else:
            item = self.ledger.quarantine(self.name, side, str(record_id), reason, detail)
        self.report.counts["quarantined"] += 1
        self.history(
            "quarantined",
            **self.history_keys(side, record_id),
            reason=reason,
            attempts=item.attempts,
        )
        self.log.warning("record.quarantined", side=side, record=str(record_id), reason=reason)

    def on_hold(self, side: str, record_id: Any) -> bool:
        held = self.ledger.get_quarantined(self.name, side, str(record_id))
        return held is not None and held.next_retry_at == OPERATOR_HOLD

    def release(self, side: str, record_id: Any) -> None:
        held = self.ledger.get_quarantined(self.name, side, str(record_id))
        if held is None:
            return  # the common case: a read, not a write transaction per record
        if held.next_retry_at == OPERATOR_HOLD:
            return  # only `syncd quarantine retry` lets it go
        if self.ledger.release(self.name, side, str(record_id)):
            self.history("released", **self.history_keys(side, record_id))

    def history_keys(self, side: str, record_id: Any) -> dict[str, Any]:
        """How a quarantined record is named in the history: a work order / OT id by default
        (streams whose records are something else, e.g. transactions, say so)."""
        return {"cm_id" if side == "cm" else "mt_id": record_id}
