"""Versioned schema migrations (sqlite-utils `Migrations`), applied automatically at open.

Rules: never edit a migration that has shipped; add a new one.  Every migration is tested by
`tests/ledger/test_migrations.py`, which builds a ledger at each older version, fills it, and
migrates it to the newest.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

MIGRATIONS = Migrations("syncd")


@MIGRATIONS()
def m001_core(db: Database) -> None:
    """Links, cursors, outbox, conflicts, quarantine, history, runs, meta, mt_index."""
    db.execute(
        """
        CREATE TABLE links (
            stream TEXT NOT NULL,
            cm_id TEXT NOT NULL,
            mt_id TEXT NOT NULL,
            base_cm TEXT NOT NULL DEFAULT '{}',
            base_mt TEXT NOT NULL DEFAULT '{}',
            cm_seen TEXT NOT NULL DEFAULT '{}',
            mt_seen TEXT NOT NULL DEFAULT '{}',
            cm_hash TEXT NOT NULL DEFAULT '',
            mt_hash TEXT NOT NULL DEFAULT '',
            cm_updated_at TEXT,
            mt_read_at TEXT,
            state TEXT NOT NULL DEFAULT 'active',
            mt_open INTEGER NOT NULL DEFAULT 1,
            dirty INTEGER NOT NULL DEFAULT 0,
            origin TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (stream, cm_id)
        ) STRICT
        """
    )
    db.execute("CREATE UNIQUE INDEX links_mt ON links (stream, mt_id)")
    db.execute("CREATE INDEX links_dirty ON links (stream, dirty) WHERE dirty = 1")
    db.execute(
        """
        CREATE TABLE cursors (
            stream TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (stream, name)
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            token TEXT NOT NULL UNIQUE,
            stream TEXT NOT NULL,
            op TEXT NOT NULL,
            source_side TEXT NOT NULL,
            source_id TEXT NOT NULL,
            target_side TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            result_id TEXT,
            high_water TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT
        """
    )
    # At most one live intent per source record: a second create can never be queued.
    db.execute(
        """
        CREATE UNIQUE INDEX outbox_live ON outbox (stream, op, source_side, source_id)
        WHERE state IN ('pending', 'sent', 'unknown')
        """
    )
    db.execute(
        """
        CREATE TABLE conflicts (
            id INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            cm_id TEXT NOT NULL,
            mt_id TEXT NOT NULL,
            field TEXT NOT NULL,
            base TEXT,
            cm_value TEXT,
            mt_value TEXT,
            policy TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',
            resolution TEXT,
            resolved_value TEXT,
            resolved_by TEXT,
            resolved_at TEXT,
            applied_at TEXT,
            run_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT
        """
    )
    db.execute("CREATE INDEX conflicts_status ON conflicts (status, created_at)")
    db.execute("CREATE INDEX conflicts_record ON conflicts (stream, cm_id, field, status)")
    db.execute(
        """
        CREATE TABLE quarantine (
            stream TEXT NOT NULL,
            side TEXT NOT NULL,
            record_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 1,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            next_retry_at TEXT NOT NULL,
            PRIMARY KEY (stream, side, record_id)
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            run_id TEXT,
            stream TEXT NOT NULL,
            cm_id TEXT,
            mt_id TEXT,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        ) STRICT
        """
    )
    db.execute("CREATE INDEX history_cm ON history (cm_id, id) WHERE cm_id IS NOT NULL")
    db.execute("CREATE INDEX history_mt ON history (mt_id, id) WHERE mt_id IS NOT NULL")
    db.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            stream TEXT NOT NULL,
            kind TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL DEFAULT 'running',
            counts TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            pid INTEGER
        ) STRICT
        """
    )
    db.execute("CREATE INDEX runs_stream ON runs (stream, started_at)")
    db.execute(
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE mt_index (
            mt_id INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            next_check_at TEXT,
            checked_at TEXT NOT NULL
        ) STRICT
        """
    )
    db.execute("CREATE INDEX mt_index_due ON mt_index (status, next_check_at)")


@MIGRATIONS()
def m002_facts(db: Database) -> None:
    """Facts: records mirrored exactly once and never updated (part transactions).

    One row per source record, whatever became of it: mirrored (with the id it got on the
    other side), not mirrored (with the reason), waiting (its work order is not linked yet) or
    quarantined.  The primary key is what makes "exactly once" hold across crashes and
    re-reads of overlapping history pages.
    """
    db.execute(
        """
        CREATE TABLE facts (
            stream TEXT NOT NULL,
            source_side TEXT NOT NULL,
            source_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            part_id TEXT,
            part_number TEXT,
            quantity TEXT,
            cm_wo_id TEXT,
            mt_ot_id TEXT,
            target_id TEXT,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}',
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (stream, source_side, source_id)
        ) STRICT
        """
    )
    db.execute("CREATE INDEX facts_state ON facts (stream, state)")
    db.execute("CREATE INDEX facts_ot ON facts (mt_ot_id) WHERE mt_ot_id IS NOT NULL")


@MIGRATIONS()
def m003_link_marker(db: Database) -> None:
    """The marker of the create that made a link, kept in the created record for good.

    It lets a lost or replaced ledger be rebuilt from the servers: every record syncd created
    still names its source.
    """
    db.execute("ALTER TABLE links ADD COLUMN marker TEXT NOT NULL DEFAULT ''")


@MIGRATIONS()
def m004_link_dirty_seq(db: Database) -> None:
    """A counter of the times a link was marked dirty from outside the sync cycle.

    `syncd conflicts resolve` marks a link dirty while the daemon may hold the same link in
    memory; the daemon's save at the end of that pair writes its copy back.  The counter tells
    the save that the row was marked since it was read, so the mark is kept instead of being
    overwritten with the daemon's older `dirty = 0` (`Ledger.save_link`).
    """
    db.execute("ALTER TABLE links ADD COLUMN dirty_seq INTEGER NOT NULL DEFAULT 0")
