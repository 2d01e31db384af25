"""Contract tests of the Click Maint client against the simulator (in-process and over sockets)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from syncd.sandbox.clickmaint_sim import ClickMaintSim, ClickMaintVariant
from syncd.sandbox.faults import FaultConfig
from syncd.sandbox.seed_clickmaint import seed_clickmaint
from syncd.sandbox.server import ServerThread
from syncd.systems.budget import RateBudget
from syncd.systems.errors import (
    AuthFailed,
    BadResponse,
    BudgetExhausted,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    Rejected,
    ServerError,
)
from syncd.systems.http import RetryPolicy

from ..conftest import CM_KEY
from .logcapture import rendered_logs

WO1 = 1001  # the simulator's first work order id


def _seed(sim: ClickMaintSim, n: int = 60) -> None:
    for i in range(n):
        sim.create_work_order({"title": f"WO {i}", "description": "Revisión ñ"})


def test_entities_and_crud_round_trip(make_cm_client, cm_sim) -> None:
    client = make_cm_client()
    assert [e["id"] for e in client.entities()] == [1, 2]
    created = client.create_work_order({"title": "Cambio de filtros", "priority": "high"})
    assert created["status"]["name"] == "open"
    fetched = client.get_work_order(created["id"])
    assert fetched["title"] == "Cambio de filtros"
    updated = client.update_work_order(created["id"], {"status_id": 5})
    assert updated["status"] == {"id": 5, "name": "completed", "is_custom": False}
    assert updated["completed_at"] is not None
    client.delete_work_order(created["id"])
    with pytest.raises(NotFound):
        client.get_work_order(created["id"])


def test_typed_errors(make_cm_client) -> None:
    with pytest.raises(AuthFailed) as auth:
        make_cm_client(key="wrong-key-123").get_work_order(1)
    assert "wrong-key-123" not in str(auth.value)
    with pytest.raises(PermissionDenied):
        make_cm_client(entity=99).list_page("/work_orders")
    client = make_cm_client()
    with pytest.raises(Rejected) as rejected:
        client.create_work_order({"title": ""})
    assert "Title can't be blank" in str(rejected.value)
    with pytest.raises(NotFound):
        client.get_work_order(424242)


def test_pagination_is_lazy_and_complete(make_cm_client, cm_sim) -> None:
    _seed(cm_sim, 60)
    client = make_cm_client()
    pages = client.iter_pages("/work_orders", per_page=25)
    first = next(pages)
    assert client.http.stats.total == 1  # nothing fetched beyond what was consumed
    assert first.total == 60 and first.total_pages == 3
    rest = [item["id"] for page in pages for item in page.items]
    ids = [item["id"] for item in first.items] + rest
    assert sorted(ids) == sorted(cm_sim.work_orders)
    assert client.http.stats.total == 3


def test_filters_sort_and_search(make_cm_client, cm_sim) -> None:
    _seed(cm_sim, 10)
    client = make_cm_client()
    one = client.list_page("/work_orders", filters=[("title_eq", "WO 3")])
    assert [i["title"] for i in one.items] == ["WO 3"]
    ids = sorted(cm_sim.work_orders)[:3]
    several = client.list_page("/work_orders", filters=[("id_in", ids)], sort="id desc")
    assert [i["id"] for i in several.items] == ids[::-1]
    found = client.list_page("/work_orders", search="wo 7")
    assert [i["title"] for i in found.items] == ["WO 7"]


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            ClickMaintVariant(),
            {"per_page_cap": 100, "updated_at_filter": True, "updated_at_sort": True},
        ),
        (ClickMaintVariant(per_page_cap=50), {"per_page_cap": 50}),
        (
            ClickMaintVariant(updated_at_filter=False),
            {"updated_at_filter": False, "updated_at_sort": True},
        ),
        (
            ClickMaintVariant(updated_at_sort=False),
            {"updated_at_sort": False, "updated_at_filter": True},
        ),
        (
            ClickMaintVariant(updated_at_sort=False, updated_at_filter=False),
            {"updated_at_sort": False, "updated_at_filter": False},
        ),
        (ClickMaintVariant(rate_limit=1000), {"rate_limit": 1000}),
    ],
)
def test_capability_detection_plays_every_variant(make_cm_client, variant, expected) -> None:
    sim = ClickMaintSim(variant=variant)
    seed_clickmaint(sim, work_orders=150, requests=0, seed=3)
    import httpx

    budget = RateBudget("clickmaint", 300, 300, reserve=10)
    client = make_cm_client(transport=httpx.WSGITransport(app=sim), budget=budget)
    caps = client.detect_capabilities()
    for key, value in expected.items():
        assert getattr(caps, key) == value, key


@pytest.mark.parametrize("honoured", [True, False])
def test_sort_probe_looks_past_a_first_page_stamped_in_one_second(make_cm_client, honoured) -> None:
    """A bulk import puts the oldest (or, in default order, the newest) 60 work orders in one
    second: the asc page alone cannot tell, the newest record asked for with `desc` can."""
    import httpx

    sim = ClickMaintSim(variant=ClickMaintVariant(updated_at_sort=honoured))
    sim.clock.freeze(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    _seed(sim, 60)
    sim.clock.advance(30)
    if honoured:
        sim.update_work_order(WO1 + 7, {"title": "edited later"})
    else:
        # default order is created_at desc: the asc request sees the bulk first either way
        sim.work_orders[WO1]["updated_at"] = sim.clock.now_seconds()
    client = make_cm_client(transport=httpx.WSGITransport(app=sim))
    caps = client.detect_capabilities()
    assert caps.updated_at_filter is True
    # honoured: told by the desc probe; ignored: both sorts answer the default order, so the
    # answer stays unknown (never a wrong "yes") and the engine probes again next cycle
    assert caps.updated_at_sort is (True if honoured else None)
    assert client.http.stats.total == 4


def test_sort_probe_on_a_single_second_account_stays_unknown(make_cm_client, cm_sim) -> None:
    cm_sim.clock.freeze(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    _seed(cm_sim, 60)
    caps = make_cm_client().detect_capabilities()
    assert caps.updated_at_filter is True and caps.updated_at_sort is None


def test_empty_account_capabilities_are_unknown(make_cm_client) -> None:
    caps = make_cm_client().detect_capabilities()
    assert caps.updated_at_filter is None and caps.updated_at_sort is None


def test_budget_follows_rate_headers_so_the_limiter_never_answers_429(
    make_cm_client, cm_sim
) -> None:
    """(A 429 that does come is waited out: tests/systems/test_http_behaviour.py.)"""
    _seed(cm_sim, 3)
    cm_sim.variant.update({"rate_limit": 4, "rate_window": 1.0})
    budget = RateBudget("clickmaint", 300, 1.0, reserve=0)  # configured window, learnt limit
    client = make_cm_client(budget=budget, retry=RetryPolicy(attempts=6, backoff_initial=0.01))
    started = time.monotonic()
    for _ in range(8):
        client.get_work_order(WO1)
    assert budget.limit == 4  # learnt from X-RateLimit-Limit
    assert time.monotonic() - started >= 0.9  # had to wait for the window to reset
    statuses = cm_sim.log.by_status
    assert statuses.get(200) == 8 and 429 not in statuses


def test_retry_after_from_fault_burst(make_cm_client, cm_sim) -> None:
    _seed(cm_sim, 1)
    cm_sim.faults.configure(FaultConfig(burst_429_rate=1.0, burst_429_length=2, seed=1))
    budget = RateBudget("clickmaint", 300, 300, reserve=0)
    client = make_cm_client(budget=budget, retry=RetryPolicy(attempts=5, backoff_initial=0.01))
    # every request starts a burst: the client must give up with RateLimited, not spin forever
    from syncd.systems.errors import RateLimited

    started = time.monotonic()
    with pytest.raises(RateLimited):
        client.get_work_order(WO1)
    # each of the 4 resends waited for the 429's Retry-After (1 s) in the budget
    assert time.monotonic() - started >= 4 * 1.0
    assert cm_sim.log.by_status[429] == 5
    cm_sim.faults.configure(FaultConfig(burst_429_rate=0.0))
    assert client.get_work_order(WO1)["id"] == WO1


def test_server_errors_retried_for_reads_outcome_unknown_for_creates(
    make_cm_client, cm_sim
) -> None:
    _seed(cm_sim, 1)
    cm_sim.faults.configure(FaultConfig(error_rate=1.0, seed=2))
    client = make_cm_client()
    with pytest.raises(ServerError):
        client.get_work_order(WO1)
    assert cm_sim.log.total == 4  # all attempts used
    with pytest.raises(OutcomeUnknown):
        client.create_work_order({"title": "x"})
    assert cm_sim.log.total == 5  # a POST is never resent blindly


def test_malformed_json_and_html_pages_are_bad_responses(make_cm_client, cm_sim) -> None:
    _seed(cm_sim, 1)
    client = make_cm_client()
    cm_sim.faults.configure(FaultConfig(malformed_json_rate=1.0))
    with pytest.raises(BadResponse) as bad:
        client.get_work_order(WO1)
    assert "invalid JSON" in str(bad.value)
    cm_sim.faults.configure(FaultConfig(html_error_rate=1.0))
    with pytest.raises(ServerError) as html:
        client.get_work_order(WO1)
    assert "502" in str(html.value)
    cm_sim.faults.configure(FaultConfig(malformed_json_rate=0.5, seed=7))
    assert client.get_work_order(WO1)["id"] == WO1  # transient garbage is retried away


def test_budget_deadline_gives_partial_progress(make_cm_client, cm_sim) -> None:
    _seed(cm_sim, 1)
    budget = RateBudget("clickmaint", 3, 60, reserve=1, ceiling=3)
    client = make_cm_client(budget=budget)
    client.get_work_order(WO1)
    client.get_work_order(WO1)
    client.set_deadline(time.monotonic() + 0.2)
    with pytest.raises(BudgetExhausted):
        client.get_work_order(WO1)
    client.set_deadline(None)


def test_secrets_never_in_errors_or_logs(make_cm_client) -> None:
    """A refused key is not quoted back (servers that do echo it: test_secrets_in_errors)."""
    client = make_cm_client(key="sk-live-SECRET-987654")
    with rendered_logs() as logs, pytest.raises(AuthFailed) as exc:
        client.list_page("/work_orders")
    assert "http.request" in logs.getvalue()
    assert "SECRET" not in str(exc.value)
    assert "SECRET" not in logs.getvalue()


def test_over_real_sockets_with_timeouts(make_cm_client) -> None:
    sim = ClickMaintSim()
    _seed(sim, 5)
    with ServerThread(sim) as server:
        client = make_cm_client(
            sockets=True,
            base_url=f"{server.url}/api/v1",
            timeout=0.5,
            retry=RetryPolicy(attempts=3, backoff_initial=0.01),
        )
        assert client.get_work_order(WO1)["id"] == WO1
        sim.faults.configure(FaultConfig(timeout_rate=1.0, timeout_delay=1.0))
        with pytest.raises(OutcomeUnknown):
            client.create_work_order({"title": "Created although the answer never came"})
        # the POST did land: this is exactly why it must not be resent
        titles = [wo["title"] for wo in sim.work_orders.values()]
        assert titles.count("Created although the answer never came") == 1
        with pytest.raises(ServerError):
            client.get_work_order(WO1)  # reads time out, are retried, then give up
        sim.faults.clear()
        assert client.get_work_order(WO1 + 1)["id"] == WO1 + 1


def test_key_only_header_authentication(make_cm_client) -> None:
    client = make_cm_client(key=CM_KEY)
    assert client.entities()


def test_server_time_is_learnt_from_date_headers_over_sockets(make_cm_client) -> None:
    """syncd never compares clocks across servers; it needs Click Maint's own 'now'."""
    sim = ClickMaintSim()
    sim.clock.set_skew(3 * 3600)
    with ServerThread(sim) as server:
        client = make_cm_client(sockets=True, base_url=f"{server.url}/api/v1")
        client.entities()
        drift = (client.server_time() - datetime.now(UTC)).total_seconds()
        assert abs(drift - 3 * 3600) < 5


