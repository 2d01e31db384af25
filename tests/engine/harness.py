"""A whole syncd (real App, real ledger file) wired to both simulators in-process.

Requests go through httpx's WSGI transport into the same simulator objects that serve the
sockets in the end-to-end tests, so every byte of the HTTP contract is exercised; only the
socket is skipped.  `FlakyTransport` injects failures that a WSGI app cannot produce (a read
timeout after the request was applied).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from syncd.app import App
from syncd.config import Config, load_config
from syncd.engine.mapping import WorkOrderMapping
from syncd.engine.records import WORK_ORDER_FIELDS
from syncd.engine.run import CycleReport
from syncd.ledger.store import Ledger
from syncd.sandbox.clickmaint_sim import ClickMaintSim, ClickMaintVariant
from syncd.sandbox.launch import CM_API_KEY, MT_PASSWORD, config_text
from syncd.sandbox.mantenimiento_sim import MantenimientoSim
from syncd.sandbox.seed_mantenimiento import seed_mantenimiento
from syncd.systems.http import RetryPolicy

FAST = RetryPolicy(attempts=4, backoff_initial=0.001, backoff_max=0.01, jitter=0.0)
#: fields that both servers can write after creation: these must agree after a quiet round
BOTH_WAYS = [f.name for f in WORK_ORDER_FIELDS if f.cm_writable and f.mt_writable]


class FlakyTransport(httpx.BaseTransport):
    """Wraps a transport; `fail(request)` returning an exception raises it *after* the call."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.after: Callable[[httpx.Request], Exception | None] = lambda _r: None
        self.before: Callable[[httpx.Request], Exception | None] = lambda _r: None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        early = self.before(request)
        if early is not None:
            raise early
        response = self.inner.handle_request(request)
        late = self.after(request)
        if late is not None:
            response.read()
            raise late
        return response


Payload = dict[str, Any]


class Rewrite(httpx.BaseTransport):
    """Passes requests through and lets a test rewrite one kind of answer."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.json: Callable[[httpx.Request, Payload], Payload] | None = None
        self.raw: Callable[[httpx.Request, httpx.Response], httpx.Response | None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        if self.raw is not None:
            replaced = self.raw(request, response)
            if replaced is not None:
                return replaced
        if self.json is not None and "json" in response.headers.get("content-type", ""):
            try:
                payload = json.loads(response.content)
            except ValueError:
                return response
            payload = self.json(request, payload)
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return httpx.Response(response.status_code, headers=headers, json=payload)
        return response


@dataclass
class Harness:
    tmp: Path
    cm: ClickMaintSim
    mt: MantenimientoSim
    extra_config: str = ""
    config: Config = field(init=False)
    app: App = field(init=False)
    cm_transport: FlakyTransport = field(init=False)
    mt_transport: FlakyTransport = field(init=False)

    def __post_init__(self) -> None:
        creds = self.tmp / "credentials"
        creds.mkdir(parents=True, exist_ok=True)
        (creds / "clickmaint-api-key").write_text(CM_API_KEY)
        (creds / "mantenimiento-password").write_text(MT_PASSWORD)
        self.config_path = self.tmp / "config.toml"
        self.write_config(self.extra_config)

    def write_config(self, extra: str = "") -> None:
        text = config_text("http://cm.test/api/v1", "http://mt.test", self.tmp / "state", extra)
        self.config_path.write_text(text)
        self._reload()

    def rewrite_config(self, transform: Callable[[str], str]) -> None:
        """Edit the current config text (as an operator would) and reload."""
        self.config_path.write_text(transform(self.config_path.read_text()))
        self._reload()

    def _reload(self) -> None:
        env = dict(os.environ)
        env["CREDENTIALS_DIRECTORY"] = str(self.tmp / "credentials")
        self.config = load_config(self.config_path, env=env)
        self.cm_transport = FlakyTransport(httpx.WSGITransport(app=self.cm))
        self.mt_transport = FlakyTransport(httpx.WSGITransport(app=self.mt))
        self.app = App(
            self.config,
            transports={"clickmaint": self.cm_transport, "mantenimiento": self.mt_transport},
            retry=FAST,
        )
        self.mapping = WorkOrderMapping(self.config)

    # -- running ------------------------------------------------------------------------
    def sync(
        self,
        *,
        kind: str = "once",
        dry_run: bool = False,
        stream: str = "work_orders",
        **options: Any,
    ) -> CycleReport:
        ledger = self.app.scratch_ledger() if dry_run else self.app.open_ledger()
        try:
            rt = self.app.runtime(ledger, dry_run=dry_run)
            return self.app.stream(stream, rt).run(kind="dry-run" if dry_run else kind, **options)
        finally:
            ledger.close()

    def quiet_sync(self, rounds: int = 4) -> CycleReport:
        """Sync until a round writes nothing (a change can need two rounds: there and back)."""
        report = self.sync()
        for _ in range(rounds):
            if report.status not in ("ok", "partial"):
                raise AssertionError(f"sync failed: {report.error}")
            if not report.writes:
                return report
            report = self.sync()
        raise AssertionError(f"no quiet round after {rounds}: {report.summary()}")

    def ledger(self) -> Ledger:
        return Ledger.open(self.config.ledger_path)

    # -- observing both servers ---------------------------------------------------------
    def writes(self) -> dict[str, int]:
        """Mutating requests each simulator has answered so far (control routes excluded)."""
        out = {}
        for name, sim in (("cm", self.cm), ("mt", self.mt)):
            out[name] = sum(
                n
                for route, n in sim.log.by_route.items()
                if not route.startswith("GET") and "/admin/login" not in route
            )
        return out

    def pairs(self) -> list[tuple[str, str]]:
        ledger = self.ledger()
        try:
            return [(link.cm_id, link.mt_id) for link in ledger.iter_links("work_orders")]
        finally:
            ledger.close()

    def disagreements(self, fields: list[str] = BOTH_WAYS) -> list[str]:
        """Field-by-field comparison of every linked pair, read from the servers themselves."""
        problems = []
        for cm_id, mt_id in self.pairs():
            wo = self.cm.work_orders.get(int(cm_id))
            ot = self.mt.ots.get(int(mt_id))
            if wo is None or ot is None:
                continue
            cm = self.mapping.from_cm(self.cm.render_work_order(wo, detail=True))
            mt = self.mapping.from_mt(self.mt.render_detail(ot))
            for name in fields:
                if name == "due" and cm[name] is None:
                    continue  # an OT always has a planned end; "no due date" has no mirror
                if not self.mapping.agree(name, cm[name], mt[name]):
                    problems.append(
                        f"wo {cm_id} / ot {mt_id}: {name}: {cm[name]!r} vs {mt[name]!r}"
                    )
        return problems


def make_harness(
    tmp: Path,
    *,
    variant: ClickMaintVariant | None = None,
    extra_config: str = "",
) -> Harness:
    mt = MantenimientoSim()
    seed_mantenimiento(mt, ots=0, avisos=0)  # the plant: ubicaciones, activos, materials
    # tests that are not about the rate limit should not wait for it
    variant = variant or ClickMaintVariant(rate_limit=1_000_000)
    return Harness(tmp, ClickMaintSim(variant=variant), mt, extra_config)
