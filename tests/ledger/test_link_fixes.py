"""Links: a conflict resolution is never lost to a daemon's older copy, and a link never
changes partner (found in review)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.ledger.models import Link
from syncd.ledger.store import Ledger, LinkTaken


def a_link(cm_id: str = "5", mt_id: str = "1005", title: str = "Bomba") -> Link:
    return Link(
        "work_orders",
        cm_id,
        mt_id,
        base_cm={"title": title},
        base_mt={"title": title},
        cm_seen={"title": title},
        mt_seen={"title": title},
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def test_a_resolution_made_while_the_daemon_holds_the_link_survives_its_save(path: Path) -> None:
    daemon, operator = Ledger.open(path), Ledger.open(path)
    try:
        daemon.save_link(a_link())
        conflict = daemon.record_conflict(
            stream="work_orders",
            cm_id="5",
            mt_id="1005",
            field="title",
            base="Bomba",
            cm_value="Bomba A",
            mt_value="Bomba B",
            policy="manual",
            status="open",
        )
        held = daemon.get_link("work_orders", cm_id="5")  # the daemon reads the pair ...
        assert held is not None and held.dirty is False
        # ... the operator decides meanwhile (another process: `syncd conflicts resolve`) ...
        operator.resolve_conflict(conflict.id, resolution="clickmaint", value=None, by="ana")
        # ... and the daemon saves its copy at the end of the pair
        held.cm_seen = {"title": "Bomba A"}
        held.dirty = False
        daemon.save_link(held)

        after = operator.get_link("work_orders", cm_id="5")
        assert after is not None
        assert after.dirty is True  # the next cycle still applies the decision
        assert after.cm_seen == {"title": "Bomba A"}  # the rest of the daemon's save landed

        # a pass that read the link after the decision clears the mark as usual
        after.dirty = False
        daemon.save_link(after)
        cleared = operator.get_link("work_orders", cm_id="5")
        assert cleared is not None and cleared.dirty is False
    finally:
        daemon.close()
        operator.close()


def test_the_daemons_own_dirty_marks_are_saved_as_given(path: Path) -> None:
    ledger = Ledger.open(path)
    try:
        link = ledger.save_link(a_link())
        link.dirty = True
        ledger.save_link(link)
        link.dirty = False
        ledger.save_link(link)  # same read, nothing marked from outside: cleared
        stored = ledger.get_link("work_orders", cm_id="5")
        assert stored is not None and stored.dirty is False
    finally:
        ledger.close()


def test_a_work_order_already_linked_is_not_re_pointed_to_another_ot(path: Path) -> None:
    ledger = Ledger.open(path)
    try:
        ledger.save_link(a_link("5", "1005"))
        with pytest.raises(
            LinkTaken, match="Click Maint 5 is already linked to mantenimiento 1005"
        ):
            ledger.save_link(a_link("5", "2000"))
        assert isinstance(LinkTaken("x"), sqlite3.IntegrityError)
        kept = ledger.get_link("work_orders", cm_id="5")
        assert kept is not None and kept.mt_id == "1005"
        assert ledger.get_link("work_orders", mt_id="2000") is None
    finally:
        ledger.close()


def test_an_ot_already_linked_is_not_given_a_second_work_order(path: Path) -> None:
    ledger = Ledger.open(path)
    try:
        ledger.save_link(a_link("5", "1005"))
        with pytest.raises(
            LinkTaken, match="mantenimiento 1005 is already linked to Click Maint 5"
        ):
            ledger.save_link(a_link("6", "1005"))
        assert ledger.get_link("work_orders", cm_id="6") is None
    finally:
        ledger.close()


def test_updating_an_existing_link_and_other_streams_still_work(path: Path) -> None:
    ledger = Ledger.open(path)
    try:
        ledger.save_link(a_link("5", "1005"))
        ledger.save_link(a_link("5", "1005", title="Bomba nueva"))  # same pair: an update
        stored = ledger.get_link("work_orders", cm_id="5")
        assert stored is not None and stored.base_cm == {"title": "Bomba nueva"}
        ledger.save_link(Link("requests", "5", "2000"))  # ids are unique per stream only
        assert ledger.count_links() == 2
    finally:
        ledger.close()