# -- requests, parts, transactions: one round trip per client method ------------------------
def test_get_request_round_trip(make_cm_client, cm_sim) -> None:
    client = make_cm_client()
    made = client.create_request({"title": "Fuga en la bomba", "priority": "high"})
    fetched = client.get_request(made["id"])
    assert fetched["id"] == made["id"] and fetched["title"] == "Fuga en la bomba"
    assert fetched["priority"] == "high"
    client.update_request(made["id"], {"description": "goteo ⟦t:r1⟧"})
    assert client.get_request(made["id"])["description"] == "goteo ⟦t:r1⟧"
    with pytest.raises(NotFound):
        client.get_request(99_999)


def test_get_part_and_transaction_round_trip(make_cm_client, cm_sim) -> None:
    part = cm_sim.create_part({"name": "Rodamiento 6204", "number": "BRG-6204", "on_hand_qty": 10})
    other = cm_sim.create_part({"name": "Aceite", "number": "OIL-68"})
    wo = cm_sim.create_work_order({"title": "Cambio de rodamiento"})["id"]
    tx = cm_sim.add_transaction(part["id"], "usage", 2, work_order_id=wo, note="t:tx1")
    client = make_cm_client()
    fetched = client.get_part(part["id"])
    assert (fetched["id"], fetched["number"], fetched["on_hand_qty"]) == (part["id"], "BRG-6204", 8)
    got = client.get_transaction(part["id"], tx["id"])
    assert got["id"] == tx["id"] and got["type"] == "usage"
    assert got["quantity"] == 2 and got["work_order_id"] == wo and got["note"] == "t:tx1"
    with pytest.raises(NotFound):  # a transaction is only found under its own part
        client.get_transaction(other["id"], tx["id"])
    with pytest.raises(NotFound):
        client.get_part(99_999)
    assert [r.route for r in client.http.stats.recent][:2] == [
        "/parts/{id}",
        "/parts/{id}/transaction/{id}",
    ]


