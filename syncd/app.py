"""Wiring: one place that turns a `Config` into clients, a ledger and stream runners.

Both the daemon (`service.py`) and the one-shot commands build on this, so the daemon and
`syncd sync --once` can never be wired differently.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlite_utils import Database

from .config import Config
from .engine.part_usage import PartUsageSync
from .engine.requests import RequestSync
from .engine.run import Runtime, StopRequested, Stream
from .engine.work_orders import WorkOrderSync
from .ledger.db import connect
from .ledger.store import Ledger
from .systems.budget import RateBudget
from .systems.clickmaint import ClickMaintClient
from .systems.http import HttpClient, RequestStats, RetryPolicy
from .systems.mantenimiento import DjangoSessionAuth, MantenimientoClient

#: the order of a `sync --once`: requests first, so a request approved in Click Maint has its
#: aviso before the work order made from it is copied (its OT is then made from the aviso),
#: and transactions last, once their work orders are linked
STREAMS: dict[str, type[Stream]] = {
    "requests": RequestSync,
    "work_orders": WorkOrderSync,
    "part_usage": PartUsageSync,
}


class App:
    def __init__(
        self,
        config: Config,
        *,
        transports: dict[str, httpx.BaseTransport] | None = None,
        retry: RetryPolicy | None = None,
        succeeds: App | None = None,
    ) -> None:
        """`succeeds`: the App this one replaces (a SIGHUP reload).  What describes the
        process rather than one config is handed over, not started afresh: the Click Maint
        rate budget (cycles still running on the old App and new ones spend one budget),
        the request counters, the OT read times and the per-thread cycle hooks."""
        self.config = config
        transports = transports or {}
        cm_cfg = config.clickmaint
        #: `_hooks`: per-thread hooks of the cycle running in that thread (see `_sleep`)
        if succeeds is not None:
            self._hooks = succeeds._hooks
            self.stats = succeeds.stats
            self.cm_budget = succeeds.cm_budget
            self.cm_budget.reconfigure(
                cm_cfg.rate_limit,
                cm_cfg.rate_window_seconds,
                reserve=cm_cfg.rate_reserve,
                ceiling=cm_cfg.rate_limit_ceiling,
            )
            self.mt_reads: dict[str, float] = succeeds.mt_reads
        else:
            self._hooks = threading.local()
            self.stats = RequestStats()
            self.cm_budget = RateBudget(
                "clickmaint",
                cm_cfg.rate_limit,
                cm_cfg.rate_window_seconds,
                reserve=cm_cfg.rate_reserve,
                ceiling=cm_cfg.rate_limit_ceiling,
            )
            self.mt_reads = {}
        self.cm_budget.on_wait = self._waiting
        api_key = config.clickmaint_api_key.get_secret_value() if config.clickmaint_api_key else ""
        self.cm_http = HttpClient(
            "clickmaint",
            cm_cfg.base_url,
            timeout=cm_cfg.timeout_seconds,
            budget=self.cm_budget,
            retry=retry,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "X-Entity-Id": str(cm_cfg.entity_id),
                "User-Agent": "syncd",
            },
            transport=transports.get("clickmaint"),
            stats=self.stats,
            sleep=self._sleep,
        )
        self.cm = ClickMaintClient(self.cm_http, cm_cfg.entity_id)
        mt_cfg = config.mantenimiento
        password = config.mantenimiento_password
        self.mt_auth = DjangoSessionAuth(
            mt_cfg.username, lambda: password.get_secret_value() if password else ""
        )
        self.mt_http = HttpClient(
            "mantenimiento",
            mt_cfg.base_url,
            timeout=mt_cfg.timeout_seconds,
            budget=None,
            retry=retry,
            auth=self.mt_auth,
            headers={"Accept": "application/json", "User-Agent": "syncd"},
            transport=transports.get("mantenimiento"),
            stats=self.stats,
            sleep=self._sleep,
            classify_5xx=MantenimientoClient.classify_5xx,
        )
        self.mt = MantenimientoClient(self.mt_http, self.mt_auth)

    def _sleep(self, seconds: float) -> None:
        """Retry back-off that a stop request interrupts and that counts as progress.

        Waiting out a server's bad minute is healthy: the watchdog must not take it for a hang,
        and SIGTERM must not wait for it to end.
        """
        stop: threading.Event | None = getattr(self._hooks, "stop", None)
        beat: Callable[[], None] | None = getattr(self._hooks, "beat", None)
        deadline = time.monotonic() + seconds
        while True:
            if beat is not None:
                beat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if stop is not None:
                if stop.wait(min(remaining, 1.0)):
                    raise StopRequested()
            else:
                time.sleep(min(remaining, 1.0))

    def _waiting(self) -> None:
        """Called while a request waits for the rate budget: the same rules as `_sleep`
        (progress for the watchdog; a stop request ends the wait)."""
        beat: Callable[[], None] | None = getattr(self._hooks, "beat", None)
        stop: threading.Event | None = getattr(self._hooks, "stop", None)
        if beat is not None:
            beat()
        if stop is not None and stop.is_set():
            raise StopRequested()

    # -- ledger -------------------------------------------------------------------------
    def open_ledger(self, *, readonly: bool = False) -> Ledger:
        return Ledger.open(self.config.ledger_path, readonly=readonly)

    def scratch_ledger(self) -> Ledger:
        """An in-memory copy of the ledger: what a dry run writes to (and throws away)."""
        memory = connect(":memory:")
        path = self.config.ledger_path
        if path.exists():
            source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                source.backup(memory.conn)
            finally:
                source.close()
        ledger = Ledger(memory, ":memory:")
        from .ledger.db import migrate

        migrate(Database(memory.conn), ":memory:")
        return ledger

    # -- runtime ----------------------------------------------------------------------------
    def runtime(
        self,
        ledger: Ledger,
        *,
        stop: threading.Event | None = None,
        heartbeat: Callable[[], None] | None = None,
        dry_run: bool = False,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> Runtime:
        rt = Runtime(
            config=self.config,
            ledger=ledger,
            cm=self.cm,
            mt=self.mt,
            stop=stop or threading.Event(),
            dry_run=dry_run,
            cm_request_count=lambda: self.stats.count(server="clickmaint"),
            set_deadline=self.cm.set_deadline,
            mt_reads=self.mt_reads,
        )
        if heartbeat is not None:
            rt.heartbeat = heartbeat
        self._hooks.stop = rt.stop
        self._hooks.beat = rt.heartbeat
        if progress is not None:
            rt.progress = progress
        return rt

    def stream(self, name: str, rt: Runtime) -> Stream:
        return STREAMS[name](rt)

    def enabled_streams(self) -> list[str]:
        return [name for name in STREAMS if getattr(self.config.streams, name).enabled]

    def close(self) -> None:
        self.cm_http.close()
        self.mt_http.close()

    def budget_snapshot(self) -> dict[str, Any]:
        snap = self.cm_budget.snapshot()
        return {
            "limit": snap.limit,
            "window_seconds": snap.window,
            "reserve": snap.reserve,
            "used_in_window": snap.used_in_window,
            "available": snap.available,
            "paused_for": round(snap.paused_for, 1),
            "server_remaining": snap.server_remaining,
        }
