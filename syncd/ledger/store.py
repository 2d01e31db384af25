"""The ledger's API: every read and write the rest of syncd does against SQLite.

Methods that write join the caller's transaction when one is open (`with ledger.transaction():`)
and otherwise run in their own `BEGIN IMMEDIATE` transaction, so a caller can make "link +
intent done + history" one atomic commit, which is what makes creates crash-safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ..locks import pid_alive
from ..redact import redact
from .db import connect, immediate, migrate, pending_migrations
from .models import (
    OPERATOR_HOLD,
    Conflict,
    Fact,
    HistoryEntry,
    Intent,
    Link,
    Quarantined,
    Run,
    iso_ms,
    utcnow,
)

LIVE_INTENT_STATES = ("pending", "sent", "unknown")


class LinkTaken(sqlite3.IntegrityError):
    """A save would give a linked record a second partner (links never change partner)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    return json.loads(text)


class Ledger:
    def __init__(self, db: Database, path: Path | str) -> None:
        self.db = db
        self.path = path

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> Ledger:
        db = connect(path, readonly=readonly)
        if not readonly:
            migrate(db, path)
        elif pending_migrations(db):
            from .db import LedgerError

            raise LedgerError(
                f"ledger {path} uses an older schema; it is upgraded the next time the daemon "
                "or any writing command runs"
            )
        return cls(db, path)

    def close(self) -> None:
        self.db.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.db.conn.in_transaction:
            yield
            return
        with immediate(self.db):
            yield

    def _write(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self.db.execute(sql, params)

    def _rows(self, sql: str, params: Any = ()) -> Iterator[dict[str, Any]]:
        cursor = self.db.execute(sql, params)
        names = [c[0] for c in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def _row(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        return next(self._rows(sql, params), None)

    def backup_to(self, target: Database) -> None:
        self.db.conn.backup(target.conn)

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._row("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else _loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        self._write(
            "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (key, _dumps(value), utcnow()),
        )

    # -- links ----------------------------------------------------------------------------
    @staticmethod
    def _link(row: dict[str, Any]) -> Link:
        return Link(
            stream=row["stream"],
            cm_id=row["cm_id"],
            mt_id=row["mt_id"],
            base_cm=_loads(row["base_cm"]),
            base_mt=_loads(row["base_mt"]),
            cm_seen=_loads(row["cm_seen"]),
            mt_seen=_loads(row["mt_seen"]),
            cm_hash=row["cm_hash"],
            mt_hash=row["mt_hash"],
            cm_updated_at=row["cm_updated_at"],
            mt_read_at=row["mt_read_at"],
            state=row["state"],
            mt_open=bool(row["mt_open"]),
            dirty=bool(row["dirty"]),
            dirty_seq=int(row.get("dirty_seq") or 0),
            origin=row["origin"],
            marker=row.get("marker", "") or "",
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def get_link(
        self, stream: str, *, cm_id: str | None = None, mt_id: str | None = None
    ) -> Link | None:
        if cm_id is not None:
            row = self._row("SELECT * FROM links WHERE stream = ? AND cm_id = ?", (stream, cm_id))
        elif mt_id is not None:
            row = self._row("SELECT * FROM links WHERE stream = ? AND mt_id = ?", (stream, mt_id))
        else:
            raise ValueError("give cm_id or mt_id")
        return None if row is None else self._link(row)

    def save_link(self, link: Link) -> Link:
        """Insert a new link or update the existing one (same `cm_id` and `mt_id`).

        A link never changes partner: saving a link whose Click Maint id is already linked to
        another OT, or whose OT is already linked to another work order, raises `LinkTaken`
        (re-pointing a link silently would leave one record unsynced and mirror the other onto
        the wrong partner).

        `dirty` is written as given unless the row was marked dirty from outside the cycle
        (`resolve_conflict`) after `link` was read (`dirty_seq` moved): that mark is kept, so
        a decision taken while the daemon held the link is not lost.
        """
        now = utcnow()
        link.updated_at = now
        if not link.created_at:
            link.created_at = now
        values = (
            _dumps(link.base_cm),
            _dumps(link.base_mt),
            _dumps(link.cm_seen),
            _dumps(link.mt_seen),
            link.cm_hash,
            link.mt_hash,
            link.cm_updated_at,
            link.mt_read_at,
            link.state,
            int(link.mt_open),
            link.origin,
            link.marker,
        )
        with self.transaction():
            by_cm = self._row(
                "SELECT mt_id, dirty_seq FROM links WHERE stream = ? AND cm_id = ?",
                (link.stream, link.cm_id),
            )
            by_mt = self._row(
                "SELECT cm_id FROM links WHERE stream = ? AND mt_id = ?",
                (link.stream, link.mt_id),
            )
            if by_cm is not None and by_cm["mt_id"] != link.mt_id:
                raise LinkTaken(
                    f"{link.stream}: Click Maint {link.cm_id} is already linked to "
                    f"mantenimiento {by_cm['mt_id']}; refusing to link it to {link.mt_id}"
                )
            if by_mt is not None and by_mt["cm_id"] != link.cm_id:
                raise LinkTaken(
                    f"{link.stream}: mantenimiento {link.mt_id} is already linked to "
                    f"Click Maint {by_mt['cm_id']}; refusing to link it to {link.cm_id}"
                )
            if by_cm is None:
                self.db.execute(
                    """
                    INSERT INTO links (stream, cm_id, mt_id, base_cm, base_mt, cm_seen, mt_seen,
                                       cm_hash, mt_hash, cm_updated_at, mt_read_at, state,
                                       mt_open, origin, marker, dirty, dirty_seq, created_at,
                                       updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    (
                        link.stream,
                        link.cm_id,
                        link.mt_id,
                        *values,
                        int(link.dirty),
                        link.dirty_seq,
                        link.created_at,
                        link.updated_at,
                    ),
                )
            else:
                marked_since_read = int(by_cm["dirty_seq"]) != link.dirty_seq
                self.db.execute(
                    """
                    UPDATE links SET base_cm = ?, base_mt = ?, cm_seen = ?, mt_seen = ?,
                        cm_hash = ?, mt_hash = ?, cm_updated_at = ?, mt_read_at = ?, state = ?,
                        mt_open = ?, origin = ?, marker = ?, dirty = ?, updated_at = ?
                    WHERE stream = ? AND cm_id = ?
                    """,
                    (
                        *values,
                        int(link.dirty or marked_since_read),
                        link.updated_at,
                        link.stream,
                        link.cm_id,
                    ),
                )
        return link

    def iter_links(
        self,
        stream: str,
        *,
        state: str | None = "active",
        mt_open: bool | None = None,
        dirty: bool | None = None,
        updated_since: str | None = None,
        chunk: int = 500,
    ) -> Iterator[Link]:
        """Links in insertion order, read in chunks: memory stays flat however many there are,
        and callers may update links while iterating.  `updated_since` (our clock, as
        `utcnow()` writes it): only links saved at or after that instant."""
        sql = "SELECT rowid AS _rowid, * FROM links WHERE stream = ? AND rowid > ?"
        params: list[Any] = [stream]
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        if mt_open is not None:
            sql += " AND mt_open = ?"
            params.append(int(mt_open))
        if dirty is not None:
            sql += " AND dirty = ?"
            params.append(int(dirty))
        if updated_since is not None:
            sql += " AND updated_at >= ?"
            params.append(updated_since)
        sql += " ORDER BY rowid LIMIT ?"
        last = 0
        while True:
            rows = list(self._rows(sql, [params[0], last, *params[1:], chunk]))
            if not rows:
                return
            for row in rows:
                last = row.pop("_rowid")
                yield self._link(row)
            if len(rows) < chunk:
                return

    def count_links(self, stream: str | None = None, state: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM links WHERE 1=1"
        params: list[Any] = []
        if stream:
            sql += " AND stream = ?"
            params.append(stream)
        if state:
            sql += " AND state = ?"
            params.append(state)
        return int(self.db.execute(sql, params).fetchone()[0])

    def find_links(self, text: str, limit: int = 50) -> list[Link]:
        like = f"%{text}%"
        rows = self._rows(
            "SELECT * FROM links WHERE cm_id = ? OR mt_id = ? OR cm_seen LIKE ? OR mt_seen LIKE ? "
            "ORDER BY stream, CAST(cm_id AS INTEGER) LIMIT ?",
            (text, text, like, like, limit),
        )
        return [self._link(r) for r in rows]

    # -- cursors ----------------------------------------------------------------------------
    def get_cursor(self, stream: str, name: str, default: str | None = None) -> str | None:
        row = self._row("SELECT value FROM cursors WHERE stream = ? AND name = ?", (stream, name))
        return default if row is None else str(row["value"])

    def set_cursor(self, stream: str, name: str, value: str) -> None:
        self._write(
            "INSERT INTO cursors (stream, name, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (stream, name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (stream, name, value, utcnow()),
        )

    def delete_cursor(self, stream: str, name: str) -> None:
        self._write("DELETE FROM cursors WHERE stream = ? AND name = ?", (stream, name))

    def cursors(self, stream: str | None = None) -> list[dict[str, Any]]:
        if stream:
            return list(
                self._rows("SELECT * FROM cursors WHERE stream = ? ORDER BY name", (stream,))
            )
        return list(self._rows("SELECT * FROM cursors ORDER BY stream, name"))

    # -- outbox -----------------------------------------------------------------------------
    @staticmethod
    def _intent(row: dict[str, Any]) -> Intent:
        return Intent(
            id=row["id"],
            token=row["token"],
            stream=row["stream"],
            op=row["op"],
            source_side=row["source_side"],
            source_id=row["source_id"],
            target_side=row["target_side"],
            payload=_loads(row["payload"]),
            state=row["state"],
            attempts=row["attempts"],
            result_id=row["result_id"],
            high_water=row["high_water"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def add_intent(
        self,
        *,
        stream: str,
        op: str,
        source_side: str,
        source_id: str,
        target_side: str,
        payload: dict[str, Any] | None = None,
        high_water: str | None = None,
        token: str | None = None,
    ) -> Intent:
        """Journal a create before it is sent; returns the live intent if one already exists.

        The look and the insert share one write transaction, so two writers (the daemon and
        a manual resync) cannot both decide that no intent exists yet.
        """
        now = utcnow()
        token = token or secrets.token_hex(6)
        with self.transaction():
            existing = self.live_intent(stream, op, source_side, source_id)
            if existing is not None:
                return existing
            self.db.execute(
                "INSERT INTO outbox (token, stream, op, source_side, source_id, target_side, "
                "payload, state, attempts, high_water, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
                (
                    token,
                    stream,
                    op,
                    source_side,
                    source_id,
                    target_side,
                    _dumps(redact(payload or {})),
                    high_water,
                    now,
                    now,
                ),
            )
        intent = self.intent_by_token(token)
        assert intent is not None
        return intent

    def live_intent(self, stream: str, op: str, source_side: str, source_id: str) -> Intent | None:
        row = self._row(
            "SELECT * FROM outbox WHERE stream = ? AND op = ? AND source_side = ? "
            "AND source_id = ? AND state IN ('pending', 'sent', 'unknown')",
            (stream, op, source_side, source_id),
        )
        return None if row is None else self._intent(row)

    def intent_by_token(self, token: str) -> Intent | None:
        row = self._row("SELECT * FROM outbox WHERE token = ?", (token,))
        return None if row is None else self._intent(row)

    def live_intents(self, stream: str | None = None) -> list[Intent]:
        sql = "SELECT * FROM outbox WHERE state IN ('pending', 'sent', 'unknown')"
        params: list[Any] = []
        if stream:
            sql += " AND stream = ?"
            params.append(stream)
        return [self._intent(r) for r in self._rows(sql + " ORDER BY id", params)]

    def mark_intent(
        self,
        token: str,
        state: str,
        *,
        result_id: str | None = None,
        error: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        self._write(
            "UPDATE outbox SET state = ?, result_id = COALESCE(?, result_id), "
            "last_error = COALESCE(?, last_error), attempts = attempts + ?, updated_at = ? "
            "WHERE token = ?",
            (state, result_id, error, int(count_attempt), utcnow(), token),
        )

    # -- conflicts --------------------------------------------------------------------------
    @staticmethod
    def _conflict(row: dict[str, Any]) -> Conflict:
        return Conflict(
            id=row["id"],
            stream=row["stream"],
            cm_id=row["cm_id"],
            mt_id=row["mt_id"],
            field=row["field"],
            base=_loads(row["base"]),
            cm_value=_loads(row["cm_value"]),
            mt_value=_loads(row["mt_value"]),
            policy=row["policy"],
            status=row["status"],
            resolution=row["resolution"],
            resolved_value=_loads(row["resolved_value"]),
            resolved_by=row["resolved_by"],
            resolved_at=row["resolved_at"],
            applied_at=row["applied_at"],
            run_id=row["run_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def record_conflict(
        self,
        *,
        stream: str,
        cm_id: str,
        mt_id: str,
        field: str,
        base: Any,
        cm_value: Any,
        mt_value: Any,
        policy: str,
        status: str,
        resolution: str | None = None,
        run_id: str | None = None,
    ) -> Conflict:
        """Log a conflict; an open one for the same field is refreshed instead of duplicated."""
        now = utcnow()
        with self.transaction():
            open_row = self._row(
                "SELECT id FROM conflicts WHERE stream = ? AND cm_id = ? AND field = ? "
                "AND status = 'open'",
                (stream, cm_id, field),
            )
            if open_row is not None and status == "open":
                self.db.execute(
                    "UPDATE conflicts SET cm_value = ?, mt_value = ?, updated_at = ? WHERE id = ?",
                    (_dumps(cm_value), _dumps(mt_value), now, open_row["id"]),
                )
                conflict_id = open_row["id"]
            else:
                cursor = self.db.execute(
                    "INSERT INTO conflicts (stream, cm_id, mt_id, field, base, cm_value, "
                    "mt_value, policy, status, resolution, resolved_by, resolved_at, applied_at, "
                    "run_id, created_at, updated_at) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stream,
                        cm_id,
                        mt_id,
                        field,
                        _dumps(base),
                        _dumps(cm_value),
                        _dumps(mt_value),
                        policy,
                        status,
                        resolution,
                        "syncd" if status != "open" else None,
                        now if status != "open" else None,
                        now if status != "open" else None,
                        run_id,
                        now,
                        now,
                    ),
                )
                conflict_id = cursor.lastrowid
        conflict = self.get_conflict(int(conflict_id))
        assert conflict is not None
        return conflict

    def get_conflict(self, conflict_id: int) -> Conflict | None:
        row = self._row("SELECT * FROM conflicts WHERE id = ?", (conflict_id,))
        return None if row is None else self._conflict(row)

    def list_conflicts(
        self, *, status: str | None = "open", stream: str | None = None, limit: int = 1000
    ) -> list[Conflict]:
        sql = "SELECT * FROM conflicts WHERE 1=1"
        params: list[Any] = []
        if status:
            sql += " AND status = ?"
            params.append(status)
        if stream:
            sql += " AND stream = ?"
            params.append(stream)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [self._conflict(r) for r in self._rows(sql, params)]

    def open_conflicts_for(self, stream: str, cm_id: str) -> dict[str, Conflict]:
        rows = self._rows(
            "SELECT * FROM conflicts WHERE stream = ? AND cm_id = ? "
            "AND status IN ('open', 'resolved')",
            (stream, cm_id),
        )
        return {r["field"]: self._conflict(r) for r in rows}

    def count_conflicts(self, status: str = "open", stream: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM conflicts WHERE status = ?"
        params: list[Any] = [status]
        if stream:
            sql += " AND stream = ?"
            params.append(stream)
        return int(self.db.execute(sql, params).fetchone()[0])

    def resolve_conflict(self, conflict_id: int, *, resolution: str, value: Any, by: str) -> None:
        """Operator decision; the engine applies it on the next cycle (status -> applied)."""
        with self.transaction():
            row = self._row("SELECT * FROM conflicts WHERE id = ?", (conflict_id,))
            if row is None:
                raise KeyError(f"no conflict #{conflict_id}")
            if row["status"] != "open":
                raise ValueError(f"conflict #{conflict_id} is {row['status']}, not open")
            self.db.execute(
                "UPDATE conflicts SET status = 'resolved', resolution = ?, resolved_value = ?, "
                "resolved_by = ?, resolved_at = ?, updated_at = ? WHERE id = ?",
                (resolution, _dumps(value), by, utcnow(), utcnow(), conflict_id),
            )
            # dirty_seq: a daemon that read the link before this commit keeps it dirty when
            # it saves its copy (save_link)
            self.db.execute(
                "UPDATE links SET dirty = 1, dirty_seq = dirty_seq + 1, updated_at = ? "
                "WHERE stream = ? AND cm_id = ?",
                (utcnow(), row["stream"], row["cm_id"]),
            )

    def mark_conflict_applied(self, conflict_id: int) -> None:
        now = utcnow()
        self._write(
            "UPDATE conflicts SET status = 'applied', applied_at = ?, updated_at = ? WHERE id = ?",
            (now, now, conflict_id),
        )

    def close_conflict(self, conflict_id: int, resolution: str) -> None:
        """The two sides came to agree on their own: the conflict is moot."""
        now = utcnow()
        self._write(
            "UPDATE conflicts SET status = 'moot', resolution = ?, resolved_by = 'syncd', "
            "resolved_at = ?, updated_at = ? WHERE id = ?",
            (resolution, now, now, conflict_id),
        )

    # -- quarantine ---------------------------------------------------------------------------
    def quarantine(
        self,
        stream: str,
        side: str,
        record_id: str,
        reason: str,
        detail: str = "",
        *,
        base_delay: float = 300.0,
        max_delay: float = 86400.0,
    ) -> Quarantined:
        """Put a record aside; each further failure doubles the wait before the next retry."""
        now = datetime.now(UTC)
        with self.transaction():
            row = self._row(
                "SELECT attempts, first_seen FROM quarantine WHERE stream = ? AND side = ? "
                "AND record_id = ?",
                (stream, side, record_id),
            )
            attempts = 1 if row is None else int(row["attempts"]) + 1
            first_seen = utcnow() if row is None else row["first_seen"]
            delay = min(max_delay, base_delay * (2 ** (attempts - 1)))
            retry_at = iso_ms(now + timedelta(seconds=delay))
            self.db.execute(
                "INSERT INTO quarantine (stream, side, record_id, reason, detail, attempts, "
                "first_seen, last_seen, next_retry_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (stream, side, record_id) DO UPDATE SET reason = excluded.reason, "
                "detail = excluded.detail, attempts = excluded.attempts, "
                "last_seen = excluded.last_seen, next_retry_at = excluded.next_retry_at",
                (
                    stream,
                    side,
                    record_id,
                    reason,
                    detail[:2000],
                    attempts,
                    first_seen,
                    utcnow(),
                    retry_at,
                ),
            )
        item = self.get_quarantined(stream, side, record_id)
        assert item is not None
        return item

    def get_quarantined(self, stream: str, side: str, record_id: str) -> Quarantined | None:
        row = self._row(
            "SELECT * FROM quarantine WHERE stream = ? AND side = ? AND record_id = ?",
            (stream, side, record_id),
        )
        return None if row is None else Quarantined(**row)

    def release(self, stream: str, side: str, record_id: str) -> bool:
        cursor = self._write(
            "DELETE FROM quarantine WHERE stream = ? AND side = ? AND record_id = ?",
            (stream, side, record_id),
        )
        return cursor.rowcount > 0

    def hold(self, stream: str, side: str, record_id: str, reason: str) -> Quarantined:
        """Quarantine with no automatic retry: only `syncd quarantine retry` releases it
        (for records where a retry could do harm, e.g. re-send a create that may exist)."""
        with self.transaction():  # never visible as an ordinary, retryable quarantine
            item = self.quarantine(stream, side, record_id, reason)
            self._write(
                "UPDATE quarantine SET next_retry_at = ? WHERE stream = ? AND side = ? AND "
                "record_id = ?",
                (OPERATOR_HOLD, stream, side, record_id),
            )
        return replace(item, next_retry_at=OPERATOR_HOLD)

    def make_due(
        self, stream: str | None = None, side: str | None = None, record_id: str | None = None
    ) -> int:
        """An operator's "retry now": the next cycle retries these instead of waiting out the
        back-off (attempts are kept, so a record still bad backs off from where it was)."""
        sql = "UPDATE quarantine SET next_retry_at = ? WHERE 1 = 1"
        params: list[Any] = [utcnow()]
        for column, value in (("stream", stream), ("side", side), ("record_id", record_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return int(self._write(sql, params).rowcount or 0)

    def due_quarantine(self, stream: str, now: str | None = None) -> list[Quarantined]:
        now = now or utcnow()
        rows = self._rows(
            "SELECT * FROM quarantine WHERE stream = ? AND next_retry_at <= ? "
            "ORDER BY next_retry_at",
            (stream, now),
        )
        return [Quarantined(**r) for r in rows]

    def list_quarantine(self, stream: str | None = None) -> list[Quarantined]:
        sql = "SELECT * FROM quarantine"
        params: list[Any] = []
        if stream:
            sql += " WHERE stream = ?"
            params.append(stream)
        return [Quarantined(**r) for r in self._rows(sql + " ORDER BY first_seen", params)]

    def count_quarantine(self, stream: str | None = None) -> int:
        if stream:
            return int(
                self.db.execute(
                    "SELECT COUNT(*) FROM quarantine WHERE stream = ?", (stream,)
                ).fetchone()[0]
            )
        return int(self.db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    # -- history ----------------------------------------------------------------------------
    def record(
        self,
        stream: str,
        action: str,
        *,
        cm_id: str | None = None,
        mt_id: str | None = None,
        run_id: str | None = None,
        **detail: Any,
    ) -> None:
        self._write(
            "INSERT INTO history (at, run_id, stream, cm_id, mt_id, action, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (utcnow(), run_id, stream, cm_id, mt_id, action, _dumps(redact(detail))),
        )

    def history(
        self, *, cm_id: str | None = None, mt_id: str | None = None, limit: int = 500
    ) -> list[HistoryEntry]:
        clauses = []
        params: list[Any] = []
        if cm_id is not None:
            clauses.append("cm_id = ?")
            params.append(cm_id)
        if mt_id is not None:
            clauses.append("mt_id = ?")
            params.append(mt_id)
        if not clauses:
            raise ValueError("give cm_id or mt_id")
        # the newest `limit` actions, oldest first
        sql = f"SELECT * FROM history WHERE {' OR '.join(clauses)} ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = [
            HistoryEntry(**{**r, "detail": _loads(r["detail"])}) for r in self._rows(sql, params)
        ]
        return rows[::-1]

    def transaction_history(self, tx_id: str, limit: int = 500) -> list[HistoryEntry]:
        """Every action on one Click Maint part transaction (detail `tx`), oldest first."""
        rows = self._rows(
            "SELECT * FROM history WHERE json_extract(detail, '$.tx') = ? ORDER BY id DESC LIMIT ?",
            (str(tx_id), limit),
        )
        entries = [HistoryEntry(**{**r, "detail": _loads(r["detail"])}) for r in rows]
        return entries[::-1]

    def count_history(self, action: str | None = None, stream: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM history WHERE 1=1"
        params: list[Any] = []
        if action:
            sql += " AND action = ?"
            params.append(action)
        if stream:
            sql += " AND stream = ?"
            params.append(stream)
        return int(self.db.execute(sql, params).fetchone()[0])

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, stream: str, kind: str) -> str:
        run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self._write(
            "INSERT INTO runs (run_id, stream, kind, started_at, status, pid) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, stream, kind, utcnow(), os.getpid()),
        )
        return run_id

    def finish_run(
        self, run_id: str, status: str, counts: dict[str, Any], error: str | None = None
    ) -> None:
        self._write(
            "UPDATE runs SET ended_at = ?, status = ?, counts = ?, error = ? WHERE run_id = ?",
            (utcnow(), status, _dumps(counts), error, run_id),
        )

    def interrupt_stale_runs(self, pid: int | None = None) -> int:
        """Runs left 'running' by a process that no longer exists are marked interrupted."""
        me = pid if pid is not None else os.getpid()
        rows = list(self._rows("SELECT run_id, pid FROM runs WHERE status = 'running'"))
        dead = [
            r["run_id"]
            for r in rows
            if r["pid"] != me and not (r["pid"] and pid_alive(str(r["pid"])))
        ]
        with self.transaction():
            for run_id in dead:
                self.db.execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = ? WHERE run_id = ?",
                    (utcnow(), run_id),
                )
        return len(dead)

    @staticmethod
    def _run(row: dict[str, Any]) -> Run:
        return Run(**{**row, "counts": _loads(row["counts"])})

    def last_run(self, stream: str, status: str | None = None) -> Run | None:
        sql = "SELECT * FROM runs WHERE stream = ?"
        params: list[Any] = [stream]
        if status:
            sql += " AND status = ?"
            params.append(status)
        row = self._row(sql + " ORDER BY started_at DESC LIMIT 1", params)
        return None if row is None else self._run(row)

    def recent_runs(self, limit: int = 20, stream: str | None = None) -> list[Run]:
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if stream:
            sql += " WHERE stream = ?"
            params.append(stream)
        sql += " ORDER BY started_at DESC LIMIT ?"
        params.append(limit)
        return [self._run(r) for r in self._rows(sql, params)]

    # -- mantenimiento discovery index -----------------------------------------------------
    def mt_index_get(self, mt_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM mt_index WHERE mt_id = ?", (mt_id,))

    def mt_index_set(
        self, mt_id: int, status: str, reason: str = "", next_check_at: str | None = None
    ) -> None:
        self._write(
            "INSERT INTO mt_index (mt_id, status, reason, next_check_at, checked_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (mt_id) DO UPDATE SET status = excluded.status, "
            "reason = excluded.reason, next_check_at = excluded.next_check_at, "
            "checked_at = excluded.checked_at",
            (mt_id, status, reason, next_check_at, utcnow()),
        )

    def mt_index_due(self, now: str, limit: int = 500) -> list[int]:
        rows = self._rows(
            "SELECT mt_id FROM mt_index WHERE status = 'out_of_scope' "
            "AND next_check_at IS NOT NULL AND next_check_at <= ? "
            "ORDER BY next_check_at LIMIT ?",
            (now, limit),
        )
        return [int(r["mt_id"]) for r in rows]

    def mt_index_counts(self) -> dict[str, int]:
        return {
            r["status"]: int(r["n"])
            for r in self._rows("SELECT status, COUNT(*) AS n FROM mt_index GROUP BY status")
        }

    # -- facts (exactly-once records) -------------------------------------------------------
    @staticmethod
    def _fact(row: dict[str, Any]) -> Fact:
        return Fact(**{**row, "detail": _loads(row["detail"])})

    def get_fact(self, stream: str, source_side: str, source_id: str) -> Fact | None:
        row = self._row(
            "SELECT * FROM facts WHERE stream = ? AND source_side = ? AND source_id = ?",
            (stream, source_side, source_id),
        )
        return None if row is None else self._fact(row)

    def save_fact(self, fact: Fact) -> Fact:
        now = utcnow()
        fact.updated_at = now
        if not fact.first_seen:
            fact.first_seen = now
        self._write(
            """
            INSERT INTO facts (stream, source_side, source_id, kind, part_id, part_number,
                               quantity, cm_wo_id, mt_ot_id, target_id, state, reason, detail,
                               first_seen, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (stream, source_side, source_id) DO UPDATE SET
                kind = excluded.kind, part_id = excluded.part_id,
                part_number = excluded.part_number, quantity = excluded.quantity,
                cm_wo_id = excluded.cm_wo_id, mt_ot_id = excluded.mt_ot_id,
                target_id = excluded.target_id, state = excluded.state,
                reason = excluded.reason, detail = excluded.detail,
                updated_at = excluded.updated_at
            """,
            (
                fact.stream,
                fact.source_side,
                fact.source_id,
                fact.kind,
                fact.part_id,
                fact.part_number,
                fact.quantity,
                fact.cm_wo_id,
                fact.mt_ot_id,
                fact.target_id,
                fact.state,
                fact.reason,
                _dumps(redact(fact.detail)),
                fact.first_seen,
                fact.updated_at,
            ),
        )
        return fact

    def facts_in_state(self, stream: str, state: str, limit: int = 1000) -> list[Fact]:
        rows = self._rows(
            "SELECT * FROM facts WHERE stream = ? AND state = ? ORDER BY first_seen LIMIT ?",
            (stream, state, limit),
        )
        return [self._fact(r) for r in rows]

    def fact_counts(self, stream: str) -> dict[str, int]:
        return {
            r["state"]: int(r["n"])
            for r in self._rows(
                "SELECT state, COUNT(*) AS n FROM facts WHERE stream = ? GROUP BY state", (stream,)
            )
        }

    def facts_for_ot(self, mt_ot_id: str) -> list[Fact]:
        rows = self._rows("SELECT * FROM facts WHERE mt_ot_id = ? ORDER BY source_id", (mt_ot_id,))
        return [self._fact(r) for r in rows]
