"""What the shared HTTP layer does with throttling, slow answers and missing rate headers, seen
from both clients against the simulators: the resend after a 429 waits for `Retry-After`, a
read that outlives the timeout is retried while a create is not, a server without
`X-RateLimit-*` headers is paced by the configured limit, and the request counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from syncd.sandbox.clickmaint_sim import ClickMaintSim
from syncd.sandbox.faults import FaultConfig
from syncd.sandbox.mantenimiento_sim import MantenimientoSim
from syncd.sandbox.seed_mantenimiento import seed_mantenimiento
from syncd.sandbox.server import ServerThread
from syncd.systems.budget import RateBudget
from syncd.systems.clickmaint import ClickMaintClient
from syncd.systems.errors import OutcomeUnknown, RateLimited, ServerError
from syncd.systems.http import RetryPolicy, parse_retry_after
from syncd.systems.mantenimiento import MantenimientoClient

from ..conftest import cm_client as _cm_client
from ..conftest import mt_client as _mt_client

WO1 = 1001
#: tiny back-off: any wait longer than this came from Retry-After, not from the back-off
QUICK = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)


def cm_client(transport: httpx.BaseTransport | None, **options: Any) -> ClickMaintClient:
    return _cm_client(transport, **{"retry": QUICK, **options})


def mt_client(transport: httpx.BaseTransport | None, **options: Any) -> MantenimientoClient:
    return _mt_client(transport, **{"retry": QUICK, **options})


class Tap(httpx.BaseTransport):
    """Passes requests to `inner`, stamping each exchange with `clock()`; `rewrite` may replace
    an answer (the simulator's own answer, read in full, is what it gets)."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.clock = clock
        #: (method, path, sent at, answered at, status)
        self.log: list[tuple[str, str, float, float, int]] = []
        self.rewrite: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = self.clock()
        response = self.inner.handle_request(request)
        response.read()
        if self.rewrite is not None:
            response = self.rewrite(request, response)
        self.log.append(
            (request.method, request.url.path, sent, self.clock(), response.status_code)
        )
        return response

    def statuses(self, path_part: str = "") -> list[int]:
        return [status for _m, path, *_t, status in self.log if path_part in path]


def replaced(response: httpx.Response, **headers: str | None) -> httpx.Response:
    """The same answer with some headers set (a value) or removed (None)."""
    kept = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in {h.lower().replace("_", "-") for h in headers}
        and k.lower() != "content-length"
    }
    kept.update({k.replace("_", "-"): v for k, v in headers.items() if v is not None})
    return httpx.Response(response.status_code, headers=kept, content=response.content)


