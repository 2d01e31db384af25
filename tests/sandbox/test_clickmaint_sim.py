"""Behaviour of the Click Maint simulator, observed through its HTTP API and control routes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.sandbox.catalog import PARTS
from syncd.sandbox.clickmaint_sim import (
    API_USER,
    ClickMaintSim,
    ClickMaintVariant,
    ValidationError,
)
from syncd.sandbox.faults import Faults
from syncd.sandbox.seed_clickmaint import seed_clickmaint
from syncd.sandbox.server import ServerThread

KEY = "cm-sandbox-key"
AUTH = {"Authorization": f"Bearer {KEY}", "X-Entity-Id": "1"}
T0 = datetime(2025, 7, 1, 10, 0, 0, tzinfo=UTC)

WO_LIST_KEYS = {
    "id",
    "title",
    "description",
    "priority",
    "type",
    "work_order_request_id",
    "pm_schedule_id",
    "status",
    "comments_count",
    "asset",
    "downtime_tracking",
    "categories",
    "technicians",
    "vendors",
    "due_date",
    "completed_at",
    "active_timer_current_user",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
}
WO_DETAIL_KEYS = (WO_LIST_KEYS - {"work_order_request_id", "comments_count"}) | {
    "procedures",
    "work_order_request",
    "notify_vendors_on_create",
    "notify_vendors_on_update",
    "total_costs",
    "images",
    "documents",
}
REQ_LIST_KEYS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "work_order_id",
    "asset",
    "categories",
    "technicians",
    "vendors",
    "due_date",
    "completed_at",
    "comments_count",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
}
REQ_DETAIL_KEYS = (REQ_LIST_KEYS - {"comments_count"}) | {"notify", "images", "documents"}
PART_KEYS = {
    "id",
    "name",
    "description",
    "is_non_stock",
    "number",
    "area",
    "lead_time",
    "on_hand_qty",
    "min_qty",
    "desired_qty",
    "unit_cost",
    "avg_unit_cost",
    "part_type",
    "storeroom",
    "measurement_unit",
    "available",
    "reserved",
    "assets",
    "qr_code",
    "images",
    "documents",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
}
TX_KEYS = {
    "id",
    "note",
    "type",
    "work_order_id",
    "cost",
    "total_cost",
    "quantity",
    "images",
    "documents",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
}


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def sim() -> ClickMaintSim:
    return ClickMaintSim(faults=Faults())


def make_client(sim: ClickMaintSim, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=sim),
        base_url="http://cm.test",
        headers=AUTH if headers is None else headers,
    )


@pytest.fixture
def client(sim: ClickMaintSim) -> Iterator[httpx.Client]:
    with make_client(sim) as c:
        yield c


@pytest.fixture
def part(sim: ClickMaintSim) -> dict[str, Any]:
    return sim.create_part(
        {
            "id": 102,
            "name": "Air Filter",
            "number": "FL_A",
            "unit_cost": 26.15,
            "measurement_unit": {"id": 2, "name": "Item", "short_name": "itm"},
        }
    )


@pytest.fixture
def trio(sim: ClickMaintSim) -> dict[str, int]:
    """Three work orders one minute apart starting at T0, with distinct values per field."""
    sim.clock.freeze(T0)
    a = sim.create_work_order(
        {
            "title": "Cambio de filtros",
            "description": "Filtro saturado",
            "priority": "high",
            "asset_id": 45,
            "due_date": "2025-07-10T12:00:00Z",
        }
    )
    sim.clock.advance(60)
    b = sim.create_work_order(
        {"title": "Fix water leakage", "priority": "low", "status_id": 5, "type": "preventive"}
    )
    sim.clock.advance(60)
    c = sim.create_work_order(
        {
            "title": "Revisión de rodamientos",
            "description": "Ruido en motor",
            "priority": "medium",
            "status_id": 3,
            "asset_id": 46,
            "due_date": "2025-07-20T12:00:00Z",
        }
    )
    return {"a": a["id"], "b": b["id"], "c": c["id"]}


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def create_wo(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post(
        "/api/v1/work_orders", json={"work_order": {"title": "Lubricación", **fields}}
    )


# ---------------------------------------------------------------------------------------------
# authentication and entities
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}],
)
def test_missing_or_unknown_key_is_401_json(sim: ClickMaintSim, headers: dict[str, str]) -> None:
    with make_client(sim, {**headers, "X-Entity-Id": "1"}) as c:
        response = c.get("/api/v1/work_orders")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "error", "message": "Unauthorized"}


def test_entity_header_rules(sim: ClickMaintSim) -> None:
    sim.api_keys["one-entity"] = [1]
    with make_client(sim, {"Authorization": f"Bearer {KEY}"}) as c:
        missing = c.get("/api/v1/work_orders")
        not_int = c.get("/api/v1/work_orders", headers={"X-Entity-Id": "abc"})
        unknown = c.get("/api/v1/work_orders", headers={"X-Entity-Id": "99"})
    with make_client(sim, {"Authorization": "Bearer one-entity", "X-Entity-Id": "2"}) as c:
        foreign = c.get("/api/v1/work_orders")
    assert missing.status_code == 400
    assert missing.json() == {"status": "error", "message": "X-Entity-Id header is required"}
    for response in (not_int, unknown, foreign):
        assert response.status_code == 403
        assert response.json()["message"] == "Entity not found or access denied"


def test_entities_need_only_the_key_and_list_allowed_ones(sim: ClickMaintSim) -> None:
    sim.api_keys["one-entity"] = [2]
    with make_client(sim, {"Authorization": f"Bearer {KEY}"}) as c:
        both = c.get("/api/v1/entities")
    with make_client(sim, {"Authorization": "Bearer one-entity"}) as c:
        one = c.get("/api/v1/entities")
    assert both.json() == {
        "status": "success",
        "data": [{"id": 1, "name": "Planta Norte"}, {"id": 2, "name": "Planta Sur"}],
    }
    assert one.json()["data"] == [{"id": 2, "name": "Planta Sur"}]


def test_records_of_other_entities_are_invisible(sim: ClickMaintSim, client: httpx.Client) -> None:
    other = sim.create_work_order({"title": "Planta Sur only"}, entity_id=2)
    mine = sim.create_work_order({"title": "Planta Norte"})
    assert client.get(f"/api/v1/work_orders/{other['id']}").status_code == 404
    assert client.patch(
        f"/api/v1/work_orders/{other['id']}", json={"work_order": {"title": "x"}}
    ).json() == {"status": "error", "message": "Record not found"}
    assert ids(client.get("/api/v1/work_orders")) == [mine["id"]]
    south = client.get("/api/v1/work_orders", headers={"X-Entity-Id": "2"})
    assert ids(south) == [other["id"]]


def test_unknown_route_and_non_numeric_id_are_404(client: httpx.Client) -> None:
    assert client.get("/api/v1/nope").status_code == 404
    assert client.get("/api/v1/work_orders/abc").json()["message"] == "Record not found"
    assert client.post("/api/v1/work_orders/1").status_code == 404  # no such verb route


# ---------------------------------------------------------------------------------------------
# work orders: CRUD, validation, timestamps
# ---------------------------------------------------------------------------------------------
def test_create_work_order_201_with_documented_defaults(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    response = create_wo(client, asset_id=45, location_id=102, procedure_template_ids=[10])
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "success"
    wo = body["data"]
    assert set(wo) == WO_DETAIL_KEYS
    assert wo["status"] == {"id": 1, "name": "open", "is_custom": False}
    assert (wo["priority"], wo["type"], wo["completed_at"]) == ("none", "reactive", None)
    assert wo["asset"] == {"id": 45, "name": "Freezer Cámara 2", "status": "online"}
    assert wo["created_by"] == API_USER == wo["updated_by"]
    assert wo["procedures"][0]["procedure_template_id"] == 10
    assert wo["total_costs"] == {"labor": 0, "other": 0, "parts": 0, "total": 0}
    internal = sim.dump()["work_orders"][0]["_internal"]
    assert internal == {
        "entity_id": 1,
        "location_id": 102,
        "asset_id": 45,
        "status_id": 1,
        "work_order_request_id": None,
    }
    assert "location" not in wo and "location_id" not in wo


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": ""}, "Title can't be blank"),
        ({"title": "   "}, "Title can't be blank"),
        ({"title": None}, "Title can't be blank"),
        ({"description": "x"}, "Title can't be blank"),
        ({"title": "t", "priority": "urgent"}, "Priority is not included in the list"),
        ({"title": "t", "type": "corrective"}, "Type is not included in the list"),
        ({"title": "t", "status_id": 4}, "Status is invalid"),
        ({"title": "t", "status_id": "open"}, "Status is invalid"),
        ({"title": "t", "due_date": "31/02/2025"}, "Due date is invalid"),
        ({"title": "t", "completed_at": "yesterday"}, "Completed at is invalid"),
        ({"title": "t", "asset_id": 999}, "Asset must exist"),
        ({"title": "t", "location_id": 999}, "Location must exist"),
        ({"title": "t", "work_order_request_id": 1}, "Work order request must exist"),
        (
            {"title": "t", "description": "x" * 30_001},
            "Description is too long (maximum is 30000 characters)",
        ),
        (
            {"title": "", "priority": "x"},
            "Title can't be blank, Priority is not included in the list",
        ),
    ],
)
def test_create_work_order_validation_422(
    sim: ClickMaintSim, client: httpx.Client, fields: dict[str, Any], message: str
) -> None:
    response = client.post("/api/v1/work_orders", json={"work_order": fields})
    assert response.status_code == 422
    assert response.json() == {"status": "error", "message": message}
    assert sim.work_orders == {}


def test_long_description_up_to_limit_is_accepted(client: httpx.Client) -> None:
    response = create_wo(client, description="ñ" * 30_000)
    assert response.status_code == 201
    assert len(response.json()["data"]["description"]) == 30_000


def test_malformed_json_and_missing_wrapper_are_400(client: httpx.Client) -> None:
    bad = client.post(
        "/api/v1/work_orders",
        content=b'{"work_order": {',
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json() == {"status": "error", "message": "Invalid JSON"}
    for body in ({}, {"title": "unwrapped"}, {"work_order": {}}, {"work_order": "x"}):
        response = client.post("/api/v1/work_orders", json=body)
        assert response.status_code == 400
        assert response.json()["message"] == "param is missing or the value is empty: work_order"
    req = client.post("/api/v1/requests", json={"title": "x"})
    assert req.json()["message"] == "param is missing or the value is empty: work_order_request"


def test_unpermitted_fields_are_dropped_silently(client: httpx.Client) -> None:
    response = create_wo(client, technician_ids=[1], created_at="2000-01-01T00:00:00Z", id=5)
    assert response.status_code == 201
    wo = response.json()["data"]
    assert wo["technicians"] == [] and wo["id"] != 5
    assert wo["created_at"] != "2000-01-01T00:00:00Z"


def test_get_patch_put_delete_cycle(client: httpx.Client) -> None:
    wo_id = create_wo(client, priority="low").json()["data"]["id"]
    patched = client.patch(
        f"/api/v1/work_orders/{wo_id}", json={"work_order": {"priority": "high"}}
    )
    assert patched.status_code == 200
    assert patched.json()["data"]["priority"] == "high"
    assert patched.json()["data"]["title"] == "Lubricación"  # partial update keeps other fields
    put = client.put(
        f"/api/v1/work_orders/{wo_id}",
        json={"work_order": {"title": "Nuevo título", "status_id": 7}},
    )
    assert put.status_code == 200
    assert put.json()["data"]["status"] == {"id": 7, "name": "waiting_for_parts", "is_custom": True}
    got = client.get(f"/api/v1/work_orders/{wo_id}").json()["data"]
    assert (got["title"], got["priority"]) == ("Nuevo título", "high")
    invalid = client.patch(f"/api/v1/work_orders/{wo_id}", json={"work_order": {"title": ""}})
    assert invalid.status_code == 422
    assert client.get(f"/api/v1/work_orders/{wo_id}").json()["data"]["title"] == "Nuevo título"
    deleted = client.delete(f"/api/v1/work_orders/{wo_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/api/v1/work_orders/{wo_id}").status_code == 404
    assert client.delete(f"/api/v1/work_orders/{wo_id}").status_code == 404


def test_completed_status_stamps_and_clears_completed_at(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    sim.clock.freeze(T0)
    wo_id = create_wo(client).json()["data"]["id"]
    sim.clock.advance(30)
    done = client.patch(f"/api/v1/work_orders/{wo_id}", json={"work_order": {"status_id": 5}})
    assert done.json()["data"]["completed_at"] == "2025-07-01T10:00:30Z"
    reopened = client.patch(f"/api/v1/work_orders/{wo_id}", json={"work_order": {"status_id": 3}})
    assert reopened.json()["data"]["completed_at"] is None
    explicit = client.patch(
        f"/api/v1/work_orders/{wo_id}",
        json={"work_order": {"status_id": 5, "completed_at": "2025-06-30T08:00:00Z"}},
    )
    assert explicit.json()["data"]["completed_at"] == "2025-06-30T08:00:00Z"


def test_offset_timestamps_are_stored_as_utc(client: httpx.Client) -> None:
    response = create_wo(client, due_date="2025-07-17T14:00:00+02:00")
    assert response.json()["data"]["due_date"] == "2025-07-17T12:00:00Z"
    cleared = client.patch(
        f"/api/v1/work_orders/{response.json()['data']['id']}",
        json={"work_order": {"due_date": None}},
    )
    assert cleared.json()["data"]["due_date"] is None


def test_updated_at_bumps_on_change_only(sim: ClickMaintSim, client: httpx.Client) -> None:
    sim.clock.freeze(T0)
    wo = create_wo(client).json()["data"]
    assert wo["created_at"] == wo["updated_at"] == "2025-07-01T10:00:00Z"
    sim.clock.advance(5)
    same = client.patch(
        f"/api/v1/work_orders/{wo['id']}", json={"work_order": {"title": "Lubricación"}}
    )
    assert same.json()["data"]["updated_at"] == "2025-07-01T10:00:00Z"
    changed = client.patch(
        f"/api/v1/work_orders/{wo['id']}", json={"work_order": {"title": "Otro"}}
    )
    assert changed.json()["data"]["updated_at"] == "2025-07-01T10:00:05Z"
    assert changed.json()["data"]["created_at"] == "2025-07-01T10:00:00Z"
    sim.clock.advance(5)
    ui = sim.update_work_order(wo["id"], {"description": "desde la web"})
    assert ui["updated_at"] == "2025-07-01T10:00:10Z"
    assert ui["updated_by"]["id"] != API_USER["id"]


def test_updated_at_ties_within_one_frozen_second(sim: ClickMaintSim, client: httpx.Client) -> None:
    sim.clock.freeze(T0)
    created = [create_wo(client, title=f"WO {i}").json()["data"]["id"] for i in range(4)]
    sim.clock.freeze(T0 + timedelta(seconds=90, microseconds=700_000))
    for wo_id in reversed(created):
        client.patch(f"/api/v1/work_orders/{wo_id}", json={"work_order": {"priority": "high"}})
    listed = client.get("/api/v1/work_orders", params={"sort": "updated_at asc"}).json()["data"]
    assert {w["updated_at"] for w in listed} == {"2025-07-01T10:01:30Z"}
    assert [w["id"] for w in listed] == sorted(created)  # ties broken by id, same direction
    desc = client.get("/api/v1/work_orders", params={"sort": "updated_at desc"})
    assert ids(desc) == sorted(created, reverse=True)


def test_list_items_and_details_carry_the_documented_fields(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    req = sim.create_request({"title": "Fuga", "status": "approved"})
    listed = client.get("/api/v1/work_orders").json()["data"][0]
    assert set(listed) == WO_LIST_KEYS
    assert listed["work_order_request_id"] == req["id"]
    detail = client.get(f"/api/v1/work_orders/{listed['id']}").json()["data"]
    assert set(detail) == WO_DETAIL_KEYS
    assert detail["work_order_request"] == {
        "id": req["id"],
        "title": "Fuga",
        "created_at": req["created_at"],
    }
    assert sim.render_work_order(sim.work_orders[listed["id"]], detail=False) == listed


# ---------------------------------------------------------------------------------------------
# lists: pagination, sort, filter, search
# ---------------------------------------------------------------------------------------------
def test_pagination_meta_clamping_and_past_the_end(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    for i in range(7):
        sim.create_work_order({"title": f"WO {i}"})
    first = client.get("/api/v1/work_orders", params={"per_page": 3}).json()
    assert first["meta"] == {
        "pagination": {"total": 7, "page": 1, "per_page": 3, "total_pages": 3},
        "search": None,
    }
    assert (
        len(client.get("/api/v1/work_orders", params={"per_page": 3, "page": 3}).json()["data"])
        == 1
    )
    past = client.get("/api/v1/work_orders", params={"per_page": 3, "page": 9}).json()
    assert past["data"] == []
    assert past["meta"]["pagination"] == {"total": 7, "page": 9, "per_page": 3, "total_pages": 3}
    capped = client.get("/api/v1/work_orders", params={"per_page": 1000}).json()
    assert capped["meta"]["pagination"]["per_page"] == 100
    for bad in ("0", "-5", "abc"):
        meta = client.get("/api/v1/work_orders", params={"per_page": bad}).json()["meta"]
        assert meta["pagination"]["per_page"] == 25
    assert (
        client.get("/api/v1/work_orders", params={"page": "x"}).json()["meta"]["pagination"]["page"]
        == 1
    )
    sim.variant.per_page_cap = 5
    sim.variant.per_page_default = 2
    assert (
        client.get("/api/v1/work_orders", params={"per_page": 50}).json()["meta"]["pagination"][
            "per_page"
        ]
        == 5
    )
    assert len(client.get("/api/v1/work_orders").json()["data"]) == 2


def test_empty_list_has_zero_pages(client: httpx.Client) -> None:
    meta = client.get("/api/v1/work_orders").json()["meta"]
    assert meta["pagination"] == {"total": 0, "page": 1, "per_page": 25, "total_pages": 0}


def test_sorting_default_explicit_and_invalid(
    sim: ClickMaintSim, client: httpx.Client, trio: dict[str, int]
) -> None:
    a, b, c = trio["a"], trio["b"], trio["c"]
    sim.clock.advance(60)
    sim.update_work_order(a, {"priority": "low"})  # a becomes the most recently updated
    assert ids(client.get("/api/v1/work_orders")) == [c, b, a]  # created_at desc
    assert ids(client.get("/api/v1/work_orders", params={"sort": "created_at asc"})) == [a, b, c]
    assert ids(client.get("/api/v1/work_orders", params={"sort": "updated_at desc"})) == [a, c, b]
    assert ids(client.get("/api/v1/work_orders", params={"sort": "updated_at asc"})) == [b, c, a]
    assert ids(client.get("/api/v1/work_orders", params={"sort": "title asc"})) == [a, b, c]
    assert ids(client.get("/api/v1/work_orders", params={"sort": "due_date asc"})) == [a, c, b]
    assert ids(client.get("/api/v1/work_orders", params={"sort": "due_date desc"})) == [b, c, a]
    for bad in ("bogus desc", "updated_at sideways", "updated_at desc extra", ""):
        assert ids(client.get("/api/v1/work_orders", params={"sort": bad})) == [c, b, a]


def test_updated_at_sort_disabled_by_variant_falls_back_to_default(
    sim: ClickMaintSim, client: httpx.Client, trio: dict[str, int]
) -> None:
    sim.clock.advance(60)
    sim.update_work_order(trio["a"], {"priority": "low"})
    sim.variant.updated_at_sort = False
    response = client.get("/api/v1/work_orders", params={"sort": "updated_at asc"})
    assert ids(response) == [trio["c"], trio["b"], trio["a"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"filter[title_eq]": "Fix water leakage"}, "b"),
        ({"filter[title_not_eq]": "Fix water leakage"}, "ac"),
        ({"filter[title_cont]": "FILTROS"}, "a"),
        ({"filter[title_not_cont]": "filtros"}, "bc"),
        ({"filter[title_i_cont]": "LEAK"}, "b"),
        ({"filter[title_start]": "Rev"}, "c"),
        ({"filter[title_end]": "leakage"}, "b"),
        ({"filter[priority_in]": "high,low"}, "ab"),
        ({"filter[priority_not_in]": "high,low"}, "c"),
        ({"filter[status_id_eq]": "5"}, "b"),
        ({"filter[status_id_not_eq]": "5"}, "ac"),
        ({"filter[status_name_eq]": "in_progress"}, "c"),
        ({"filter[type_eq]": "preventive"}, "b"),
        ({"filter[asset_id_null]": "true"}, "b"),
        ({"filter[asset_id_not_null]": "1"}, "ac"),
        ({"filter[asset_id_null]": "false"}, "ac"),
        ({"filter[description_null]": "true"}, "b"),
        ({"filter[description_cont]": "motor"}, "c"),
        ({"filter[work_order_request_id_null]": "true"}, "abc"),
        ({"filter[created_at_gt]": "2025-07-01T10:00:00Z"}, "bc"),
        ({"filter[created_at_gteq]": "2025-07-01T10:00:00Z"}, "abc"),
        ({"filter[created_at_lt]": "2025-07-01T10:01:00Z"}, "a"),
        ({"filter[created_at_lteq]": "2025-07-01T10:01:00Z"}, "ab"),
        ({"filter[created_at_gt]": "2025-07-01T12:00:00+02:00"}, "bc"),
        ({"filter[updated_at_gteq]": "2025-07-01T10:01:00Z"}, "bc"),
        ({"filter[due_date_lt]": "2025-07-15T00:00:00Z"}, "a"),
        ({"filter[completed_at_not_null]": "true"}, "b"),
        ({"filter[title_or_description_cont]": "motor"}, "c"),
        ({"filter[title_cont]": "e", "filter[priority_eq]": "medium"}, "c"),
    ],
)
def test_filter_predicates(
    client: httpx.Client, trio: dict[str, int], params: dict[str, str], expected: str
) -> None:
    assert set(ids(client.get("/api/v1/work_orders", params=params))) == {trio[k] for k in expected}


def test_in_filter_accepts_array_form_and_id_lists(
    client: httpx.Client, trio: dict[str, int]
) -> None:
    array = client.get(
        "/api/v1/work_orders",
        params=[("filter[status_id_in][]", "5"), ("filter[status_id_in][]", "3")],
    )
    assert set(ids(array)) == {trio["b"], trio["c"]}
    by_ids = client.get("/api/v1/work_orders", params={"filter[id_in]": f"{trio['a']},{trio['c']}"})
    assert set(ids(by_ids)) == {trio["a"], trio["c"]}
    not_in = client.get("/api/v1/work_orders", params=[("filter[id_not_in][]", str(trio["a"]))])
    assert set(ids(not_in)) == {trio["b"], trio["c"]}


@pytest.mark.parametrize(
    "params",
    [
        {"filter[bogus_eq]": "1"},
        {"filter[title_matches_regex]": "x"},
        {"filter[updated_at_gteq]": "not-a-date"},
        {"filter[status_id_eq]": "abc"},
        {"filter[title_eq]": ""},
        {"filter[priority_cont]": ""},
        {"filter[id_cont]": "1"},
        {"filter": "title_cont=x"},
        {"q[title_cont]": "zzz"},
    ],
)
def test_unknown_or_unusable_filters_are_ignored(
    client: httpx.Client, trio: dict[str, int], params: dict[str, str]
) -> None:
    assert len(ids(client.get("/api/v1/work_orders", params=params))) == 3


def test_timestamp_filters_ignored_when_variant_disables_them(
    sim: ClickMaintSim, client: httpx.Client, trio: dict[str, int]
) -> None:
    params = {"filter[updated_at_gteq]": "2025-07-01T10:02:00Z", "filter[priority_eq]": "medium"}
    assert ids(client.get("/api/v1/work_orders", params=params)) == [trio["c"]]
    sim.variant.updated_at_filter = False
    only_ts = {"filter[updated_at_gteq]": "2025-07-01T10:02:00Z"}
    assert len(ids(client.get("/api/v1/work_orders", params=only_ts))) == 3
    created = {"filter[created_at_gt]": "2025-07-01T10:02:00Z"}
    assert len(ids(client.get("/api/v1/work_orders", params=created))) == 3
    assert ids(client.get("/api/v1/work_orders", params=params)) == [trio["c"]]


def test_search_is_case_insensitive_over_title_and_description_and_echoed(
    client: httpx.Client, trio: dict[str, int]
) -> None:
    response = client.get("/api/v1/work_orders", params={"search": "RUIDO"})
    assert ids(response) == [trio["c"]]
    assert response.json()["meta"]["search"] == "RUIDO"
    assert set(ids(client.get("/api/v1/work_orders", params={"search": "Fi"}))) == {
        trio["a"],
        trio["b"],
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(0, 40), per_page=st.integers(1, 12), desc=st.booleans())
def test_paging_visits_every_record_exactly_once(count: int, per_page: int, desc: bool) -> None:
    sim = ClickMaintSim()
    sim.clock.freeze(T0)  # many ties: ordering must still be total
    made = [sim.create_work_order({"title": f"WO {i}"})["id"] for i in range(count)]
    seen: list[int] = []
    with make_client(sim) as c:
        page = 1
        while True:
            params = {
                "per_page": per_page,
                "page": page,
                "sort": f"updated_at {'desc' if desc else 'asc'}",
            }
            body = c.get("/api/v1/work_orders", params=params).json()
            seen += [w["id"] for w in body["data"]]
            if page >= body["meta"]["pagination"]["total_pages"]:
                break
            page += 1
    assert seen == sorted(made, reverse=desc)


# ---------------------------------------------------------------------------------------------
# rate limiting and fault shapes
# ---------------------------------------------------------------------------------------------
def test_rate_limit_fixed_window_per_ip(sim: ClickMaintSim) -> None:
    sim.variant.rate_limit = 5
    sim.variant.rate_window = 2.0
    started = time.monotonic()
    with make_client(sim) as c:
        answers = [c.get("/api/v1/entities") for _ in range(5)]
        limited = c.get("/api/v1/entities")
        still = c.get("/api/v1/work_orders", headers={"Authorization": "Bearer bad"})
        assert [int(r.headers["X-RateLimit-Remaining"]) for r in answers] == [4, 3, 2, 1, 0]
        assert all(r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "5" for r in answers)
        assert limited.status_code == 429
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 2
        assert limited.json() == {
            "status": "error",
            "message": f"Rate limit exceeded. Retry in {retry_after} seconds.",
        }
        reset = int(limited.headers["X-RateLimit-Reset"])
        assert time.time() - 1 <= reset <= time.time() + 3
        assert still.status_code == 429  # rejected requests count; limiter runs before auth
        other_ip = httpx.Client(
            transport=httpx.WSGITransport(app=sim, remote_addr="10.1.2.3"),
            base_url="http://cm.test",
            headers=AUTH,
        )
        assert other_ip.get("/api/v1/entities").status_code == 200
        time.sleep(max(0.0, 2.05 - (time.monotonic() - started)))
        fresh = c.get("/api/v1/entities")
        assert fresh.status_code == 200
        assert fresh.headers["X-RateLimit-Remaining"] == "4"


def test_rate_limit_headers_on_errors_and_reset_helper(sim: ClickMaintSim) -> None:
    sim.variant.rate_limit = 2
    with make_client(sim, {}) as c:
        unauthorized = c.get("/api/v1/work_orders")
        missing = c.get("/api/v1/nope")
        assert unauthorized.status_code == 401 and missing.status_code == 404
        for response in (unauthorized, missing):
            assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
                response.headers
            )
        assert c.get("/api/v1/work_orders").status_code == 429
        assert c.get("/_sim/health").status_code == 200  # control routes are never limited
        sim.reset_rate_limits()
        assert c.get("/api/v1/work_orders").status_code == 401


def test_fault_injected_429_and_5xx_use_the_json_envelope(sim: ClickMaintSim) -> None:
    with make_client(sim) as c:
        sim.faults.configure({"burst_429_rate": 1.0, "burst_429_length": 1, "seed": 1})
        burst = c.get("/api/v1/work_orders")
        assert burst.status_code == 429
        assert burst.headers["Retry-After"] == "1"
        assert burst.json()["message"] == "Rate limit exceeded. Retry in 1 seconds."
        assert "X-RateLimit-Remaining" in burst.headers
        sim.faults.configure({"error_rate": 1.0, "seed": 2})
        statuses = set()
        for _ in range(12):
            response = c.get("/api/v1/work_orders")
            statuses.add(response.status_code)
            expected = (
                "Internal Server Error" if response.status_code == 500 else "Service Unavailable"
            )
            assert response.json() == {"status": "error", "message": expected}
        assert statuses <= {500, 502, 503} and len(statuses) >= 2


# ---------------------------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------------------------
def test_request_crud_and_field_sets(client: httpx.Client) -> None:
    created = client.post(
        "/api/v1/requests",
        json={
            "work_order_request": {
                "title": "Fix water leakage in Freezer",
                "status": "on_hold",
                "notify": True,
                "priority": "high",
                "location_id": 105,
                "asset_id": 45,
                "due_date": "2025-07-17T12:00:00Z",
            }
        },
    )
    assert created.status_code == 201
    req = created.json()["data"]
    assert set(req) == REQ_DETAIL_KEYS
    assert req["asset"] == {"id": 45, "name": "Freezer Cámara 2"}
    assert (req["status"], req["notify"], req["work_order_id"]) == ("on_hold", True, None)
    listed = client.get("/api/v1/requests").json()
    assert set(listed["data"][0]) == REQ_LIST_KEYS
    assert listed["meta"]["pagination"]["total"] == 1
    updated = client.patch(
        f"/api/v1/requests/{req['id']}", json={"work_order_request": {"status": "declined"}}
    )
    assert updated.json()["data"]["status"] == "declined"
    bad = client.put(f"/api/v1/requests/{req['id']}", json={"work_order_request": {"status": "x"}})
    assert bad.status_code == 422
    assert bad.json()["message"] == "Status is not included in the list"
    assert client.delete(f"/api/v1/requests/{req['id']}").status_code == 204
    assert client.get(f"/api/v1/requests/{req['id']}").status_code == 404


def test_request_default_status_is_pending(client: httpx.Client) -> None:
    created = client.post("/api/v1/requests", json={"work_order_request": {"title": "Luz"}})
    assert created.json()["data"]["status"] == "pending"
    assert created.json()["data"]["priority"] == "none"


def test_approving_a_request_creates_its_work_order(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    req = sim.create_request(
        {"title": "Ruido en bomba", "priority": "high", "asset_id": 53, "description": "Vibra"}
    )
    approved = client.patch(
        f"/api/v1/requests/{req['id']}", json={"work_order_request": {"status": "approved"}}
    ).json()["data"]
    wo_id = approved["work_order_id"]
    assert wo_id is not None
    wo = client.get(f"/api/v1/work_orders/{wo_id}").json()["data"]
    assert (wo["title"], wo["priority"], wo["type"]) == ("Ruido en bomba", "high", "reactive")
    assert wo["status"]["id"] == 1 and wo["asset"]["id"] == 53
    assert wo["work_order_request"]["id"] == req["id"]
    again = client.patch(
        f"/api/v1/requests/{req['id']}", json={"work_order_request": {"status": "approved"}}
    )
    assert again.json()["data"]["work_order_id"] == wo_id
    assert len(sim.work_orders) == 1


def test_approval_without_conversion_when_variant_disables_it(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    sim.variant.approve_creates_work_order = False
    req = sim.create_request({"title": "Ruido"})
    approved = client.patch(
        f"/api/v1/requests/{req['id']}", json={"work_order_request": {"status": "approved"}}
    )
    assert approved.json()["data"]["work_order_id"] is None
    assert sim.work_orders == {}


# ---------------------------------------------------------------------------------------------
# parts and transactions
# ---------------------------------------------------------------------------------------------
def test_part_object_matches_reference(client: httpx.Client, part: dict[str, Any]) -> None:
    shown = client.get("/api/v1/parts/102").json()["data"]
    assert set(shown) == PART_KEYS
    assert shown["unit_cost"] == 26.15 and shown["on_hand_qty"] == 0
    listed = client.get("/api/v1/parts", params={"search": "fl_a"}).json()
    assert [p["id"] for p in listed["data"]] == [102]
    assert client.get("/api/v1/parts/999").status_code == 404


@pytest.mark.parametrize("verb", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(
    ("route", "field", "tx_type"),
    [
        ("unit_cost", "unit_cost", "cost_update"),
        ("average_unit_cost", "avg_unit_cost", "average_cost_update"),
    ],
)
def test_cost_endpoints_create_transactions(
    sim: ClickMaintSim,
    client: httpx.Client,
    part: dict[str, Any],
    verb: str,
    route: str,
    field: str,
    tx_type: str,
) -> None:
    response = client.request(
        verb, f"/api/v1/parts/102/{route}", json={"cost": 30.5, "note": "Proveedor nuevo"}
    )
    assert response.status_code == 200
    assert response.json()["data"][field] == 30.5
    [tx] = sim.transactions.values()
    assert (tx["type"], tx["cost"], tx["note"]) == (tx_type, 30.5, "Proveedor nuevo")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Cost can't be blank"),
        ({"cost": -1}, "Cost must be greater than or equal to 0"),
        ({"cost": 1.234}, "Cost must have at most 2 decimal places"),
        ({"cost": "abc"}, "Cost is not a number"),
    ],
)
def test_cost_validation_422(
    sim: ClickMaintSim, client: httpx.Client, part: dict[str, Any], body: dict, message: str
) -> None:
    response = client.post("/api/v1/parts/102/unit_cost", json=body)
    assert response.status_code == 422
    assert response.json() == {"status": "error", "message": message}
    assert sim.transactions == {}


def test_reconcile_sets_on_hand_and_requires_a_note(
    sim: ClickMaintSim, client: httpx.Client, part: dict[str, Any]
) -> None:
    sim.add_transaction(102, "restock", 10)
    missing_note = client.post("/api/v1/parts/102/reconcile", json={"quantity": 7})
    assert missing_note.status_code == 422
    assert missing_note.json()["message"] == "Note can't be blank"
    done = client.patch(
        "/api/v1/parts/102/reconcile", json={"quantity": 7.5, "note": "Conteo físico"}
    )
    assert done.status_code == 200
    assert done.json()["data"]["on_hand_qty"] == 7.5
    history = client.get("/api/v1/parts/102/transaction_history").json()["data"]
    assert (history[0]["type"], history[0]["quantity"]) == ("reconcile", -2.5)


def test_transaction_history_paging_total_used_and_filters(
    sim: ClickMaintSim, client: httpx.Client, part: dict[str, Any]
) -> None:
    sim.clock.freeze(T0)
    wo = sim.create_work_order({"title": "Cambio de filtros"})
    sim.add_transaction(102, "restock", 20, note="PO-12345 received", cost=25)
    for qty in (2.5, 3, 3):
        sim.clock.advance(10)
        sim.add_transaction(102, "usage", qty, work_order_id=wo["id"], note="Consumo")
    sim.clock.advance(10)
    sim.add_transaction(102, "return", 1, work_order_id=wo["id"], note="Devolución")
    first = client.get("/api/v1/parts/102/transaction_history", params={"per_page": 2}).json()
    assert first["meta"]["pagination"] == {"total": 5, "page": 1, "per_page": 2, "total_pages": 3}
    assert first["meta"]["total_used"] == 8.5
    assert set(first["data"][0]) == TX_KEYS
    assert [t["type"] for t in first["data"]] == ["return", "usage"]  # created_at desc
    restock = client.get(
        "/api/v1/parts/102/transaction_history", params={"filter[note_cont]": "po-123"}
    ).json()
    assert [t["type"] for t in restock["data"]] == ["restock"]
    assert restock["meta"]["total_used"] == 0
    assert restock["data"][0]["total_cost"] == 500
    newer = client.get(
        "/api/v1/parts/102/transaction_history",
        params={"filter[created_at_gt]": "2025-07-01T10:00:20Z", "sort": "created_at asc"},
    ).json()["data"]
    assert [t["quantity"] for t in newer] == [3, 1]
    assert all(t["created_at"] == t["updated_at"] for t in newer)
    assert client.get(f"/api/v1/work_orders/{wo['id']}").json()["data"]["total_costs"]["parts"] == (
        round((2.5 + 3 + 3 - 1) * 26.15, 2)
    )


def test_single_transaction_route(
    sim: ClickMaintSim, client: httpx.Client, part: dict[str, Any]
) -> None:
    other = sim.create_part({"name": "Rodamiento", "number": "BRG"})
    tx = sim.add_transaction(102, "restock", 4, note="PO-1")
    got = client.get(f"/api/v1/parts/102/transaction/{tx['id']}")
    assert got.status_code == 200 and got.json()["data"] == tx
    assert client.get(f"/api/v1/parts/{other['id']}/transaction/{tx['id']}").status_code == 404
    assert client.get(f"/api/v1/parts/102/transactions/{tx['id']}").status_code == 404


def test_add_transaction_effects_and_part_touch_variant(
    sim: ClickMaintSim, part: dict[str, Any]
) -> None:
    sim.clock.freeze(T0)
    wo = sim.create_work_order({"title": "Cambio"})
    sim.clock.advance(60)
    sim.add_transaction(102, "restock", 10, cost=30)
    assert sim.parts[102]["on_hand_qty"] == 10
    assert sim.parts[102]["updated_at"] == T0 + timedelta(seconds=60)
    with pytest.raises(ValidationError):
        sim.add_transaction(102, "usage", 1)  # usage needs a work order
    sim.variant.part_touch_on_transaction = False
    sim.clock.advance(60)
    used = sim.add_transaction(102, "usage", 2.5, work_order_id=wo["id"])
    assert used["cost"] == 26.15 and used["total_cost"] == round(2.5 * 26.15, 2)
    assert sim.parts[102]["on_hand_qty"] == 7.5
    assert sim.parts[102]["updated_at"] == T0 + timedelta(seconds=60)  # not touched
    sim.clock.advance(60)
    sim.add_transaction(102, "cost_update", 0, cost=27)
    assert sim.parts[102]["unit_cost"] == 27
    assert sim.parts[102]["updated_at"] == T0 + timedelta(seconds=180)  # part column written


# ---------------------------------------------------------------------------------------------
# assets
# ---------------------------------------------------------------------------------------------
def test_assets_list_shape_and_filters(client: httpx.Client) -> None:
    body = client.get("/api/v1/assets", params={"filter[asset_code_eq]": "CF-002"}).json()
    assert body["data"] == [
        {
            "id": 45,
            "name": "Freezer Cámara 2",
            "asset_code": "CF-002",
            "status": "online",
            "location": {
                "id": 105,
                "name": "Cuarto Frío",
                "path": "Edificio Principal > Cuarto Frío",
            },
        }
    ]
    assert client.get("/api/v1/assets").json()["meta"]["pagination"]["total"] == 12


# ---------------------------------------------------------------------------------------------
# faults: page drift and malformed records
# ---------------------------------------------------------------------------------------------
def test_page_drift_mutates_the_data_set_while_paging(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    seed_clickmaint(sim, work_orders=40, requests=0, transactions_per_part=(1, 1))
    before = {w["id"]: w["updated_at"] for w in sim.dump()["work_orders"]}
    sim.faults.configure({"page_drift_rate": 1.0, "seed": 5})
    client.get("/api/v1/work_orders", params={"per_page": 10})
    assert sum(sim.faults.counts.values()) == 0  # page 1 never drifts
    for _ in range(12):
        assert (
            client.get("/api/v1/work_orders", params={"per_page": 10, "page": 2}).status_code == 200
        )
    counts = {k: v for k, v in sim.faults.counts.items() if k.startswith("page_drift_")}
    assert sum(counts.values()) == 12
    assert counts.get("page_drift_edit", 0) > 0
    after = {w["id"]: w["updated_at"] for w in sim.dump()["work_orders"]}
    assert after != before
    assert len(after) == 40 + counts.get("page_drift_insert", 0) - counts.get(
        "page_drift_delete", 0
    )


def test_transaction_history_drift_only_inserts(
    sim: ClickMaintSim, client: httpx.Client, part: dict[str, Any]
) -> None:
    sim.create_work_order({"title": "Consumo"})
    for _ in range(3):
        sim.add_transaction(102, "restock", 1)
    sim.faults.configure({"page_drift_rate": 1.0, "seed": 1})
    for _ in range(4):
        client.get("/api/v1/parts/102/transaction_history", params={"per_page": 1, "page": 2})
    assert sim.faults.counts["page_drift_insert"] == 4
    assert sim.faults.counts["page_drift_delete"] == 0
    assert len(sim.transactions) == 7


def test_malformed_records_corrupt_list_items_only(
    sim: ClickMaintSim, client: httpx.Client
) -> None:
    for i in range(5):
        sim.create_work_order({"title": f"WO {i}", "priority": "low", "type": "reactive"})
    clean = {w["id"]: w for w in client.get("/api/v1/work_orders").json()["data"]}
    sim.faults.configure({"malformed_record_rate": 1.0, "seed": 9})
    dirty = client.get("/api/v1/work_orders").json()["data"]
    assert sim.faults.counts["malformed_record"] == 5
    for item in dirty:
        diff = {k for k in item if item[k] != clean[item["id"]][k]}
        assert len(diff) == 1
        assert diff <= {"priority", "due_date", "status", "title", "type"}
    sim.faults.configure({})
    assert {w["id"]: w for w in client.get("/api/v1/work_orders").json()["data"]} == clean


# ---------------------------------------------------------------------------------------------
# seed
# ---------------------------------------------------------------------------------------------
def test_seed_sizes_and_realism(sim: ClickMaintSim) -> None:
    seed_clickmaint(sim)
    now = sim.clock.now()
    dump = sim.dump()
    assert (len(dump["work_orders"]), len(dump["requests"]), len(dump["parts"])) == (
        300,
        40,
        len(PARTS),
    )
    per_part: dict[int, int] = {}
    for tx in dump["transactions"]:
        per_part[tx["part_id"]] = per_part.get(tx["part_id"], 0) + 1
    assert set(per_part) == {p.cm_part_id for p in PARTS}
    assert all(5 <= n <= 20 for n in per_part.values())
    stamps = [w["updated_at"] for w in dump["work_orders"]] + [
        t["created_at"] for t in dump["transactions"]
    ]
    assert max(datetime.fromisoformat(s) for s in stamps) <= now
    statuses = [w["status"]["id"] for w in dump["work_orders"]]
    assert 15 <= statuses.count(5) <= 50 and 5 <= statuses.count(6) <= 30
    assert all(w["completed_at"] for w in dump["work_orders"] if w["status"]["id"] == 5)
    approved = [r for r in dump["requests"] if r["status"] == "approved"]
    assert approved and all(r["work_order_id"] in sim.work_orders for r in approved)
    usages = [t for t in dump["transactions"] if t["type"] == "usage"]
    assert usages and all(t["work_order_id"] in sim.work_orders for t in usages)
    assert any(isinstance(t["quantity"], float) for t in usages)  # litres / kg / metres
    assert any(w["asset"] is None for w in dump["work_orders"])
    assert any("á" in (w["title"] + (w["description"] or "")) for w in dump["work_orders"])
    assert all(p["on_hand_qty"] >= 0 for p in dump["parts"])


def test_seed_is_deterministic_and_fast() -> None:
    dumps = []
    for _ in range(2):
        sim = ClickMaintSim()
        sim.clock.freeze(T0)
        seed_clickmaint(sim, work_orders=50, requests=10, seed=7)
        dumps.append(sim.dump())
    assert dumps[0] == dumps[1]
    big = ClickMaintSim()
    started = time.monotonic()
    seed_clickmaint(big, work_orders=10_000, requests=100)
    assert time.monotonic() - started < 5
    assert len(big.work_orders) == 10_000
    assert big.log.total == 0 and big.faults.counts.get("page_drift_edit", 0) == 0


# ---------------------------------------------------------------------------------------------
# control routes
# ---------------------------------------------------------------------------------------------
def test_control_routes(sim: ClickMaintSim, part: dict[str, Any]) -> None:
    with make_client(sim, {}) as c:
        variant = c.post("/_sim/variant", json={"rate_limit": 7, "updated_at_filter": False})
        assert variant.json() == {
            **vars(ClickMaintVariant()),
            "rate_limit": 7,
            "updated_at_filter": False,
        }
        assert sim.variant.rate_limit == 7
        assert c.post("/_sim/variant", json={"nope": 1}).status_code == 400
        wo = c.post("/_sim/work_orders", json={"title": "Desde UI", "entity_id": 2})
        assert wo.status_code == 201
        wo_id = wo.json()["id"]
        assert sim.work_orders[wo_id]["entity_id"] == 2
        patched = c.patch(f"/_sim/work_orders/{wo_id}", json={"status_id": 5})
        assert patched.json()["status"]["name"] == "completed"
        assert c.patch(f"/_sim/work_orders/{wo_id}", json={"titel": "typo"}).status_code == 422
        assert c.patch("/_sim/work_orders/424242", json={"title": "x"}).status_code == 404
        req = c.post("/_sim/requests", json={"title": "Solicitud"}).json()
        assert c.patch(f"/_sim/requests/{req['id']}", json={"status": "on_hold"}).json()[
            "status"
        ] == ("on_hold")
        tx = c.post(
            "/_sim/parts/102/transactions", json={"type": "restock", "quantity": 2.5, "note": "PO"}
        )
        assert tx.status_code == 201 and tx.json()["quantity"] == 2.5
        dump = c.get("/_sim/dump").json()
        assert [t["part_id"] for t in dump["transactions"]] == [102]
        assert dump["work_orders"][0]["_internal"]["entity_id"] == 2
        assert c.delete(f"/_sim/work_orders/{wo_id}").json() == {"ok": True}
        assert wo_id not in sim.work_orders
        sim.variant.rate_limit = 1
        with make_client(sim) as api:
            api.get("/api/v1/entities")
            assert api.get("/api/v1/entities").status_code == 429
            assert c.post("/_sim/rate-limit/reset").json() == {"ok": True}
            assert api.get("/api/v1/entities").status_code == 200


# ---------------------------------------------------------------------------------------------
# real socket
# ---------------------------------------------------------------------------------------------
def test_over_a_real_socket(sim: ClickMaintSim) -> None:
    with ServerThread(sim) as server, httpx.Client(base_url=server.url, headers=AUTH) as c:
        created = c.post("/api/v1/work_orders", json={"work_order": {"title": "Por socket"}})
        assert created.status_code == 201
        listed = c.get("/api/v1/work_orders", params={"filter[title_cont]": "socket"})
        assert listed.json()["meta"]["pagination"]["total"] == 1
        assert listed.headers["X-RateLimit-Limit"] == "300"
        assert int(listed.headers["X-RateLimit-Remaining"]) == 298
        assert c.delete(f"/api/v1/work_orders/{created.json()['data']['id']}").status_code == 204
    assert sim.log.by_route["GET /api/v1/work_orders"] == 1


def test_concurrent_writes_over_a_real_socket_get_unique_ids(sim: ClickMaintSim) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create(n: int) -> int:
        with httpx.Client(base_url=server.url, headers=AUTH) as c:
            response = c.post("/api/v1/work_orders", json={"work_order": {"title": f"Hilo {n}"}})
            assert response.status_code == 201
            return response.json()["data"]["id"]

    with ServerThread(sim) as server, ThreadPoolExecutor(max_workers=6) as pool:
        created = list(pool.map(create, range(30)))
    assert len(set(created)) == 30 == len(sim.work_orders)


def test_deleting_unlinks_request_and_work_order(sim: ClickMaintSim, client: httpx.Client) -> None:
    sim.clock.freeze(T0)
    first = sim.create_request({"title": "Uno", "status": "approved"})
    second = sim.create_request({"title": "Dos", "status": "approved"})
    sim.clock.advance(10)
    assert client.delete(f"/api/v1/work_orders/{first['work_order_id']}").status_code == 204
    unlinked = client.get(f"/api/v1/requests/{first['id']}").json()["data"]
    assert unlinked["work_order_id"] is None
    assert unlinked["updated_at"] == "2025-07-01T10:00:10Z"
    assert client.delete(f"/api/v1/requests/{second['id']}").status_code == 204
    orphan = client.get(f"/api/v1/work_orders/{second['work_order_id']}").json()["data"]
    assert orphan["work_order_request"] is None
    assert orphan["updated_at"] == "2025-07-01T10:00:10Z"


def test_control_parts_and_bad_bodies(sim: ClickMaintSim) -> None:
    with make_client(sim, {}) as c:
        made = c.post(
            "/_sim/parts", json={"name": "Correa A42", "number": "BELT-A42", "unit_cost": 12.5}
        )
        assert made.status_code == 201 and made.json()["unit_cost"] == 12.5
        assert c.post("/_sim/work_orders", json=[1, 2]).status_code == 400
        assert c.post("/_sim/parts/999/transactions", json={"type": "restock"}).status_code == 404
        bad_type = c.post(f"/_sim/parts/{made.json()['id']}/transactions", json={"type": "gift"})
        assert bad_type.status_code == 422
    with make_client(sim) as api:
        huge = api.post(f"/api/v1/parts/{made.json()['id']}/unit_cost", json={"cost": 1e40})
        assert huge.status_code == 422
        negative = api.post(
            f"/api/v1/parts/{made.json()['id']}/reconcile", json={"quantity": -1, "note": "x"}
        )
        assert negative.json()["message"] == "Quantity must be greater than or equal to 0"
