"""The durable hand-off between sources and sinks: SQLite in WAL mode (DESIGN 4).

One file in ``state_dir`` holds the event log (monotonic ``seq``), one cursor per sink, the last-known values the
diff uses, dead letters and small per-hub metadata. All SQLite work runs on one dedicated thread so the event loop
never blocks on fsync; appends from many coroutines are grouped into one transaction per commit (group commit),
and no caller is told "done" before its transaction is durable.

``max_bytes`` bounds the files on disk (database and WAL), not a count of characters: the WAL is checkpointed and
truncated to a small budget, trims run in chunks that fit it, and incremental vacuum gives freed pages back to the
file system once sinks caught up. The journal is full when the pages in use reach the bound less the WAL budget and
one commit; it has room again a little below that, so sources do not flap at the edge.

The ``recent`` table is a short durable memory of what was recorded, for a source that must recognise a copy of an
event it recorded before a crash (Hubitat's eventsocket and POST-URL both carry every event, and the POST copies lag;
``bridge.sources.hubitat.streams``). A source asks for it per ingest (``remember``); the rows are written in the same
transaction as their events, so after kill -9 they say exactly what was recorded, nothing more and nothing less.
They are kept :attr:`Journal.recent_window` seconds, whether or not sinks delivered the events, and at most
:attr:`Journal.recent_max_rows` rows (about 1/64 of ``max_bytes``); old rows go in the commits that add new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog

from bridge.diff import StateKey, StateRow
from bridge.errors import JournalError, JournalFull
from bridge.journal.schema import check_version, prepare

log = structlog.get_logger("bridge.journal")

T = TypeVar("T")

# Room returns below this share of the limit (hysteresis: a source must not flap between hold and go).
ROOM_AGAIN = 0.95
# How often trimming runs when not forced, and how often retention and shrinking are looked at.
TRIM_EVERY = 1.0
MAINTAIN_EVERY = 60.0
# How long recently recorded values are kept for matching after a restart (the Hubitat matcher's window).
RECENT_WINDOW = 120.0
# What one row of the recent table takes on disk at most, roughly (for the bound on their count and the estimate).
RECENT_ROW_BYTES = 128


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


# An event ready for the journal: its id, its JSON line and that line's size in UTF-8 bytes. Plain tuples: one is
# made per event, and a NamedTuple's constructor is a Python function.
Encoded = tuple[str, str, int]
# A last-known value ready for the journal: its key, the value as JSON text and its change counter.
EncodedState = tuple[StateKey, str, int]
# A recently recorded value for the recent table: hub, kind, device id ("" if none), attribute, value as JSON text,
# the event's source (eventsocket, webhook, poll...) and the wall-clock time it was recorded.
EncodedRecent = tuple[str, str, str, str, str, str, float]


class Recent(NamedTuple):
    """A value recorded for a hub within the last :attr:`Journal.recent_window` seconds, oldest first."""

    kind: str
    device_id: str
    attribute: str
    value: Any
    source: str
    time: float


# What a sink's filters remember about one (hub, kind, device_id, attribute): the last forwarded value (JSON text),
# its time, the event held back inside a minimum-interval window and when that window closes (bridge.filters).
FilterRow = tuple[tuple[str, str, str, str], str | None, float | None, Record | None, float | None]


@dataclass(slots=True, frozen=True)
class DeadLetter:
    sink: str
    seq: int
    id: str
    body: str
    reason: str
    time: float


@dataclass(slots=True, frozen=True)
class SinkSpec:
    """A configured sink as the journal knows it: its name and, when it was renamed, its old name."""

    name: str
    renamed_from: str | None = None


@dataclass(slots=True)
class _Append:
    events: list[Encoded]
    state: list[EncodedState]
    nbytes: int
    future: asyncio.Future[None]
    recent: Sequence[EncodedRecent] = ()


@dataclass(slots=True)
class DiskUse:
    """Bytes the journal's files take (database, WAL and its index), and the part of the database in use."""

    file_bytes: int = 0
    used_bytes: int = 0