class FakeTime:
    """A clock that only the client's injected `sleep` moves: waits cost no real time and are
    measured exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cm() -> ClickMaintSim:
    sim = ClickMaintSim()
    for i in range(3):
        sim.create_work_order({"title": f"WO {i}"})
    return sim


@pytest.fixture
def mt() -> MantenimientoSim:
    sim = MantenimientoSim()
    seed_mantenimiento(sim, ots=5, avisos=0, seed=2)
    return sim


def first_ot(sim: MantenimientoSim) -> int:
    return min(sim.ots)


def burst_of(sim: ClickMaintSim | MantenimientoSim, tap: Tap, n: int) -> None:
    """The next `n` API answers are the simulator's own 429s, then it recovers."""
    sim.faults.configure(FaultConfig(burst_429_rate=1.0, burst_429_length=n))
    seen = 0
    inner_rewrite = tap.rewrite

    def count(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        nonlocal seen
        if inner_rewrite is not None:
            response = inner_rewrite(request, response)
        if response.status_code == 429:
            seen += 1
            if seen == n:
                sim.faults.clear()
        return response

    tap.rewrite = count


# -- Retry-After ------------------------------------------------------------------------------
def test_clickmaint_resend_waits_for_retry_after(cm) -> None:
    """The budget is paused by the 429: the resend (and any other caller) goes out only once
    `Retry-After` (1 s from the simulator) has passed, although the back-off is 10 ms."""
    tap = Tap(httpx.WSGITransport(app=cm))
    budget = RateBudget("clickmaint", 300, 300, reserve=0)
    client = cm_client(tap, budget=budget)
    client.get_work_order(WO1)  # warm: the budget follows the server's headers from now on
    burst_of(cm, tap, 1)
    assert client.get_work_order(WO1)["id"] == WO1
    (_m, _p, _s, throttled_at, status), (_m2, _p2, resent_at, _a, again) = tap.log[-2:]
    assert (status, again) == (429, 200)
    assert resent_at - throttled_at >= 1.0, resent_at - throttled_at
    assert budget.snapshot().paused_for == 0.0
    # another caller of the same budget is held as well, not just the one that was throttled
    burst_of(cm, tap, 1)
    with pytest.raises(RateLimited):
        cm_client(tap, budget=budget, retry=RetryPolicy(attempts=1)).get_work_order(WO1)
    started = time.monotonic()
    assert client.get_work_order(WO1 + 1)["id"] == WO1 + 1
    assert time.monotonic() - started >= 0.9


def test_clickmaint_retry_after_as_an_http_date(cm) -> None:
    """`Retry-After` may be a date; the budget pauses until then."""
    tap = Tap(httpx.WSGITransport(app=cm))
    budget = RateBudget("clickmaint", 300, 300, reserve=0)
    client = cm_client(tap, budget=budget)

    def dated(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if response.status_code != 429:
            return response
        when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        return replaced(response, retry_after=format_datetime(when, usegmt=True))

    tap.rewrite = dated
    burst_of(cm, tap, 1)
    started = time.monotonic()
    assert client.get_work_order(WO1)["id"] == WO1
    # the date has whole seconds: between 2 and 3 s from now
    assert time.monotonic() - started >= 1.9


def test_mantenimiento_sleeps_retry_after_before_the_resend(mt) -> None:
    """No budget on this side: the HTTP layer itself sleeps `Retry-After` (7 s here, on a
    fake clock) before resending a read, and before resending a write that was refused."""
    clock = FakeTime()
    tap = Tap(httpx.WSGITransport(app=mt), clock=clock)
    client = mt_client(tap, sleep=clock.sleep)
    ot_id = first_ot(mt)
    client.get_ot(ot_id)  # logged in
    tap.rewrite = lambda _q, r: replaced(r, retry_after="7") if r.status_code == 429 else r
    burst_of(mt, tap, 1)
    assert client.get_ot(ot_id)["id"] == ot_id
    (_m, _p, _s, throttled_at, status), (_m2, _p2, resent_at, _a, again) = tap.log[-2:]
    assert (status, again) == (429, 200)
    assert resent_at - throttled_at >= 7.0
    assert clock.slept == [7.0]
    # a 429 means "not processed": a POST is resent too, after the same wait, and lands once
    tap.rewrite = lambda _q, r: replaced(r, retry_after="7") if r.status_code == 429 else r
    burst_of(mt, tap, 1)
    client.update_status_notes(ot_id, notas="tras el 429")
    assert [s for m, *_r, s in tap.log[-2:] if m == "POST"] == [429, 200]
    assert clock.slept == [7.0, 7.0]
    assert mt.ots[ot_id]["notas"] == "tras el 429"


def test_mantenimiento_login_throttled_waits_for_retry_after(mt) -> None:
    """A 429 on the login page (nothing sent yet) is resent after its `Retry-After`."""
    clock = FakeTime()
    tap = Tap(httpx.WSGITransport(app=mt), clock=clock)
    tap.rewrite = lambda _q, r: replaced(r, retry_after="5") if r.status_code == 429 else r
    client = mt_client(tap, sleep=clock.sleep)
    burst_of(mt, tap, 1)
    assert client.get_ot(first_ot(mt))["id"] == first_ot(mt)
    assert tap.log[0][1] == "/admin/login/" and tap.log[0][4] == 429
    assert tap.log[1][1] == "/admin/login/" and tap.log[1][2] - tap.log[0][3] >= 5.0
    assert clock.slept == [5.0]


def test_mantenimiento_retry_after_is_capped(mt) -> None:
    """A broken `Retry-After` (an hour) does not park the client beyond `max_retry_after`."""
    clock = FakeTime()
    tap = Tap(httpx.WSGITransport(app=mt), clock=clock)
    policy = RetryPolicy(attempts=3, backoff_initial=0.01, jitter=0.0, max_retry_after=20.0)
    client = mt_client(tap, sleep=clock.sleep, retry=policy)
    client.get_ot(first_ot(mt))
    tap.rewrite = lambda _q, r: replaced(r, retry_after="3600") if r.status_code == 429 else r
    burst_of(mt, tap, 1)
    client.get_ot(first_ot(mt))
    assert clock.slept == [20.0]


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("4", 60) == 4.0
    assert parse_retry_after("4000", 60) == 60.0
    assert parse_retry_after("-3", 60) == 0.0
    assert parse_retry_after("soon", 60) is None
    assert parse_retry_after(None, 60) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later, 60) or 0) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, 60) == 0.0


