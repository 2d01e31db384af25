"""Click Maint REST API v1 client.

Typed methods for what syncd needs, lazy pagination, the JSON envelope, and capability
detection for the points the public docs leave open (docs/clickmaint-capabilities.md lists each
probe and the fallback the engine uses when the answer is "no").
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ..redact import excerpt
from .errors import AuthFailed, BadResponse, NotFound, PermissionDenied, Rejected
from .http import HttpClient

FAR_FUTURE = "2999-01-01T00:00:00Z"

Filters = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int
    total_pages: int
    meta: dict[str, Any]


@dataclass
class Capabilities:
    """What this Click Maint server was seen to honour (None = could not tell yet)."""

    per_page_cap: int = 25
    updated_at_filter: bool | None = None
    updated_at_sort: bool | None = None
    rate_limit: int | None = None
    detected_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capabilities:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def iso(dt: datetime) -> str:
    """Click Maint timestamps: UTC, second precision, `Z` suffix."""
    return dt.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClickMaintClient:
    server = "clickmaint"

    def __init__(self, http: HttpClient, entity_id: int) -> None:
        self.http = http
        self.entity_id = entity_id
        self._local = threading.local()
        self._clock_offset: float | None = None
        http.on_response(self._observe_date)

    # -- per-thread deadline and the server's clock ---------------------------------------
    def set_deadline(self, deadline: float | None) -> None:
        """Calls from this thread give up waiting for budget at `deadline` (monotonic)."""
        self._local.deadline = deadline

    def _deadline(self) -> float | None:
        return getattr(self._local, "deadline", None)

    def _observe_date(self, response: httpx.Response) -> None:
        raw = response.headers.get("date")
        if not raw:
            return
        try:
            server = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=UTC)
        self._clock_offset = server.timestamp() - time.time()

    def server_time(self) -> datetime:
        """Click Maint's idea of now (from `Date` headers); used only against its own stamps."""
        offset = self._clock_offset or 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)

    def _call(self, method: str, path: str, *, idempotent: bool, **kw: Any) -> Any:
        kw.setdefault("deadline", self._deadline())
        kw["idempotent"] = idempotent
        return self.http.call(method, path, parse=self._parse, **kw)

    # -- envelope -----------------------------------------------------------------------
    def _parse(self, response: httpx.Response) -> Any:
        status = response.status_code
        where = {
            "server": self.server,
            "method": response.request.method,
            "path": response.request.url.path,
            "status": status,
        }
        if status == 204:
            return None
        payload = self._json(response, where)
        message = payload.get("message", "") if isinstance(payload, dict) else ""
        if status == 401:
            raise AuthFailed(message or "API key refused", **where)
        if status == 403:
            raise PermissionDenied(message or "forbidden", **where)
        if status == 404:
            raise NotFound(message or "not found", **where)
        if 400 <= status < 500:
            raise Rejected(message or "request rejected", **where)
        if (
            not isinstance(payload, dict)
            or payload.get("status") != "success"
            or "data" not in payload
        ):
            raise BadResponse("unexpected envelope", body=excerpt(response.content), **where)
        return payload

    @staticmethod
    def _json(response: httpx.Response, where: dict[str, Any]) -> Any:
        ctype = response.headers.get("content-type", "")
        if "json" not in ctype:
            raise BadResponse(
                f"expected JSON, got {ctype or 'no content type'}",
                body=excerpt(response.content),
                **where,
            )
        try:
            return response.json()
        except ValueError:
            raise BadResponse("invalid JSON", body=excerpt(response.content), **where) from None

    def _headers(self) -> dict[str, str]:
        return {"X-Entity-Id": str(self.entity_id)}

    def _get(
        self,
        path: str,
        params: Any = None,
        *,
        priority: bool = False,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "GET",
            path,
            params=params,
            idempotent=True,
            priority=priority,
            deadline=deadline if deadline is not None else self._deadline(),
        )

    def _data(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = payload["data"]
        if not isinstance(data, dict):
            raise BadResponse("expected an object in data", server=self.server)
        return data

    # -- generic lists --------------------------------------------------------------------
    def list_page(
        self,
        path: str,
        *,
        page: int = 1,
        per_page: int | None = None,
        sort: str | None = None,
        filters: Filters = (),
        search: str | None = None,
        deadline: float | None = None,
    ) -> Page:
        params: list[tuple[str, Any]] = [("page", page)]
        if per_page:
            params.append(("per_page", per_page))
        if sort:
            params.append(("sort", sort))
        if search:
            params.append(("search", search))
        for key, value in filters:
            if isinstance(value, list | tuple):
                params.extend((f"filter[{key}][]", v) for v in value)
            else:
                params.append((f"filter[{key}]", value))
        payload = self._get(path, params, deadline=deadline)
        items = payload.get("data")
        meta = payload.get("meta") or {}
        pagination = meta.get("pagination") or {}
        if not isinstance(items, list):
            raise BadResponse("expected a list in data", server=self.server, path=path)
        try:
            return Page(
                items=items,
                page=int(pagination.get("page", page)),
                per_page=int(pagination.get("per_page", per_page or len(items))),
                total=int(pagination.get("total", len(items))),
                total_pages=int(pagination.get("total_pages", 1)),
                meta=meta,
            )
        except (TypeError, ValueError):
            raise BadResponse("malformed pagination meta", server=self.server, path=path) from None

    def iter_pages(
        self,
        path: str,
        *,
        per_page: int | None = None,
        sort: str | None = None,
        filters: Filters = (),
        search: str | None = None,
        start_page: int = 1,
        deadline: float | None = None,
    ) -> Iterator[Page]:
        """Pages one at a time: memory stays constant however long the list is."""
        page = start_page
        while True:
            current = self.list_page(
                path,
                page=page,
                per_page=per_page,
                sort=sort,
                filters=filters,
                search=search,
                deadline=deadline,
            )
            yield current
            if not current.items or page >= current.total_pages:
                return
            page += 1

    def iter_items(self, path: str, **kw: Any) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(path, **kw):
            yield from page.items

    # -- entities -----------------------------------------------------------------------
    def entities(self) -> list[dict[str, Any]]:
        payload = self._call("GET", "/entities", idempotent=True, priority=True)
        data = payload["data"]
        return data if isinstance(data, list) else []

    # -- work orders ----------------------------------------------------------------------
    def get_work_order(self, wo_id: int) -> dict[str, Any]:
        return self._data(self._get(f"/work_orders/{wo_id}"))

    def create_work_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Not idempotent: a timeout raises OutcomeUnknown and the outbox adopts by token."""
        payload = self._call("POST", "/work_orders", json={"work_order": fields}, idempotent=False)
        return self._data(payload)

    def update_work_order(self, wo_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH with absolute values is idempotent, so it may be retried."""
        payload = self._call(
            "PATCH", f"/work_orders/{wo_id}", json={"work_order": fields}, idempotent=True
        )
        return self._data(payload)

    def delete_work_order(self, wo_id: int) -> None:
        self._call("DELETE", f"/work_orders/{wo_id}", idempotent=True)

    # -- requests ---------------------------------------------------------------------------
    def get_request(self, req_id: int) -> dict[str, Any]:
        return self._data(self._get(f"/requests/{req_id}"))

    def create_request(self, fields: dict[str, Any]) -> dict[str, Any]:
        payload = self._call(
            "POST", "/requests", json={"work_order_request": fields}, idempotent=False
        )
        return self._data(payload)

    def update_request(self, req_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        payload = self._call(
            "PATCH", f"/requests/{req_id}", json={"work_order_request": fields}, idempotent=True
        )
        return self._data(payload)

    # -- parts ------------------------------------------------------------------------------
    def get_part(self, part_id: int) -> dict[str, Any]:
        return self._data(self._get(f"/parts/{part_id}"))

    def get_transaction(self, part_id: int, tx_id: int) -> dict[str, Any]:
        return self._data(self._get(f"/parts/{part_id}/transaction/{tx_id}"))

    # -- capability detection -----------------------------------------------------------
    def detect_capabilities(self, path: str = "/work_orders") -> Capabilities:
        """Probe what the docs leave open; 3-4 requests, cached by the caller for a day.

        An answer that cannot be told yet stays None (an empty account; a listing whose every
        record shares one `updated_at` second) and the caller probes again next cycle.
        """
        caps = Capabilities(detected_at=iso(datetime.now(UTC)))
        wide = self.list_page(path, page=1, per_page=1000)
        caps.per_page_cap = max(1, min(wide.per_page, 1000))
        if wide.total > len(wide.items) and len(wide.items) < caps.per_page_cap:
            caps.per_page_cap = max(1, len(wide.items))
        if self.http.budget is not None:
            caps.rate_limit = self.http.budget.limit
        if wide.total == 0:
            return caps  # an empty account cannot tell us anything yet
        future = self.list_page(path, page=1, per_page=1, filters=[("updated_at_gteq", FAR_FUTURE)])
        caps.updated_at_filter = future.total == 0
        asc = self.list_page(
            path, page=1, per_page=min(caps.per_page_cap, 50), sort="updated_at asc"
        )
        stamps = [str(item.get("updated_at") or "") for item in asc.items]
        if len(set(stamps)) >= 2:
            caps.updated_at_sort = stamps == sorted(stamps)
        elif stamps and asc.total > len(asc.items):
            # The oldest page shares one second (a bulk import): the other end of the list
            # tells.  A server that honours the sort puts the newest record first, a different
            # one with a later stamp unless every record shares that second; one that ignores
            # it answers both sorts in its default order, with the same record first.
            desc = self.list_page(path, page=1, per_page=1, sort="updated_at desc")
            top = desc.items[0] if desc.items else {}
            top_stamp = str(top.get("updated_at") or "")
            if top_stamp > stamps[0] and top.get("id") != asc.items[0].get("id"):
                caps.updated_at_sort = True
        return caps
