"""The durable hand-off between sources and sinks: SQLite in WAL mode (DESIGN 4).

One file in ``state_dir`` holds the event log (monotonic ``seq``), one cursor per sink, the last-known values
the diff uses, dead letters and small per-hub metadata. All SQLite work runs on one dedicated thread so the
event loop never blocks on fsync; appends from many coroutines are grouped into one transaction per commit
window (group commit), and no caller is told "done" before its transaction is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog

from bridge.errors import JournalError, JournalFull
from bridge.events import Event
from bridge.state import StateKey, StateRow

log = structlog.get_logger("bridge.journal")

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body TEXT NOT NULL,
    size INTEGER NOT NULL  -- len(body), so accounting never has to measure text (length() counts characters)
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
CREATE TABLE IF NOT EXISTS hub_meta (hub TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (hub, key)) WITHOUT ROWID;
"""


class Record(NamedTuple):
    """One journalled event as a sink reads it: its sequence number and its JSON line.

    A NamedTuple, not a frozen dataclass: sinks read hundreds of thousands a second and a tuple is built at C
    speed.
    """

    seq: int
    id: str
    body: str

    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass(slots=True, frozen=True)
class DeadLetter:
    sink: str
    seq: int
    id: str
    body: str
    reason: str
    time: float


@dataclass(slots=True)
class _Append:
    events: list[Event]
    state: list[StateRow]
    future: asyncio.Future[None]