# -- latency above the timeout --------------------------------------------------------------
@pytest.fixture
def cm_socket(cm) -> Iterator[tuple[ClickMaintSim, str]]:
    with ServerThread(cm) as server:
        yield cm, f"{server.url}/api/v1"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


SLOW = FaultConfig(latency_ms_min=1200, latency_ms_max=1300)


def test_latency_above_the_timeout_read_is_retried_and_succeeds(cm_socket) -> None:
    sim, url = cm_socket
    recovered = threading.Event()

    def server_recovers(seconds: float) -> None:
        sim.faults.clear()  # time passes between attempts; the server is fast again
        recovered.set()

    client = cm_client(None, base_url=url, timeout=0.4, sleep=server_recovers)  # type: ignore[arg-type]
    sim.faults.configure(SLOW)
    assert client.get_work_order(WO1)["id"] == WO1
    assert recovered.is_set()
    attempts = [r for r in client.http.stats.recent if r.route == "/work_orders/{id}"]
    assert [(r.status, r.outcome) for r in attempts] == [(None, "retry"), (200, "ok")]
    assert attempts[0].duration_ms >= 350  # it waited for the timeout, not for the answer


def test_latency_above_the_timeout_read_gives_up_with_server_error(cm_socket) -> None:
    sim, url = cm_socket
    policy = RetryPolicy(attempts=3, backoff_initial=0.01, jitter=0.0)
    client = cm_client(None, base_url=url, timeout=0.3, retry=policy)  # type: ignore[arg-type]
    sim.faults.configure(SLOW)
    with pytest.raises(ServerError) as caught:
        client.get_work_order(WO1)
    assert "no answer in time" in str(caught.value)
    assert client.http.stats.retries["clickmaint"] == 3
    # every attempt did reach the server (each was answered, late, to nobody)
    wait_until(lambda: sim.log.by_route.get("GET /api/v1/work_orders/{id}", 0) == 3)


def test_latency_above_the_timeout_create_is_outcome_unknown_and_lands_once(cm_socket) -> None:
    sim, url = cm_socket
    client = cm_client(None, base_url=url, timeout=0.3)  # type: ignore[arg-type]
    sim.faults.configure(SLOW)
    with pytest.raises(OutcomeUnknown):
        client.create_work_order({"title": "slow create t:lat1"})
    assert client.http.stats.count(method="POST") == 1  # never resent blindly
    wait_until(lambda: any(w["title"] == "slow create t:lat1" for w in sim.work_orders.values()))
    sim.faults.clear()
    client.get_work_order(WO1)  # later traffic does not replay the create
    titles = [w["title"] for w in sim.work_orders.values()]
    assert titles.count("slow create t:lat1") == 1
    assert sim.log.by_route.get("POST /api/v1/work_orders", 0) == 1


def test_latency_above_the_timeout_on_mantenimiento(mt) -> None:
    with ServerThread(mt) as server:
        recovered = threading.Event()

        def server_recovers(seconds: float) -> None:
            mt.faults.clear()
            recovered.set()

        client = mt_client(None, base_url=server.url, timeout=0.4, sleep=server_recovers)
        ot_id = first_ot(mt)
        client.get_ot(ot_id)
        mt.faults.configure(SLOW)
        assert client.get_ot(ot_id)["id"] == ot_id
        assert recovered.is_set()
        mt.faults.configure(SLOW)
        with pytest.raises(OutcomeUnknown):
            client.create_ot({"descripcion": "lenta t:lat2", "ubicacion": 11})
        assert client.http.stats.count(method="POST") == 1
        made = lambda: [o for o in mt.ots.values() if "t:lat2" in (o["descripcion_corta"] or "")]  # noqa: E731
        wait_until(lambda: len(made()) == 1)
        mt.faults.clear()
        client.get_ot(ot_id)
        assert len(made()) == 1


