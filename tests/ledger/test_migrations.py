"""Every migration applies on top of every older schema, with data in it, and keeps the data."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.ledger.db import connect, migrate, pending_migrations, schema_version
from syncd.ledger.migrations import MIGRATIONS
from syncd.ledger.models import Fact, Link
from syncd.ledger.store import Ledger

NAMES = [m.name for m in MIGRATIONS._migrations]


def test_migrations_are_named_in_order() -> None:
    assert sorted(NAMES) == NAMES
    assert NAMES[0] == "m001_core"


@pytest.mark.parametrize(
    "stop_before", [*NAMES[1:], None], ids=lambda n: f"upgrade-from-before-{n}"
)
def test_upgrade_from_every_older_version_keeps_data(
    tmp_path: Path, stop_before: str | None
) -> None:
    path = tmp_path / "ledger.db"
    db = connect(path)
    migrate(db, path, stop_before=stop_before)
    applied = schema_version(db)
    db.conn.close()
    # fill the old schema the way code of that era wrote it (only m001 columns)
    old = connect(path)
    now = "2026-01-01T00:00:00.000Z"
    old.execute(
        "INSERT INTO links (stream, cm_id, mt_id, base_cm, cm_seen, created_at, updated_at) "
        "VALUES ('work_orders', '5', '1001', ?, ?, ?, ?)",
        ('{"title": "Ñ"}', '{"title": "Ñ"}', now, now),
    )
    old.execute(
        "INSERT INTO outbox (token, stream, op, source_side, source_id, target_side, state, "
        "created_at, updated_at) VALUES ('abc123', 'work_orders', 'create', 'cm', '6', 'mt', "
        "'pending', ?, ?)",
        (now, now),
    )
    old.execute(
        "INSERT INTO history (at, stream, cm_id, mt_id, action) "
        "VALUES (?, 'work_orders', '5', '1001', 'created_mt')",
        (now,),
    )
    old.execute(
        "INSERT INTO cursors VALUES ('work_orders', 'cm_watermark', '2026-01-01T00:00:00Z', ?)",
        (now,),
    )
    old.conn.close()
    upgraded = Ledger.open(path)  # migrates to the newest
    try:
        assert pending_migrations(upgraded.db) == []
        assert schema_version(upgraded.db)[: len(applied)] == applied
        link = upgraded.get_link("work_orders", mt_id="1001")
        assert link is not None and link.base_cm == {"title": "Ñ"} and link.marker == ""
        assert (link.dirty, link.dirty_seq) == (False, 0)
        assert upgraded.live_intents("work_orders")[0].source_id == "6"
        assert upgraded.history(cm_id="5")[0].action == "created_mt"
        assert upgraded.get_cursor("work_orders", "cm_watermark") == "2026-01-01T00:00:00Z"
        upgraded.save_fact(Fact("part_usage", "cm", "9", "usage", "mirrored"))
        assert upgraded.fact_counts("part_usage") == {"mirrored": 1}
    finally:
        upgraded.close()


def test_readonly_open_refuses_an_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    db = connect(path)
    migrate(db, path, stop_before=NAMES[-1])
    db.conn.close()
    from syncd.ledger.db import LedgerError

    with pytest.raises(LedgerError, match="older schema"):
        Ledger.open(path, readonly=True)


def test_unique_ids_on_both_sides(tmp_path: Path) -> None:
    import sqlite3

    ledger = Ledger.open(tmp_path / "l.db")
    ledger.save_link(Link("work_orders", "1", "100"))
    with pytest.raises(sqlite3.IntegrityError):
        ledger.save_link(Link("work_orders", "2", "100"))  # one OT, two work orders: refused
    with pytest.raises(sqlite3.IntegrityError):
        ledger.save_link(Link("work_orders", "1", "200"))  # one work order, two OTs: refused
    link = ledger.get_link("work_orders", cm_id="1")
    assert link is not None and link.mt_id == "100"
    ledger.close()


def test_concurrent_writers_do_not_fail_with_database_locked(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: a read-modify-write in two processes/threads waits instead of failing."""
    import threading

    path = tmp_path / "l.db"
    Ledger.open(path).close()
    errors: list[Exception] = []

    def worker(n: int) -> None:
        ledger = Ledger.open(path)
        try:
            for i in range(40):
                with ledger.transaction():
                    value = int(ledger.get_meta("counter", 0))
                    ledger.set_meta("counter", value + 1)
                ledger.record("work_orders", "tick", cm_id=f"{n}-{i}")
        except Exception as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)
        finally:
            ledger.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ledger = Ledger.open(path)
    assert ledger.get_meta("counter") == 160
    ledger.close()
