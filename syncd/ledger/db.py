"""Opening the ledger: WAL, synchronous=FULL, busy timeout, `BEGIN IMMEDIATE`, migrations.

Why each setting: WAL lets `syncd status` read while the daemon writes; FULL makes a commit
survive power loss (a lost link after a remote create means a duplicate on the next run);
`BEGIN IMMEDIATE` takes the write lock up front so the busy timeout applies, whereas a deferred
transaction that upgrades to a write fails at once with "database is locked".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlite_utils import Database

from .migrations import MIGRATIONS

BUSY_TIMEOUT_SECONDS = 30.0


class LedgerError(Exception):
    """The ledger cannot be opened or is not in a state we can use."""


def connect(path: Path | str, *, readonly: bool = False) -> Database:
    if str(path) == ":memory:":
        conn = sqlite3.connect(":memory:", timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    else:
        path = Path(path)
        if readonly:
            if not path.exists():
                raise LedgerError(f"no ledger at {path} (has syncd run yet?)")
            uri = f"file:{path}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    # Transactions are explicit (BEGIN IMMEDIATE); autocommit otherwise.
    conn.isolation_level = None
    db = Database(conn)
    if not readonly and str(path) != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    db.execute("PRAGMA foreign_keys=ON")
    return db


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A write transaction that holds the write lock from its first statement."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    else:
        db.execute("COMMIT")


@contextlib.contextmanager
def _migration_lock(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".migrate-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_memory_lock = threading.Lock()


def migrate(db: Database, path: Path | str, *, stop_before: str | None = None) -> list[str]:
    """Apply pending migrations (serialised across processes by a lock file)."""
    lock = contextlib.nullcontext() if str(path) == ":memory:" else _migration_lock(Path(path))
    with lock, _memory_lock:
        pending = [m.name for m in MIGRATIONS.pending(db)]
        if pending:
            MIGRATIONS.apply(db, stop_before=stop_before)
        return pending


def schema_version(db: Database) -> list[str]:
    return [m.name for m in MIGRATIONS.applied(db)]


def pending_migrations(db: Database) -> list[str]:
    return [m.name for m in MIGRATIONS.pending(db)]
