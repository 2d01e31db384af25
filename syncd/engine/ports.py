"""The small interfaces the engine is driven through.

The concrete clients (`syncd.systems`) and the ledger (`syncd.ledger`) satisfy these; tests and
the dry run can substitute their own.  Listing exactly what the engine calls keeps the core
honest about its dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Protocol

from ..systems.clickmaint import Capabilities, Filters, Page


class ClickMaintPort(Protocol):
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
    ) -> Page: ...

    def iter_pages(self, path: str, **kw: Any) -> Iterator[Page]: ...

    def get_work_order(self, wo_id: int) -> dict[str, Any]: ...

    def create_work_order(self, fields: dict[str, Any]) -> dict[str, Any]: ...

    def update_work_order(self, wo_id: int, fields: dict[str, Any]) -> dict[str, Any]: ...

    def get_request(self, req_id: int) -> dict[str, Any]: ...

    def create_request(self, fields: dict[str, Any]) -> dict[str, Any]: ...

    def update_request(self, req_id: int, fields: dict[str, Any]) -> dict[str, Any]: ...

    def get_part(self, part_id: int) -> dict[str, Any]: ...

    def get_transaction(self, part_id: int, tx_id: int) -> dict[str, Any]: ...

    def detect_capabilities(self, path: str = ...) -> Capabilities: ...


class MantenimientoPort(Protocol):
    def get_ot(self, ot_id: int) -> dict[str, Any] | None: ...

    def update_status_notes(
        self, ot_id: int, *, estado: str | None = None, notas: str | None = None
    ) -> None: ...

    def update_ot_fields(self, ot_id: int, form: dict[str, Any]) -> None: ...

    def close_ot(
        self,
        ot_id: int,
        *,
        fecha_inicio: str,
        fecha_fin: str,
        horas_hombre: float = 0.0,
        comentarios: str = "",
    ) -> bool: ...

    def create_ot(self, form: dict[str, Any]) -> tuple[int, str]: ...

    def search_ots(self, q: str) -> list[dict[str, Any]]: ...

    def list_avisos(self, search: str | None = None) -> dict[str, list[dict[str, Any]]]: ...

    def iter_avisos(self, search: str | None = None) -> Iterator[dict[str, Any]]: ...

    def update_aviso(
        self, aviso_id: int, estado: str, responsable_id: int | None = None
    ) -> None: ...

    def create_ot_from_aviso(
        self, aviso_id: int, *, prioridad: str | None = None, fecha_inicio: str | None = None
    ) -> tuple[int, str]: ...

    def create_aviso(self, form: dict[str, Any]) -> int | None: ...

    def materials_used(self, ot_id: int) -> list[dict[str, Any]]: ...

    def add_material_used(
        self,
        ot_id: int,
        *,
        material_id: int,
        cantidad: Decimal,
        comentario: str = "",
        activo_id: int | None = None,
    ) -> int: ...

    def iter_materials(self, q: str = "") -> Iterator[dict[str, Any]]: ...
