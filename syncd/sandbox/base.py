"""Common plumbing of both simulators: request log, fault application and the `/_sim/` control API.

A simulator subclasses `SimApp` and implements `handle(request)` for the real API surface plus
`handle_control(request, path)` for its own test hooks.  The control API lives under `/_sim/`,
is never rate limited or faulted, and exists only in the sandbox (a real server has no such
thing); tests use it to drive "UI" edits, faults, clocks and to dump state for verification.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.wrappers import Request, Response

from .clock import SimClock
from .faults import PROXY_HTML_ERROR, FaultDecision, Faults


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    duration_ms: float
    fault: str | None = None


class RequestLog:
    """Bounded log plus counters that never reset unless asked (benchmarks read the counters)."""

    def __init__(self, keep: int = 2000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.entries: list[LoggedRequest] = []
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.total = 0

    def add(self, entry: LoggedRequest, route: str) -> None:
        with self._lock:
            self.total += 1
            self.by_route[f"{entry.method} {route}"] += 1
            self.by_status[entry.status] += 1
            self.entries.append(entry)
            if len(self.entries) > self._keep:
                del self.entries[: len(self.entries) - self._keep]

    def reset(self) -> None:
        with self._lock:
            self.entries.clear()
            self.by_route.clear()
            self.by_status.clear()
            self.total = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_route": dict(self.by_route),
                "by_status": {str(k): v for k, v in self.by_status.items()},
                "recent": [e.__dict__ for e in self.entries[-50:]],
            }


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, default=_json_default)
    return Response(body, status=status, headers=headers, content_type="application/json")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class SimApp:
    """Base WSGI application.  Subclasses set `name` and implement the `handle*` hooks."""

    name = "sim"

    def __init__(self, *, clock: SimClock | None = None, faults: Faults | None = None) -> None:
        self.clock = clock or SimClock()
        self.faults = faults or Faults()
        self.log = RequestLog()
        #: one lock for all state; handlers hold it while reading or mutating records
        self.lock = threading.RLock()

    # -- hooks for subclasses -------------------------------------------------------------
    def handle(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def handle_control(self, request: Request, path: str) -> Response | None:
        return None

    def route_name(self, request: Request) -> str:
        """A low-cardinality name for the request log (ids replaced by placeholders)."""
        parts = [("{id}" if p.isdigit() else p) for p in request.path.split("/")]
        return "/".join(parts)

    def error_response(self, status: int, request: Request) -> Response:
        return Response("Internal Server Error", status=status, content_type="text/plain")

    def rate_limited_response(self, request: Request) -> Response:
        return Response("Too Many Requests", status=429, headers={"Retry-After": "1"})

    def expire_session(self, request: Request) -> None:
        return None

    def before_faults(self, request: Request) -> Response | None:
        """Checks that happen before fault injection (e.g. the rate limiter)."""
        return None

    # -- WSGI -----------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_sim/"):
            return self._control(request)
        started = time.monotonic()
        fault_name: str | None = None
        try:
            early = self.before_faults(request)
            if early is not None:
                response = early
            else:
                decision = self.faults.decide(request.method)
                response, fault_name = self._apply_faults(request, decision)
        except HTTPException as exc:
            response = exc.get_response()  # type: ignore[assignment]
        # a real server's Date header and its record stamps come from the same clock
        response.headers["Date"] = http_date(self.clock.now())
        duration = (time.monotonic() - started) * 1000
        self.log.add(
            LoggedRequest(request.method, request.path, response.status_code, duration, fault_name),
            self.route_name(request),
        )
        return response

    def _apply_faults(self, request: Request, d: FaultDecision) -> tuple[Response, str | None]:
        if d.latency:
            time.sleep(d.latency)
        if d.force_429:
            return self.rate_limited_response(request), "429_burst"
        if d.error_status:
            return self.error_response(d.error_status, request), f"error_{d.error_status}"
        if d.html_error:
            return Response(PROXY_HTML_ERROR, status=502, content_type="text/html"), "html_error"
        if d.expire_session:
            self.expire_session(request)
        response = self.handle(request)
        fault = "session_expired" if d.expire_session else None
        if d.malformed_json and response.mimetype == "application/json":
            body = response.get_data()
            response.set_data(body[: max(1, len(body) // 2)])
            fault = "malformed_json"
        if d.timeout:
            time.sleep(self.faults.config.timeout_delay)
            fault = "timeout"
        return response, fault

    # -- control API ----------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        path = request.path[len("/_sim/") :].strip("/")
        try:
            body = request.get_json(silent=True) or {}
            if path == "health":
                return json_response({"ok": True, "name": self.name})
            if path == "stats":
                return json_response(
                    {"requests": self.log.snapshot(), "faults": self.faults.stats()}
                )
            if path == "reset-stats" and request.method == "POST":
                self.log.reset()
                self.faults.counts.clear()
                return json_response({"ok": True})
            if path == "faults":
                if request.method == "POST":
                    self.faults.configure(body)
                return json_response(self.faults.config.as_dict())
            if path == "clock":
                if request.method == "POST":
                    if "skew_seconds" in body:
                        self.clock.set_skew(float(body["skew_seconds"]))
                    if "frozen" in body:
                        frozen = body["frozen"]
                        self.clock.freeze(datetime.fromisoformat(frozen) if frozen else None)
                    if "advance_seconds" in body:
                        self.clock.advance(float(body["advance_seconds"]))
                return json_response(self.clock.state())
            custom = self.handle_control(request, path)
            if custom is not None:
                return custom
            return json_response({"error": f"unknown control route {path!r}"}, status=404)
        except (ValueError, KeyError, TypeError) as exc:
            return json_response({"error": str(exc)}, status=400)
