"""Scope filters and origin decisions (`syncd.engine.plan`), table-driven.

Scope decides which records syncd may touch at all; a wrong answer either leaks records the
operator excluded or silently stops mirroring ones they expect, so every setting is pinned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.config import ScopeSection
from syncd.engine.plan import Origin, cm_scope, mt_scope, origin_of
from syncd.engine.records import REQUEST, WORK_ORDER

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def cm(**fields: Any) -> dict[str, Any]:
    return {"type": "reactive", "_updated_at": "2026-05-01T00:00:00Z", **fields}


def mt(**fields: Any) -> dict[str, Any]:
    return {
        "type": "NO_PROGRAMADA",
        "location": 3,
        "status": "PROGRAMADA",
        "_start": "2026-06-02T08:00:00Z",
        **fields,
    }


@pytest.mark.parametrize(
    ("scope", "record", "in_scope", "reason"),
    [
        ({}, cm(), True, ""),
        ({"cm_types": ["preventive"]}, cm(), False, "type reactive not in scope.cm_types"),
        ({"cm_types": ["preventive"]}, cm(type="preventive"), True, ""),
        ({"not_before": "2026-05-02T00:00:00Z"}, cm(), False, "before scope.not_before"),
        ({"not_before": "2026-04-30T00:00:00+02:00"}, cm(), True, ""),
        # the same instant written in another zone is still "not before"
        ({"not_before": "2026-05-01T02:00:00+02:00"}, cm(), True, ""),
    ],
)
def test_click_maint_scope(scope: dict, record: dict, in_scope: bool, reason: str) -> None:
    decision = cm_scope(record, ScopeSection(**scope))
    assert decision.in_scope is in_scope
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("scope", "record", "in_scope", "reason", "recheck_at"),
    [
        ({}, mt(), True, "", None),
        ({"mt_tipos": ["correctiva"]}, mt(), False, "tipo NO_PROGRAMADA not in", None),
        ({"mt_tipos": ["CORRECTIVA"]}, mt(type="CORRECTIVA"), True, "", None),
        ({"mt_ubicaciones": [4, 5]}, mt(), False, "ubicacion not in scope", None),
        ({"mt_ubicaciones": [3]}, mt(), True, "", None),
        # preventive work far in the future waits, and says when to look again
        (
            {"preventive_horizon_days": 30},
            mt(type="PREVENTIVA", _start="2026-08-01T08:00:00Z"),
            False,
            "beyond the 30-day horizon",
            "2026-07-02T08:00:00Z",
        ),
        (
            {"preventive_horizon_days": 30},
            mt(type="PREVENTIVA", _start="2026-06-20T08:00:00Z"),
            True,
            "",
            None,
        ),
        # the horizon only concerns preventive OTs, and None switches it off
        ({"preventive_horizon_days": 1}, mt(_start="2027-01-01T00:00:00Z"), True, "", None),
        (
            {"preventive_horizon_days": None},
            mt(type="PREVENTIVA", _start="2030-01-01T00:00:00Z"),
            True,
            "",
            None,
        ),
        # not_before leaves old *closed* OTs alone, never open ones (they still need work)
        (
            {"not_before": "2026-06-10T00:00:00Z"},
            mt(status="REALIZADA"),
            False,
            "closed and planned before",
            None,
        ),
        ({"not_before": "2026-06-10T00:00:00Z"}, mt(status="CANCELADA"), False, "closed", None),
        ({"not_before": "2026-06-10T00:00:00Z"}, mt(status="EJECUCION"), True, "", None),
        ({"not_before": "2026-06-01T00:00:00Z"}, mt(status="REALIZADA"), True, "", None),
    ],
)
def test_mantenimiento_scope(
    scope: dict, record: dict, in_scope: bool, reason: str, recheck_at: str | None
) -> None:
    decision = mt_scope(record, ScopeSection(**scope), NOW)
    assert decision.in_scope is in_scope
    assert reason in decision.reason
    assert decision.recheck_at == recheck_at


@pytest.mark.parametrize(
    ("marker", "this_side", "kind", "origin"),
    [
        (None, "cm", WORK_ORDER, Origin.NEW),
        ({"source_side": "mt", "source_id": "4", "token": "ab12"}, "cm", WORK_ORDER, Origin.OURS),
        # a marker naming this very side is a copy-paste by a user, not a create of ours
        ({"source_side": "cm", "source_id": "4", "token": "ab12"}, "cm", WORK_ORDER, Origin.NEW),
        # a request's marker copied into the work order Click Maint made from it
        (
            {"source_side": "mt", "source_id": "4", "token": "ab12", "kind": REQUEST},
            "cm",
            WORK_ORDER,
            Origin.NEW,
        ),
        (
            {"source_side": "mt", "source_id": "4", "token": "ab12", "kind": REQUEST},
            "cm",
            REQUEST,
            Origin.OURS,
        ),
    ],
)
def test_origin_of(marker: dict | None, this_side: str, kind: str, origin: Origin) -> None:
    found, parsed = origin_of({"_marker": marker}, this_side=this_side, kind=kind)
    assert found is origin
    assert (parsed is not None) is (origin is Origin.OURS)