# -- a server without X-RateLimit-* headers ---------------------------------------------------
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def strip_rate_headers(_request: httpx.Request, response: httpx.Response) -> httpx.Response:
    return replaced(response, **{h.replace("-", "_"): None for h in RATE_HEADERS})


def test_without_rate_headers_the_configured_limit_paces_requests(cm) -> None:
    tap = Tap(httpx.WSGITransport(app=cm))
    tap.rewrite = strip_rate_headers
    budget = RateBudget("clickmaint", 5, 1.5, reserve=1)  # 4 per 1.5 s for normal callers
    client = cm_client(tap, budget=budget)
    started = time.monotonic()
    for _ in range(6):
        client.get_work_order(WO1)
    elapsed = time.monotonic() - started
    snap = budget.snapshot()
    assert snap.limit == 5 and snap.server_remaining is None  # nothing learnt: the config rules
    assert elapsed >= 1.4  # the 5th request waited for the first to leave the window
    assert tap.statuses() == [200] * 6
    # the same server with its headers: the budget adopts them at once
    tap.rewrite = None
    client.get_work_order(WO1)
    assert budget.snapshot().limit == cm.variant.rate_limit


# -- request counters -----------------------------------------------------------------------
def test_request_counters_by_route_status_method_and_duration(cm) -> None:
    tap = Tap(httpx.WSGITransport(app=cm))
    client = cm_client(tap)
    client.get_work_order(WO1)
    client.get_work_order(WO1 + 1)
    client.list_page("/work_orders", per_page=2, filters=[("title_cont", "secret text")])
    client.update_work_order(WO1, {"title": "renamed"})
    with pytest.raises(Exception):  # noqa: B017 - the 404 is what is being counted
        client.get_work_order(999_999)
    cm.faults.configure(FaultConfig(error_rate=1.0))
    with pytest.raises(ServerError):
        client.get_work_order(WO1)
    cm.faults.clear()
    stats = client.http.stats
    snap = stats.snapshot()
    assert snap["total"] == 4 + 1 + QUICK.attempts
    assert snap["by_route"] == {
        "clickmaint GET /work_orders/{id}": 3 + QUICK.attempts,
        "clickmaint GET /work_orders": 1,
        "clickmaint PATCH /work_orders/{id}": 1,
    }
    assert snap["by_status"]["clickmaint 200"] == 4
    assert snap["by_status"]["clickmaint 404"] == 1
    five = sum(v for k, v in snap["by_status"].items() if k.split()[1].startswith("5"))
    assert five == QUICK.attempts
    assert snap["retries"] == {"clickmaint": QUICK.attempts}
    assert stats.count(server="clickmaint", method="GET") == 3 + 1 + QUICK.attempts
    assert stats.count(method="PATCH") == 1 and stats.count(server="mantenimiento") == 0
    assert all(r.duration_ms > 0 for r in stats.recent)
    assert stats.total_ms == pytest.approx(sum(r.duration_ms for r in stats.recent))
    # the query string (filter values may hold data) never reaches the counters
    assert not any("secret" in key for key in snap["by_route"])
    assert not any("secret" in r.route for r in stats.recent)
    last = list(stats.recent)[-QUICK.attempts :]
    assert [r.attempt for r in last] == list(range(1, QUICK.attempts + 1))
    assert [r.outcome for r in last] == ["retry"] * QUICK.attempts


def test_request_counters_count_throttled_answers(mt) -> None:
    clock = FakeTime()
    tap = Tap(httpx.WSGITransport(app=mt), clock=clock)
    client = mt_client(tap, sleep=clock.sleep)
    client.get_ot(first_ot(mt))
    burst_of(mt, tap, 2)
    client.get_ot(first_ot(mt))
    snap = client.http.stats.snapshot()
    assert snap["throttled"] == {"mantenimiento": 2}
    assert snap["by_status"]["mantenimiento 429"] == 2
    # the login exchanges are the auth flow's, inside the first counted request
    assert snap["by_route"]["mantenimiento GET /mantenimiento/api/ot/{id}/detalle/"] == 4