class Journal:
    """SQLite-backed event log. Open with :meth:`open`, run :meth:`run` as a task, close with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1024**3,
        synchronous: str = "full",
        commit_window: float = 0.0,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self.commit_window = commit_window
        self.install_id = ""
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._pending: list[_Append] = []
        self._wake = asyncio.Event()
        self._grew: asyncio.Future[None] | None = None
        self._head = 0
        self._bytes = 0
        self._cursors: dict[str, int] = {}
        self._full_logged = False
        self._last_trim = 0.0
        self._closed = False
        self.commits = 0

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._call(self._open_sync)

    def _open_sync(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._db = db
        row = db.execute("SELECT value FROM meta WHERE key='install_id'").fetchone()
        if row is None:
            self.install_id = uuid.uuid4().hex
            db.execute("INSERT INTO meta VALUES ('install_id', ?)", (self.install_id,))
        else:
            self.install_id = row[0]
        self._head = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        stored_head = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        # After a full trim the events table is empty; the head lives on in meta so seqs never restart.
        if stored_head is not None:
            self._head = max(self._head, int(stored_head[0]))
        self._bytes = db.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()[0]
        self._cursors = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(JournalError("the journal closed before this change was committed"))
        self._pending.clear()

        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._call(_close)
        self._thread.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    @property
    def head(self) -> int:
        """The seq of the newest committed event."""
        return self._head

    @property
    def pending_bytes(self) -> int:
        """Bytes of events not yet delivered by every sink (what ``max_bytes`` bounds)."""
        return self._bytes

    @property
    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    # ---------------------------------------------------------------- state (the diff's table)

    async def load_state(self) -> list[StateRow]:
        def _load() -> list[StateRow]:
            rows = self.db.execute("SELECT hub, kind, device_id, attribute, value, seq FROM state")
            return [StateRow((h, k, d, a), json.loads(v), s) for h, k, d, a, v, s in rows]

        return await self._call(_load)

    # ---------------------------------------------------------------- append (group commit)

    async def append(self, events: list[Event], state: list[StateRow]) -> None:
        """Durably record ``events`` together with the new last-known values ``state``.

        Returns only after the transaction committed. Raises :class:`JournalFull` when the log is at
        ``max_bytes`` (nothing is recorded, so the caller's diff must roll back), :class:`JournalError` when
        the commit failed.
        """
        if self._closed:
            raise JournalError("the journal is closed")
        if events:
            self.check_room()
        if not events and not state:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append(events, state, fut))
        self._wake.set()
        await fut

    def check_room(self) -> None:
        """Raise :class:`JournalFull` if the log is at ``max_bytes`` (logged once until there is room)."""
        if self.full:
            if not self._full_logged:
                self._full_logged = True
                log.warning(
                    "journal full: holding push sources until sinks catch up",
                    pending_bytes=self._bytes,
                    max_bytes=self.max_bytes,
                )
            raise JournalFull(f"journal holds {self._bytes} undelivered bytes (max {self.max_bytes})")

    async def barrier(self) -> None:
        """Wait until every append queued before this call has been committed or has failed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append([], [], fut))
        self._wake.set()
        with contextlib.suppress(JournalError):
            await fut

    async def run(self) -> None:
        """The committer task: gathers appends for ``commit_window`` and commits them in one transaction."""
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            # No fixed delay by default: appends that arrive while a commit is on the disk are grouped into the
            # next one, so a lone POST waits one fsync, and a burst shares each fsync among many callers.
            if self.commit_window > 0:
                await asyncio.sleep(self.commit_window)
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                added, nbytes = await self._call(self._commit_sync, batch)
            except Exception as exc:
                err = exc if isinstance(exc, JournalError) else JournalError(f"journal commit failed: {exc}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            self.commits += 1
            self._bytes += nbytes
            if added:
                self._head += added
                if self._grew is not None and not self._grew.done():
                    self._grew.set_result(None)
                self._grew = None
            for item in batch:
                if not item.future.done():
                    item.future.set_result(None)

    def _commit_sync(self, batch: list[_Append]) -> tuple[int, int]:
        db = self.db
        seq = self._head
        rows: list[tuple[int, str, str, int]] = []
        state: dict[StateKey, StateRow] = {}
        nbytes = 0
        for item in batch:
            for ev in item.events:
                seq += 1
                body = ev.to_json()
                size = len(body)
                nbytes += size
                rows.append((seq, ev.id, body, size))
            for row in item.state:
                state[row.key] = row
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO events (seq, id, body, size) VALUES (?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO state (hub, kind, device_id, attribute, value, seq) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (hub, kind, device_id, attribute) DO UPDATE SET value=excluded.value, seq=excluded.seq",
                [(*r.key, json.dumps(r.value, separators=(",", ":")), r.seq) for r in state.values()],
            )
            if rows:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (str(seq),))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise JournalError(f"journal commit failed ({self.path}): {exc}") from exc
        return len(rows), nbytes

    # ---------------------------------------------------------------- reading (sinks)

    async def wait_beyond(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until the head passes ``seq``. True if it did, False on timeout."""
        if self._head > seq:
            return True
        if self._grew is None:
            self._grew = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._grew)
        except TimeoutError:
            return self._head > seq
        return self._head > seq

    async def read(self, after: int, max_events: int, max_bytes: int) -> list[Record]:
        """Up to ``max_events`` records after seq ``after``, at most ``max_bytes`` of bodies (at least one)."""

        def _read() -> list[Record]:
            out: list[Record] = []
            total = 0
            for seq, id_, body in self.db.execute(
                "SELECT seq, id, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, max_events)
            ):
                total += len(body)
                if out and total > max_bytes:
                    break
                out.append(Record(seq, id_, body))
            return out

        return await self._call(_read)

    # ---------------------------------------------------------------- cursors

    async def register_sinks(self, names: Sequence[str]) -> None:
        """Give each configured sink a cursor; forget cursors of sinks no longer configured.

        A new sink starts at the head: it receives events from now on, not the retained backlog. A removed
        sink's cursor would pin the log forever, so it goes (and is logged).
        """

        def _register() -> tuple[list[str], list[str]]:
            db = self.db
            added, removed = [], []
            for sink in list(self._cursors):
                if sink not in names:
                    db.execute("DELETE FROM cursors WHERE sink = ?", (sink,))
                    del self._cursors[sink]
                    removed.append(sink)
            for sink in names:
                if sink not in self._cursors:
                    db.execute("INSERT INTO cursors VALUES (?, ?)", (sink, self._head))
                    self._cursors[sink] = self._head
                    added.append(sink)
            return added, removed

        added, removed = await self._call(_register)
        for sink in added:
            log.info("new sink starts at the journal head", sink=sink, seq=self._head)
        for sink in removed:
            log.info("sink no longer configured; its cursor was removed", sink=sink)
        await self.trim(force=True)

    def cursor(self, sink: str) -> int:
        return self._cursors[sink]

    @property
    def cursors(self) -> dict[str, int]:
        return dict(self._cursors)

    async def advance(self, sink: str, seq: int, dead: Iterable[tuple[Record, str]] = ()) -> None:
        """Durably move ``sink``'s cursor to ``seq`` (everything up to it is delivered or dead-lettered).

        ``dead`` are events at or below ``seq`` that the sink can never deliver, each with its reason; they
        are recorded in the same transaction, so a crash never loses one nor records it twice.
        """
        now = time.time()
        rows = [(sink, r.seq, r.id, r.body, reason, now) for r, reason in dead]
        if seq <= self._cursors.get(sink, 0) and not rows:
            return
        seq = max(seq, self._cursors.get(sink, 0))

        def _advance() -> None:
            db = self.db
            # Progress needs no fsync of its own: losing the last advances to a power cut only re-sends events
            # (same ids), never loses one, and the WAL keeps cursor and dead letters atomic either way.
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO dead_letters (sink, seq, id, body, reason, time) VALUES (?, ?, ?, ?, ?, ?)", rows
                )
                db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (sink, seq))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise JournalError(f"cannot record delivery progress of sink {sink} ({self.path}): {exc}") from exc
            finally:
                db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")

        await self._call(_advance)
        self._cursors[sink] = seq
        # When the log is full no new event (so no later advance) may come to trim it: free room now.
        await self.trim(force=self.full)

    async def trim(self, *, force: bool = False) -> None:
        """Delete events every sink has passed. Runs at most once a second unless forced."""
        now = time.monotonic()
        if not force and now - self._last_trim < 1.0:
            return
        self._last_trim = now
        if not self._cursors:
            return
        low = min(self._cursors.values())

        def _trim() -> int:
            db = self.db
            (gone,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM events WHERE seq <= ?", (low,)).fetchone()
            if gone:
                db.execute("DELETE FROM events WHERE seq <= ?", (low,))
            return int(gone)

        gone = await self._call(_trim)
        self._bytes -= gone
        if self._full_logged and not self.full:
            self._full_logged = False
            log.info("journal has room again; push sources resume", pending_bytes=self._bytes)

    # ---------------------------------------------------------------- dead letters

    async def dead_letters(self, sink: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        def _list() -> list[DeadLetter]:
            sql = "SELECT sink, seq, id, body, reason, time FROM dead_letters"
            args: tuple[Any, ...] = ()
            if sink is not None:
                sql += " WHERE sink = ?"
                args = (sink,)
            sql += " ORDER BY n LIMIT ?"
            return [DeadLetter(*row) for row in self.db.execute(sql, (*args, limit))]

        return await self._call(_list)

    # ---------------------------------------------------------------- hub metadata

    async def get_meta(self, hub: str, key: str) -> Any:
        def _get() -> Any:
            row = self.db.execute("SELECT value FROM hub_meta WHERE hub=? AND key=?", (hub, key)).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._call(_get)

    async def set_meta(self, hub: str, key: str, value: Any) -> None:
        def _set() -> None:
            self.db.execute("INSERT OR REPLACE INTO hub_meta VALUES (?, ?, ?)", (hub, key, json.dumps(value)))

        await self._call(_set)
