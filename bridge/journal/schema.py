"""The journal's tables and the versioned migrations that bring an older journal up to date.

``PRAGMA user_version`` holds the schema version. Version 1 is the schema of the first release (it never set
``user_version``, so a journal with tables and version 0 is version 1). Each migration runs once, in order, and
keeps every undelivered event, cursor, last-known value and dead letter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import structlog

from bridge.errors import JournalError

log = structlog.get_logger("bridge.journal")

SCHEMA_VERSION = 3

# Values recently recorded for hubs that match two push channels (Journal.recent): written in the commit of their
# events, kept for a couple of minutes, bounded in rows (schema 3).
RECENT_TABLE = """
CREATE TABLE IF NOT EXISTS recent (
    n INTEGER PRIMARY KEY, hub TEXT NOT NULL, kind TEXT NOT NULL, device_id TEXT NOT NULL, attribute TEXT NOT NULL,
    value TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL
);
"""

TABLES = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL,
    size INTEGER NOT NULL  -- bytes of the UTF-8 body, so accounting never measures text again
);
CREATE TABLE IF NOT EXISTS state (
    hub TEXT NOT NULL, kind TEXT NOT NULL, device_id TEXT NOT NULL, attribute TEXT NOT NULL,
    value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (hub, kind, device_id, attribute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    n INTEGER PRIMARY KEY, sink TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,
    body TEXT NOT NULL, reason TEXT NOT NULL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_sink ON dead_letters (sink, n);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters (time);
-- What a sink's filters remember per attribute (bridge.filters), moved with its cursor; and dead letters sent
-- back into delivery by `hubbridge spool replay`. Both new in this release: CREATE IF NOT EXISTS adds them to an
-- older journal without a migration, and an older release ignores them.
CREATE TABLE IF NOT EXISTS filter_state (
    sink TEXT NOT NULL, hub TEXT NOT NULL, kind TEXT NOT NULL, device_id TEXT NOT NULL, attribute TEXT NOT NULL,
    forwarded TEXT, forwarded_time REAL, pending_seq INTEGER, pending_id TEXT, pending_body TEXT, pending_due REAL,
    PRIMARY KEY (sink, hub, kind, device_id, attribute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replays (
    n INTEGER PRIMARY KEY, sink TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS replays_sink ON replays (sink, n);
CREATE TABLE IF NOT EXISTS hub_meta (hub TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (hub, key)) WITHOUT ROWID;
"""
    + RECENT_TABLE
)


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Sizes in bytes (version 1 counted characters), an index for dead-letter retention, and incremental vacuum.

    Incremental vacuum lets the file shrink once a backlog is delivered; switching an existing file to it needs one
    VACUUM, which rewrites the file (it needs as much free disk again, once).
    """
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE events SET size = length(CAST(body AS BLOB))")
    db.execute("CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters (time)")
    db.execute("COMMIT")
    try:
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("VACUUM")
    except sqlite3.Error as exc:
        # Not fatal: the journal works the same, its file just does not shrink by itself.
        log.warning("could not switch the journal to incremental vacuum", error=str(exc))


def _v2_to_v3(db: sqlite3.Connection) -> None:
    """The ``recent`` table: values recently recorded for a hub, so two push channels still match after a crash.

    Nothing to convert: it starts empty (a journal written before it knows no recent values, as before).
    """
    db.executescript(f"BEGIN IMMEDIATE; {RECENT_TABLE} COMMIT;")


# from-version -> the step to the next version
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def check_version(db: sqlite3.Connection, path: str) -> None:
    """Refuse a journal written by a newer release (its meaning of the tables may differ from ours)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path} was written by a newer hubbridge (schema {version}, this one knows up to "
            f"{SCHEMA_VERSION}); upgrade hubbridge again, or point state_dir elsewhere"
        )


def prepare(db: sqlite3.Connection, path: str) -> None:
    """Create the tables of a new journal, or migrate an older one to :data:`SCHEMA_VERSION`."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    has_tables = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'").fetchone()
    if version == 0 and not has_tables:
        # auto_vacuum must be chosen before the first table exists.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.executescript(TABLES)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return
    if version == 0:
        version = 1
    check_version(db, path)
    while version < SCHEMA_VERSION:
        log.info("upgrading the journal", path=path, from_schema=version, to_schema=version + 1)
        MIGRATIONS[version](db)
        version += 1
        db.execute(f"PRAGMA user_version={version}")
    db.executescript(TABLES)