class Journal:
    """SQLite-backed event log. :meth:`open`, run :meth:`run` as a task, :meth:`close` (commits what is queued)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1024**3,
        synchronous: str = "full",
        commit_window: float = 0.0,
        dead_letter_max_count: int = 10_000,
        dead_letter_max_age: float = 30 * 86400.0,
        inspect: bool = False,
    ) -> None:
        self.path = path
        # Opened by a command beside a running bridge (spool): read what is there, leave the files alone.
        self.inspect = inspect
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self.commit_window = commit_window
        self.dead_letter_max_count = dead_letter_max_count
        self.dead_letter_max_age = dead_letter_max_age
        self.recent_window = RECENT_WINDOW
        # Rows of the recent table at most: about 1/64 of max_bytes (64 KiB at the smallest bound, 4 MiB).
        self.recent_max_rows = max(512, min(100_000, max_bytes // 64 // RECENT_ROW_BYTES))
        self._recent_n = 0  # the n of the newest row of the recent table (journal thread only)
        # The WAL is checkpointed and truncated at this size; a commit and a trim chunk are kept below it too, so
        # the WAL never holds more than about twice this.
        self.wal_budget = min(4 * 1024**2, max(256 * 1024, max_bytes // 16))
        self.commit_cap = self.wal_budget // 2
        self.install_id = ""
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._pending: list[_Append] = []
        # time.monotonic() while a commit is on the disk (the service watchdog reads it: a commit that never
        # returns, a hung disk, is a wedged bridge).
        self.commit_started: float | None = None
        self._wake = asyncio.Event()
        self._grew: asyncio.Future[None] | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._head = 0
        self._bytes = 0
        self._disk = DiskUse()
        self._page_size = 4096
        self._cursors: dict[str, int] = {}
        self._last_trim = 0.0
        self._last_maintain = 0.0
        self._freed = 0  # bytes trimmed since the last upkeep
        self._unmeasured = 0  # bytes committed since the files were last measured
        self._later: asyncio.TimerHandle | None = None  # a trim put off by the once-a-second limit
        self._trimming: asyncio.Future[None] | None = None
        self._closing = False
        self._closed = False
        self._running = False
        self._stopped = asyncio.Event()
        self.commits = 0

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from None
        await self._call(self._open_sync)

    def _open_sync(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            if self.inspect:
                # Beside a running bridge: read only, never create, migrate or checkpoint anything.
                db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
                db.execute("PRAGMA busy_timeout=5000")
                check_version(db, str(self.path))
            else:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA busy_timeout=5000")
                # Tables first: a new file must choose incremental vacuum before anything (WAL included) writes it.
                prepare(db, str(self.path))
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
                pages = max(16, self.wal_budget // 4096)
                db.execute(f"PRAGMA wal_autocheckpoint={pages}")
                db.execute(f"PRAGMA journal_size_limit={self.wal_budget}")
            self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
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
            self._recent_n = db.execute("SELECT COALESCE(MAX(n), 0) FROM recent").fetchone()[0]
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
                raise JournalError(
                    f"the journal {self.path} is not a SQLite database (damaged, or another file): move it aside "
                    "to start a new journal; what it held cannot be read"
                ) from None
            raise JournalError(
                f"cannot open the journal {self.path}: {exc}; check that state_dir and the files in it belong to "
                "the user hubbridge runs as and that the disk is not full"
            ) from None
        self._db = db
        self._disk = self._measure_sync()
        self._update_room()

    async def close(self) -> None:
        """Commit what is still queued, then close. Every queued caller learns its outcome."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        if self._later is not None:
            self._later.cancel()
        if self._trimming is not None and not self._trimming.done():
            await self._trimming
        if self._running:
            await self._stopped.wait()
        else:
            while self._pending:
                await self._commit_next()
        self._closed = True
        # Anything that slipped in after the committer stopped (it cannot, but a caller must never hang).
        for item in self._pending:
            if not item.future.done():
                item.future.set_exception(JournalError("the journal closed before this change was committed"))
        self._pending.clear()

        def _close() -> None:
            if self._db is not None:
                if not self.inspect:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                self._db = None

        with contextlib.suppress(JournalError):
            await self._call(_close)
        self._thread.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except RuntimeError as exc:  # the executor was shut down: the journal is closed
            raise JournalError(f"the journal is closed ({exc})") from None

    @contextlib.contextmanager
    def _transaction(self, failed: str, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (on the journal thread); a SQLite error rolls it back and becomes JournalError.

        ``fsync=False``: the commit gets no fsync of its own. For progress (cursor moves, trims): one lost to a power
        cut is only done again, it never loses an event, and the WAL keeps the transaction atomic either way.
        """
        db = self.db
        if not fsync:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise JournalError(f"{failed} ({self.path}): {exc}") from None
        finally:
            if not fsync:
                db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")

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
        """UTF-8 bytes of the event bodies not yet delivered by every sink."""
        return self._bytes

    @property
    def disk(self) -> DiskUse:
        """What the journal's files take on disk, as of the last commit or trim."""
        return self._disk

    @property
    def limit(self) -> int:
        """Bytes in use at which the journal counts as full (room kept for the WAL and one commit)."""
        return max(self.max_bytes // 2, self.max_bytes - self.wal_budget - self.commit_cap)

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    def check_room(self) -> None:
        """Raise :class:`JournalFull` when the journal has no room for new events."""
        if not self._room.is_set():
            raise JournalFull(
                f"journal holds {self._disk.used_bytes} bytes on disk (journal.max_bytes {self.max_bytes})"
            )

    async def wait_room(self) -> None:
        """Return once the journal has room (at once if it has). Never touches anything else."""
        await self._room.wait()

    def _update_room(self) -> None:
        used = self._disk.used_bytes
        if self._room.is_set():
            if used >= self.limit:
                self._room.clear()
                log.warning(
                    "journal full: holding sources until sinks catch up (nothing is dropped)",
                    used_bytes=used,
                    max_bytes=self.max_bytes,
                )
        elif used < self.limit * ROOM_AGAIN:
            self._room.set()
            log.info("journal has room again; sources resume", used_bytes=used, max_bytes=self.max_bytes)

    def _measure_sync(self) -> DiskUse:
        self._unmeasured = 0
        # In use: the database's pages less its free list (what a VACUUM would leave). The WAL is not counted: it is
        # checkpointed back to wal_budget, which `limit` keeps free, so the files stay within max_bytes + one commit.
        db = self.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        files = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                files += os.stat(f"{self.path}{suffix}").st_size
        return DiskUse(file_bytes=files, used_bytes=(pages - free) * self._page_size)

    # ---------------------------------------------------------------- state (the diff's table)

    async def load_state(self) -> list[StateRow]:
        def _load() -> list[StateRow]:
            rows = self.db.execute("SELECT hub, kind, device_id, attribute, value, seq FROM state")
            return [StateRow((h, k, d, a), json.loads(v), s) for h, k, d, a, v, s in rows]

        return await self._call(_load)

    # ---------------------------------------------------------------- append (group commit)

    def submit(
        self, events: list[Encoded], state: list[EncodedState], recent: Sequence[EncodedRecent] = ()
    ) -> asyncio.Future[None]:
        """Queue ``events`` with the new last-known values ``state`` for the next commit; the future says when.

        ``recent``: rows for the recent table (see the module docstring), committed with the events.

        Raises :class:`JournalFull` at once when there is no room (nothing is queued, so the caller's diff must be
        taken back), :class:`JournalError` when the journal is closed. The future fails with :class:`JournalError`
        if the commit failed.
        """
        if self._closing:
            raise JournalError("the journal is closed")
        if events:
            self.check_room()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not events and not state:
            fut.set_result(None)
            return fut
        self._pending.append(_Append(events, state, sum(e[2] for e in events), fut, recent))
        self._wake.set()
        return fut

    async def append(self, events: list[Encoded], state: list[EncodedState]) -> None:
        """Durably record ``events`` with ``state``; returns after the commit (see :meth:`submit`)."""
        await self.submit(events, state)

    async def run(self) -> None:
        """The committer task: commits queued appends, grouped, until :meth:`close` (then commits the rest)."""
        self._running = True
        self._stopped.clear()
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    await self._wake.wait()
                    self._wake.clear()
                    # No fixed delay by default: appends that arrive while a commit is on the disk are grouped into
                    # the next one, so a lone POST waits one fsync, and a burst shares each fsync among many callers.
                    if self.commit_window > 0 and not self._closing:
                        await asyncio.sleep(self.commit_window)
                    continue
                await self._commit_next()
        finally:
            self._running = False
            self._stopped.set()

    async def _commit_next(self) -> None:
        # One commit holds at most commit_cap bytes of events (and at least one append), so the WAL stays small.
        n, nbytes = 0, 0
        for item in self._pending:
            if n and nbytes + item.nbytes > self.commit_cap:
                break
            n += 1
            nbytes += item.nbytes
        batch, self._pending = self._pending[:n], self._pending[n:]
        work = asyncio.get_running_loop().run_in_executor(self._thread, self._commit_sync, batch)
        self.commit_started = time.monotonic()
        try:
            outcome: tuple[int, int, DiskUse] | BaseException = await asyncio.shield(work)
        except asyncio.CancelledError:
            # The thread is committing: wait for it, so no caller is left without an answer, then stop.
            self._resolve(batch, await _outcome(work))
            raise
        except Exception as exc:
            outcome = exc
        finally:
            self.commit_started = None
        self._resolve(batch, outcome)

    def _resolve(self, batch: list[_Append], outcome: tuple[int, int, DiskUse] | BaseException) -> None:
        if isinstance(outcome, BaseException):
            err = outcome if isinstance(outcome, JournalError) else JournalError(f"journal commit failed: {outcome}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        added, nbytes, disk = outcome
        self.commits += 1
        self._bytes += nbytes
        self._disk = disk
        self._update_room()
        if added:
            self._head += added
            if self._grew is not None and not self._grew.done():
                self._grew.set_result(None)
            self._grew = None
        for item in batch:
            if not item.future.done():
                item.future.set_result(None)

    def _commit_sync(self, batch: list[_Append]) -> tuple[int, int, DiskUse]:
        seq = self._head
        rows: list[tuple[int, str, str, int]] = []
        state: dict[StateKey, EncodedState] = {}
        recent: list[tuple[int, str, str, str, str, str, str, float]] = []
        nbytes = 0
        n = self._recent_n
        for item in batch:
            for id_, body, size in item.events:
                seq += 1
                nbytes += size
                rows.append((seq, id_, body, size))
            for row in item.state:
                state[row[0]] = row
            for r in item.recent:
                n += 1
                recent.append((n, *r))
        with self._transaction("journal commit failed") as db:
            db.executemany("INSERT INTO events (seq, id, body, size) VALUES (?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO state (hub, kind, device_id, attribute, value, seq) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (hub, kind, device_id, attribute) DO UPDATE SET value=excluded.value, seq=excluded.seq",
                [(*key, value, seq_) for key, value, seq_ in state.values()],
            )
            if rows:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (str(seq),))
            if recent:
                db.executemany("INSERT INTO recent VALUES (?, ?, ?, ?, ?, ?, ?, ?)", recent)
                # Rows are in time order (n grows with the wall clock, save for clock steps): the subquery reads only
                # the expired rows and the first one kept, so this costs what it deletes. The count bound holds
                # whatever the clock does.
                db.execute(
                    "DELETE FROM recent WHERE n <= ? OR n < (SELECT n FROM recent WHERE time >= ? ORDER BY n LIMIT 1)",
                    (n - self.recent_max_rows, time.time() - self.recent_window),
                )
        self._recent_n = n
        nbytes_disk = nbytes + len(recent) * RECENT_ROW_BYTES
        # Measuring costs a few syscalls: small commits add their bytes to the last measure (an overestimate, as
        # pages are filled), and the files are measured again once that estimate moved by a sixteenth of the WAL
        # budget. The bound stays conservative either way.
        self._unmeasured += nbytes_disk
        if self._unmeasured < self.wal_budget // 16:
            disk = self._disk
            return len(rows), nbytes, DiskUse(disk.file_bytes + nbytes_disk, disk.used_bytes + nbytes_disk)
        return len(rows), nbytes, self._measure_sync()

    async def recent(self, hub: str, within: float) -> list[Recent]:
        """What was recorded for ``hub`` with ``remember`` in the last ``within`` seconds (wall clock), oldest first.

        Bounded by :attr:`recent_window` and :attr:`recent_max_rows` whatever ``within`` says.
        """
        since = time.time() - min(within, self.recent_window)

        def _recent() -> list[Recent]:
            rows = self.db.execute(
                "SELECT kind, device_id, attribute, value, source, time FROM recent WHERE hub = ? AND time >= ? "
                "ORDER BY n",
                (hub, since),
            )
            return [Recent(k, d, a, json.loads(v), s, t) for k, d, a, v, s, t in rows]

        return await self._call(_recent)

    # ---------------------------------------------------------------- reading (sinks)

    async def wait_beyond(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until the head passes ``seq``. True if it did, False on timeout."""
        if self._head > seq:
            return True
        if self._grew is None:
            self._grew = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._grew)
        return self._head > seq

    async def read(self, after: int, max_events: int, max_bytes: int) -> list[Record]:
        """Up to ``max_events`` records after seq ``after``, at most ``max_bytes`` of bodies (at least one)."""

        def _read() -> list[Record]:
            out: list[Record] = []
            total = 0
            for seq, id_, body, size in self.db.execute(
                "SELECT seq, id, body, size FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, max_events)
            ):
                total += size
                if out and total > max_bytes:
                    break
                out.append(Record(seq, id_, body))
            return out

        return await self._call(_read)

    # ---------------------------------------------------------------- cursors

    async def register_sinks(self, sinks: Sequence[SinkSpec | str], *, keep_removed: bool = False) -> None:
        """Give each configured sink a cursor; deal with cursors of sinks no longer configured.

        A new sink starts at the head: it receives events from now on, not the retained backlog; one configured
        with ``renamed_from`` takes over the old name's cursor, and with it the backlog. A cursor nobody claims is
        dropped (its backlog with it) unless ``keep_removed``; either way a warning says how many events that is.
        """
        specs = [s if isinstance(s, SinkSpec) else SinkSpec(s) for s in sinks]
        names = {s.name for s in specs}

        def _register() -> list[tuple[str, str, int]]:
            notes: list[tuple[str, str, int]] = []
            # Changed in a copy, taken only once committed: a failed transaction leaves the cursors as they were.
            cursors = dict(self._cursors)
            with self._transaction("cannot record the sinks' cursors") as db:
                for spec in specs:
                    old = spec.renamed_from
                    if spec.name not in cursors and old and old in cursors and old not in names:
                        seq = cursors.pop(old)
                        db.execute("UPDATE cursors SET sink = ? WHERE sink = ?", (spec.name, old))
                        for table in ("dead_letters", "filter_state", "replays"):
                            db.execute(f"UPDATE {table} SET sink = ? WHERE sink = ?", (spec.name, old))
                        cursors[spec.name] = seq
                        notes.append(("renamed", f"{old} -> {spec.name}", self._head - seq))
                for sink in list(cursors):
                    if sink in names:
                        continue
                    backlog = self._head - cursors[sink]
                    if keep_removed:
                        notes.append(("kept", sink, backlog))
                        continue
                    for table in ("cursors", "filter_state", "replays"):
                        db.execute(f"DELETE FROM {table} WHERE sink = ?", (sink,))
                    del cursors[sink]
                    notes.append(("dropped", sink, backlog))
                for spec in specs:
                    if spec.name not in cursors:
                        db.execute("INSERT INTO cursors VALUES (?, ?)", (spec.name, self._head))
                        cursors[spec.name] = self._head
                        notes.append(("new", spec.name, 0))
            self._cursors = cursors
            return notes

        for what, sink, backlog in await self._call(_register):
            if what == "new":
                log.info("new sink starts at the journal head", sink=sink, seq=self._head)
            elif what == "renamed":
                log.info("sink renamed; it keeps its place in the journal", sink=sink, undelivered=backlog)
            elif what == "kept" and backlog:
                log.warning(
                    "a sink is no longer configured; its undelivered events are kept (journal.removed_sinks: keep) and "
                    "hold the journal until it is back, or until `hubbridge spool drop-sink` drops them",
                    sink=sink,
                    undelivered=backlog,
                )
            elif what == "kept":
                log.info("a sink is no longer configured; it had nothing undelivered", sink=sink)
            elif backlog:
                log.warning(
                    "a sink is no longer configured: its undelivered events were dropped for it (set renamed_from on a "
                    "renamed sink, or journal.removed_sinks: keep, to keep them)",
                    sink=sink,
                    dropped=backlog,
                )
            else:
                log.info("a sink is no longer configured; it had nothing undelivered", sink=sink)
        await self.trim(force=True, maintain=True)

    async def drop_sink(self, sink: str) -> int:
        """Forget ``sink``'s cursor (and so its backlog). Returns how many events it had not delivered."""

        def _drop() -> int:
            seq = self._cursors.get(sink)
            if seq is None:
                return -1
            with self._transaction(f"cannot drop the cursor of sink {sink}") as db:
                for table in ("cursors", "filter_state", "replays"):
                    db.execute(f"DELETE FROM {table} WHERE sink = ?", (sink,))
            del self._cursors[sink]
            return self._head - seq

        dropped = await self._call(_drop)
        await self.trim(force=True, maintain=True)
        return dropped

    def cursor(self, sink: str) -> int:
        return self._cursors[sink]

    @property
    def cursors(self) -> dict[str, int]:
        return dict(self._cursors)

    async def advance(
        self,
        sink: str,
        seq: int,
        dead: Iterable[tuple[Record, str]] = (),
        *,
        filter_state: Iterable[FilterRow] = (),
        replayed: Iterable[int] = (),
    ) -> None:
        """Durably move ``sink``'s cursor to ``seq`` (everything up to it is delivered or dead-lettered).

        ``dead`` are events at or below ``seq`` that the sink can never deliver, each with its reason; they
        are recorded in the same transaction, so a crash never loses one nor records it twice. So are the sink's
        filter state as of ``seq`` (rows with nothing left to remember are deleted) and the replays now settled.
        """
        now = time.time()
        rows = [(sink, r.seq, r.id, r.body, reason, now) for r, reason in dead]
        states = list(filter_state)
        done = [(n,) for n in replayed]
        if seq <= self._cursors.get(sink, 0) and not rows and not states and not done:
            return
        seq = max(seq, self._cursors.get(sink, 0))

        def _advance() -> None:
            # Losing the last advances to a power cut only re-sends events (same ids): no fsync of their own.
            with self._transaction(f"cannot record delivery progress of sink {sink}", fsync=False) as db:
                if rows:
                    db.executemany(
                        "INSERT INTO dead_letters (sink, seq, id, body, reason, time) VALUES (?, ?, ?, ?, ?, ?)", rows
                    )
                    self._purge_dead_letters(db, by_age=False)
                if done:
                    db.executemany("DELETE FROM replays WHERE n = ?", done)
                for key, forwarded, forwarded_time, pending, due in states:
                    if forwarded is None and forwarded_time is None and pending is None:
                        db.execute(
                            "DELETE FROM filter_state "
                            "WHERE sink = ? AND hub = ? AND kind = ? AND device_id = ? AND attribute = ?",
                            (sink, *key),
                        )
                        continue
                    held = (pending.seq, pending.id, pending.body) if pending is not None else (None, None, None)
                    db.execute(
                        "INSERT OR REPLACE INTO filter_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (sink, *key, forwarded, forwarded_time, *held, due),
                    )
                db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (sink, seq))

        await self._call(_advance)
        self._cursors[sink] = seq
        # When the log is full no new event (so no later advance) may come to trim it: free room now.
        await self.trim(force=self.full or bool(rows))

    async def trim(self, *, force: bool = False, maintain: bool = False) -> None:
        """Delete events every sink has passed, a chunk per transaction. At most once a second unless forced.

        Also (when asked to ``maintain``, once a minute, or once a WAL budget's worth was trimmed) applies dead-letter
        retention and gives free pages back to the file system.
        """
        now = time.monotonic()
        if not force and now - self._last_trim < TRIM_EVERY:
            # Not now, but soon: the last advances of a backlog must not wait for an advance that may never come.
            if self._later is None and not self._closing:
                self._later = asyncio.get_running_loop().call_later(
                    TRIM_EVERY - (now - self._last_trim), self._trim_later
                )
            return
        self._last_trim = now
        low = min(self._cursors.values()) if self._cursors else self._head
        while True:
            gone, more = await self._call(self._trim_chunk, low)
            self._bytes -= gone
            self._freed += gone
            if not more:
                break
        # Upkeep when asked, once a minute, or as soon as a backlog worth shrinking for was delivered.
        if maintain or now - self._last_maintain >= MAINTAIN_EVERY or self._freed >= self.wal_budget:
            self._last_maintain = now
            self._freed = 0
            await self._call(self._maintain_sync)
        self._disk = await self._call(self._measure_sync)
        self._update_room()

    def _trim_later(self) -> None:
        self._later = None
        if not self._closing and self._db is not None:
            self._trimming = asyncio.ensure_future(self._trim_quietly())

    async def _trim_quietly(self) -> None:
        try:
            await self.trim()
        except JournalError as exc:
            log.warning("cannot trim the journal; it is tried again later", error=str(exc))

    def _trim_chunk(self, low: int) -> tuple[int, bool]:
        """Delete up to a WAL budget's worth of events at or below ``low``. Returns (bytes, whether more remain)."""
        db = self.db
        budget = self.commit_cap
        upto, total, more = None, 0, False
        for seq, size in db.execute("SELECT seq, size FROM events WHERE seq <= ? ORDER BY seq LIMIT 20000", (low,)):
            if upto is not None and total + size > budget:
                more = True
                break
            upto, total = seq, total + size
        if upto is None:
            return 0, False
        # A trim lost to a power cut is simply done again: no fsync of its own.
        with self._transaction("cannot trim the journal", fsync=False):
            db.execute("DELETE FROM events WHERE seq <= ?", (upto,))
        return total, more or upto < low

    def _purge_dead_letters(self, db: sqlite3.Connection, *, by_age: bool) -> None:
        """Keep the newest ``dead_letter_max_count`` dead letters, and (``by_age``) none older than the max age."""
        if by_age:
            db.execute("DELETE FROM dead_letters WHERE time < ?", (time.time() - self.dead_letter_max_age,))
        db.execute(
            "DELETE FROM dead_letters WHERE n <= (SELECT n FROM dead_letters ORDER BY n DESC LIMIT 1 OFFSET ?)",
            (self.dead_letter_max_count,),
        )

    def _maintain_sync(self) -> None:
        """Dead-letter retention, then hand free pages back (incremental vacuum) and truncate the WAL."""
        db = self.db
        try:
            self._purge_dead_letters(db, by_age=True)
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            chunk = max(16, self.commit_cap // self._page_size)
            while free > 0:
                # executescript: it steps the pragma to completion (execute() would free one page per call).
                db.executescript(f"PRAGMA incremental_vacuum({min(free, chunk)});")
                left = db.execute("PRAGMA freelist_count").fetchone()[0]
                if left >= free:
                    break  # auto_vacuum is off for this file (its upgrade could not switch it)
                free = left
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("journal maintenance failed; it is tried again later", error=str(exc))

    # ---------------------------------------------------------------- dead letters

    async def dead_letters(self, sink: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters, newest first."""

        def _list() -> list[DeadLetter]:
            sql = "SELECT sink, seq, id, body, reason, time FROM dead_letters"
            args: tuple[Any, ...] = ()
            if sink is not None:
                sql += " WHERE sink = ?"
                args = (sink,)
            sql += " ORDER BY n DESC LIMIT ?"
            return [DeadLetter(*row) for row in self.db.execute(sql, (*args, limit))]

        return await self._call(_list)

    # ---------------------------------------------------------------- filter state and replays (one sink each)

    async def filter_state(self, sink: str) -> list[FilterRow]:
        """What ``sink``'s filters remembered when its cursor last moved."""

        def _load() -> list[FilterRow]:
            out: list[FilterRow] = []
            for h, k, d, a, fwd, fwd_time, p_seq, p_id, p_body, due in self.db.execute(
                "SELECT hub, kind, device_id, attribute, forwarded, forwarded_time, pending_seq, pending_id, "
                "pending_body, pending_due FROM filter_state WHERE sink = ?",
                (sink,),
            ):
                pending = Record(p_seq, p_id, p_body) if p_body is not None else None
                out.append(((h, k, d, a), fwd, fwd_time, pending, due))
            return out

        return await self._call(_load)

    async def replays(self, sink: str, limit: int, skip: Iterable[int] = ()) -> list[tuple[int, Record]]:
        """Dead letters of ``sink`` that `hubbridge spool replay` sent back into delivery, oldest first."""
        skipped = set(skip)

        def _list() -> list[tuple[int, Record]]:
            rows = self.db.execute(
                "SELECT n, seq, id, body FROM replays WHERE sink = ? ORDER BY n LIMIT ?", (sink, limit + len(skipped))
            )
            return [(n, Record(seq, id_, body)) for n, seq, id_, body in rows if n not in skipped][:limit]

        return await self._call(_list)

    # ---------------------------------------------------------------- hub metadata

    async def get_meta(self, hub: str, key: str) -> Any:
        def _get() -> Any:
            row = self.db.execute("SELECT value FROM hub_meta WHERE hub=? AND key=?", (hub, key)).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._call(_get)

    async def set_meta(self, hub: str, key: str, value: Any) -> None:
        def _set() -> None:
            try:
                self.db.execute(
                    "INSERT OR REPLACE INTO hub_meta VALUES (?, ?, ?)", (hub, key, json.dumps(value, allow_nan=False))
                )
            except (sqlite3.Error, ValueError) as exc:
                raise JournalError(f"cannot store {key} of hub {hub} ({self.path}): {exc}") from None

        await self._call(_set)


async def _outcome(work: asyncio.Future[tuple[int, int, DiskUse]]) -> tuple[int, int, DiskUse] | BaseException:
    try:
        return await work
    except Exception as exc:
        return exc