def test_reads_over_a_real_socket(make_cm_client) -> None:
    sim = ClickMaintSim()
    part = sim.create_part({"name": "Filtro", "number": "FL-1"})
    tx = sim.add_transaction(part["id"], "restock", 5)
    req = sim.create_request({"title": "Ruido"})
    with ServerThread(sim) as server:
        client = make_cm_client(sockets=True, base_url=f"{server.url}/api/v1")
        assert client.get_request(req["id"])["title"] == "Ruido"
        assert client.get_part(part["id"])["number"] == "FL-1"
        assert client.get_transaction(part["id"], tx["id"])["quantity"] == 5
    assert sim.log.by_route["GET /api/v1/parts/{id}/transaction/{id}"] == 1


# -- filters: every comparison matcher on both timestamps, over the API ----------------------
STAMPS = [datetime(2026, 2, 1, 8, 0, s, tzinfo=UTC) for s in (0, 10, 20, 30, 40)]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def stamped(cm_sim) -> dict[int, datetime]:
    """Five work orders, created 10 s apart, each edited 100 s after the last creation, in
    reverse order: created_at and updated_at order them in opposite directions."""
    made = {}
    for moment in STAMPS:
        cm_sim.clock.freeze(moment)
        made[cm_sim.create_work_order({"title": f"at {moment:%S}"})["id"]] = moment
    for i, wo_id in enumerate(sorted(made, reverse=True)):
        cm_sim.clock.freeze(STAMPS[-1] + timedelta(seconds=100 + 10 * i))
        cm_sim.update_work_order(wo_id, {"description": "edited"})
    cm_sim.clock.freeze(None)
    return made


