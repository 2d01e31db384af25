"""The one HTTP code path every remote call goes through.

It owns what must be identical for both servers: timeouts on every request, the shared rate
budget, the retry policy (and its one hard rule: a request that may have been applied is never
retried blindly), typed errors, and a request log with counters that `status` and the
benchmarks read.  Server-specific meaning (envelopes, login redirects) lives in a `parse`
callback supplied per call by the server client.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import structlog
import tenacity

from ..redact import excerpt
from .budget import RateBudget
from .errors import (
    BadResponse,
    LoginUnavailable,
    OutcomeUnknown,
    RateLimited,
    RemoteError,
    ServerError,
    Unavailable,
)

log = structlog.get_logger("syncd.http")

T = TypeVar("T")
_DIGITS = re.compile(r"/\d+(?=/|$)")


def route_of(path: str) -> str:
    """Low-cardinality route name: ids replaced, query dropped (never logged: it may hold data)."""
    return _DIGITS.sub("/{id}", path.split("?", 1)[0])


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    #: never wait longer than this for a single Retry-After (a broken header must not park us)
    max_retry_after: float = 330.0
    #: overall cap for one logical call, retries included
    total_seconds: float = 900.0


@dataclass(frozen=True)
class RequestRecord:
    server: str
    method: str
    route: str
    status: int | None
    duration_ms: float
    attempt: int
    outcome: str  # ok | retry | error
    at: float = field(default_factory=time.time)


class RequestStats:
    """Thread-safe counters of every request sent (and a short tail of recent ones)."""

    def __init__(self, keep: int = 500) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_route: Counter[tuple[str, str, str]] = Counter()
        self.by_status: Counter[tuple[str, int | None]] = Counter()
        self.by_server: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.recent: deque[RequestRecord] = deque(maxlen=keep)
        self.total_ms = 0.0

    def add(self, rec: RequestRecord) -> None:
        with self._lock:
            self.total += 1
            self.total_ms += rec.duration_ms
            self.by_server[rec.server] += 1
            self.by_route[(rec.server, rec.method, rec.route)] += 1
            self.by_status[(rec.server, rec.status)] += 1
            if rec.outcome == "retry":
                self.retries[rec.server] += 1
            if rec.status == 429:
                self.throttled[rec.server] += 1
            self.recent.append(rec)

    def count(self, server: str | None = None, method: str | None = None) -> int:
        with self._lock:
            if server is None and method is None:
                return self.total
            return sum(
                n
                for (srv, meth, _route), n in self.by_route.items()
                if (server is None or srv == server) and (method is None or meth == method)
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_server": dict(self.by_server),
                "by_route": {" ".join(k): v for k, v in self.by_route.items()},
                "by_status": {f"{s} {c}": v for (s, c), v in self.by_status.items()},
                "retries": dict(self.retries),
                "throttled": dict(self.throttled),
            }


def parse_retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(seconds, cap))


def _int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


class _Retry(Exception):
    """Internal marker: the wrapped error may be retried."""

    def __init__(self, error: RemoteError) -> None:
        self.error = error
        super().__init__(str(error))


class HttpClient:
    """A configured httpx.Client plus budget, retries and typed errors for one server."""

    def __init__(
        self,
        server: str,
        base_url: str,
        *,
        timeout: float | httpx.Timeout = 30.0,
        budget: RateBudget | None = None,
        retry: RetryPolicy | None = None,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        stats: RequestStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
        classify_5xx: Callable[[httpx.Response], RemoteError | None] | None = None,
    ) -> None:
        self.server = server
        #: lets a server client turn a *deterministic* 5xx (mantenimiento answers a missing OT
        #: with HTTP 500) into a typed, non-retried error before the generic 5xx handling
        self._classify_5xx = classify_5xx
        self.budget = budget
        self.retry = retry or RetryPolicy()
        self.stats = stats or RequestStats()
        self._sleep = sleep
        if isinstance(timeout, int | float):
            timeout = httpx.Timeout(timeout, connect=min(10.0, float(timeout)))
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            auth=auth,
            headers=headers or {},
            transport=transport or httpx.HTTPTransport(retries=2),
            limits=httpx.Limits(
                max_connections=8, max_keepalive_connections=4, keepalive_expiry=30
            ),
            follow_redirects=False,
        )
        self._observers: list[Callable[[httpx.Response], None]] = []

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def on_response(self, observer: Callable[[httpx.Response], None]) -> None:
        """Register a hook run on every response (capability detection reads headers here)."""
        self._observers.append(observer)

    def close(self) -> None:
        self._client.close()

    # -- the call -----------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[httpx.Response], T],
        idempotent: bool,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        priority: bool = False,
        deadline: float | None = None,
    ) -> T:
        """Send one logical request, retrying only where that cannot duplicate an effect."""
        attempt_no = 0

        def once() -> T:
            nonlocal attempt_no
            attempt_no += 1
            return self._attempt(
                method,
                path,
                parse,
                idempotent,
                params,
                json,
                data,
                files,
                priority,
                deadline,
                attempt_no,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retry.attempts)
            | tenacity.stop_after_delay(self.retry.total_seconds),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(once)
        except _Retry as exc:
            raise exc.error from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retry) and isinstance(exc.error, RateLimited):
            if self.budget is not None:
                return 0.0  # the budget itself holds everybody until Retry-After has passed
            if exc.error.retry_after is not None:
                return exc.error.retry_after  # no budget (mantenimiento): wait here
        login = exc.error if isinstance(exc, _Retry) else None
        if isinstance(login, LoginUnavailable) and login.retry_after is not None:
            return min(login.retry_after, self.retry.max_retry_after)  # login answered 429
        p = self.retry
        base = min(p.backoff_max, p.backoff_initial * (2 ** (state.attempt_number - 1)))
        return base + random.uniform(0, p.jitter)

    def _attempt(
        self,
        method: str,
        path: str,
        parse: Callable[[httpx.Response], T],
        idempotent: bool,
        params: Any,
        json: Any,
        data: Any,
        files: Any,
        priority: bool,
        deadline: float | None,
        attempt_no: int,
    ) -> T:
        route = route_of(path)
        if self.budget is not None:
            self.budget.acquire(priority=priority, deadline=deadline)
        where: dict[str, Any] = {"server": self.server, "method": method, "path": route}
        started = time.monotonic()
        try:
            response = self._client.request(
                method, path, params=params, json=json, data=data, files=files
            )
            response.read()
        except LoginUnavailable as exc:
            # raised by an auth flow before the request went out: safe to resend
            self._record(method, route, exc.status, started, attempt_no, "retry")
            raise _Retry(exc) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left: safe to retry whatever the method.
            self._record(method, route, None, started, attempt_no, "retry")
            raise _Retry(Unavailable(f"cannot connect ({type(exc).__name__})", **where)) from None
        except httpx.TimeoutException as exc:
            self._record(
                method, route, None, started, attempt_no, "retry" if idempotent else "error"
            )
            msg = f"no answer in time ({type(exc).__name__})"
            if idempotent:
                raise _Retry(ServerError(msg, **where)) from None
            raise OutcomeUnknown(msg, **where) from None
        except httpx.TransportError as exc:
            self._record(
                method, route, None, started, attempt_no, "retry" if idempotent else "error"
            )
            msg = f"connection failed mid-request ({type(exc).__name__})"
            if idempotent:
                raise _Retry(ServerError(msg, **where)) from None
            raise OutcomeUnknown(msg, **where) from None

        status = response.status_code
        self._observe_rate_headers(response)
        for observer in self._observers:
            observer(response)
        where["status"] = status

        if status == 429:
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), self.retry.max_retry_after
            )
            if self.budget is not None:
                self.budget.pause(retry_after if retry_after is not None else 5.0)
            self._record(method, route, status, started, attempt_no, "retry")
            log.warning("http.throttled", retry_after=retry_after, attempt=attempt_no, **where)
            # A 429 means the request was not processed: safe to resend, even a POST.
            raise _Retry(
                RateLimited(
                    "rate limited", retry_after=retry_after, body=excerpt(response.content), **where
                )
            )
        if status >= 500 and self._classify_5xx is not None:
            known = self._classify_5xx(response)
            if known is not None:
                self._record(method, route, status, started, attempt_no, "error")
                raise known
        if status >= 500:
            body = excerpt(response.content)
            self._record(
                method, route, status, started, attempt_no, "retry" if idempotent else "error"
            )
            if idempotent:
                log.info("http.retry", attempt=attempt_no, **where)
                raise _Retry(ServerError("server error", body=body, **where))
            raise OutcomeUnknown("server error on a non-idempotent request", body=body, **where)
        try:
            result = parse(response)
        except BadResponse as exc:
            self._record(
                method, route, status, started, attempt_no, "retry" if idempotent else "error"
            )
            if idempotent:
                raise _Retry(exc) from None
            raise OutcomeUnknown(
                "unusable answer to a non-idempotent request", body=exc.body, **where
            ) from None
        except RemoteError:
            self._record(method, route, status, started, attempt_no, "error")
            raise
        self._record(method, route, status, started, attempt_no, "ok")
        return result

    def _observe_rate_headers(self, response: httpx.Response) -> None:
        if self.budget is None:
            return
        limit = _int_header(response, "x-ratelimit-limit")
        remaining = _int_header(response, "x-ratelimit-remaining")
        reset = _int_header(response, "x-ratelimit-reset")
        if limit is not None or remaining is not None:
            self.budget.observe(limit, remaining, float(reset) if reset is not None else None)

    def _record(
        self,
        method: str,
        route: str,
        status: int | None,
        started: float,
        attempt: int,
        outcome: str,
    ) -> None:
        ms = (time.monotonic() - started) * 1000
        self.stats.add(RequestRecord(self.server, method, route, status, ms, attempt, outcome))
        log.debug(
            "http.request",
            server=self.server,
            method=method,
            path=route,
            status=status,
            ms=round(ms, 1),
            attempt=attempt,
        )