MATCHERS: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": lambda v, t: v == t,
    "not_eq": lambda v, t: v != t,
    "gt": lambda v, t: v > t,
    "gteq": lambda v, t: v >= t,
    "lt": lambda v, t: v < t,
    "lteq": lambda v, t: v <= t,
}


@pytest.mark.parametrize("attribute", ["created_at", "updated_at"])
@pytest.mark.parametrize("matcher", [*MATCHERS, "in"])
def test_every_timestamp_matcher_over_the_api(make_cm_client, stamped, attribute, matcher) -> None:
    client = make_cm_client()
    every = {i["id"]: i for i in client.list_page("/work_orders", per_page=100).items}
    assert set(every) == set(stamped)
    values = {i: datetime.fromisoformat(item[attribute]) for i, item in every.items()}
    pivot = sorted(values.values())[2]  # the middle one: every matcher splits the set
    if matcher == "in":
        chosen = sorted(values.values())[1:4:2]
        target: object = [_iso(v) for v in chosen]
        expected = {i for i, v in values.items() if v in chosen}
    else:
        target = _iso(pivot)
        expected = {i for i, v in values.items() if MATCHERS[matcher](v, pivot)}
    page = client.list_page(
        "/work_orders", per_page=100, filters=[(f"{attribute}_{matcher}", target)]
    )
    assert {i["id"] for i in page.items} == expected
    assert 0 < len(expected) < len(stamped)  # the filter really selected something
    assert page.total == len(expected)


def test_text_cont_matcher_finds_an_outbox_token(make_cm_client, cm_sim) -> None:
    """`description_cont` is how the outbox finds a create whose answer never came."""
    _seed(cm_sim, 5)
    cm_sim.create_work_order({"title": "x", "description": "Cambio ⟦syncd mt:7 t:AbC123⟧"})
    page = make_cm_client().list_page("/work_orders", filters=[("description_cont", "t:abc123")])
    assert [i["description"] for i in page.items] == ["Cambio ⟦syncd mt:7 t:AbC123⟧"]
