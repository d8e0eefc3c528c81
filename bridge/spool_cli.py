"""``hubbridge spool ...``: look into the journal and act on dead letters, also while the bridge runs.

Reading commands (``stats``, ``dead-letters``) open the journal read-only. ``replay`` and ``purge`` write only the
dead-letter tables, in short transactions a running bridge waits for (SQLite's own locking): a replayed dead letter
moves to the ``replays`` table, which the sink's delivery loop looks at every couple of seconds and sends, with its
original id, like any other event. ``drop-sink`` rewrites cursors, so it needs the bridge stopped.

Sink names are checked: one that is neither configured nor known to the journal is an error, never an empty list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import BridgeConfig, load_config
from bridge.errors import BridgeError, ConfigError, StateDirError, StateDirLocked
from bridge.journal.lock import unusable_state_dir
from bridge.journal.schema import check_version
from bridge.options import parse_duration

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    """The ``spool`` subcommands, on the CLI's subparsers."""
    from bridge.commands import add_config, subcommand

    spool = sub.add_parser(
        "spool",
        help="inspect the journal; replay or purge dead letters",
        description="Inspect and maintain the journal: backlog per sink, dead letters, replaying and purging them.",
    )
    spool_sub = spool.add_subparsers(dest="spool_command", required=True)

    def command(name: str, summary: str, description: str, examples: list[tuple[str, str]]) -> argparse.ArgumentParser:
        p = subcommand(spool_sub, name, summary, description, examples)
        add_config(p)
        return p

    stats = command(
        "stats",
        "per sink: backlog, oldest undelivered age, in flight, dead letters",
        """Per sink: events not yet delivered, the age of the oldest, events on their way (asked of the running
        bridge's /healthz) and dead letters. Read-only: it works beside the running bridge.""",
        [("hubbridge spool stats", "the installed bridge"), ("hubbridge spool stats -c bridge.yaml --json", "JSON")],
    )
    stats.add_argument("--json", action="store_true", help="one JSON object per sink")
    dl = command(
        "dead-letters",
        "list events a sink could never deliver, newest first",
        """List the events a sink refused for good (dead letters), newest first, with the reason the destination
        gave. Read-only: it works beside the running bridge.""",
        [
            ("hubbridge spool dead-letters", "all sinks"),
            ("hubbridge spool dead-letters --sink splunk --json --limit 10", "the last 10 of one sink, as JSON"),
        ],
    )
    dl.add_argument("--sink", default=None, help="only this sink")
    dl.add_argument("--json", action="store_true", help="one JSON object per line")
    dl.add_argument("--limit", type=int, default=1000)
    replay = command(
        "replay",
        "send a sink's dead letters again (original ids), also while the bridge runs",
        """Put a sink's dead letters back into its delivery, with their original ids (a receiver that
        deduplicates by id sees a resend, not a new event). A running bridge picks them up within seconds.""",
        [
            ("hubbridge spool replay --sink relay", "every dead letter of the sink relay"),
            ("hubbridge spool replay --sink relay --since 2h", "those dead-lettered in the last two hours"),
        ],
    )
    replay.add_argument("--sink", required=True)
    replay.add_argument(
        "--since", default=None, help="only those dead-lettered since T (2026-12-01T10:00, or 2h ago as 2h)"
    )
    replay.add_argument("--id", default=None, help="only the event with this id")
    purge = command(
        "purge",
        "delete a sink's dead letters for good",
        """Delete a sink's dead letters for good (they are kept up to journal.dead_letters.max_count and
        max_age otherwise).""",
        [("hubbridge spool purge --sink relay --dead-letters --before 7d", "those older than a week")],
    )
    purge.add_argument("--sink", required=True)
    purge.add_argument("--dead-letters", action="store_true", required=True, help="what to purge (required)")
    purge.add_argument(
        "--before", default=None, help="only those dead-lettered before T (a date, or 7d for 7 days ago)"
    )
    drop = command(
        "drop-sink",
        "forget a removed sink's place in the journal, and with it the events it had not delivered",
        """Forget the journal cursor of a sink that is no longer in the config (kept because of
        journal.removed_sinks: keep), and with it the events it had not delivered. Stop the bridge first.""",
        [("hubbridge spool drop-sink old-splunk", "drop what old-splunk had not delivered")],
    )
    drop.add_argument("sink", help="the name of a sink that is no longer in the config")


def run(args: argparse.Namespace) -> int:
    """Dispatch one ``spool`` subcommand."""
    cfg = load_config(args.config)
    cmd = args.spool_command
    if cmd == "drop-sink":
        return _drop_sink(cfg, args.config, args.sink)
    db = _journal_path(cfg, "nothing to show" if cmd in ("stats", "dead-letters") else "nothing to do")
    if db is None:
        return EXIT_OK
    spool = Spool(cfg, db)
    spool.write = cmd in ("replay", "purge")
    try:
        sink = getattr(args, "sink", None)
        if sink is not None:
            try:
                spool.check_sink(sink)
            except UnknownSink as exc:
                print(f"hubbridge: {exc}", file=sys.stderr)
                return EXIT_USAGE
        if cmd == "stats":
            return spool.stats(args.json)
        if cmd == "dead-letters":
            return spool.dead_letters(sink, args.json, args.limit)
        if cmd == "replay":
            return spool.replay(args.sink, parse_time(args.since, "--since"), args.id)
        if cmd == "purge":
            return spool.purge(args.sink, parse_time(args.before, "--before"))
    except sqlite3.Error as exc:
        raise BridgeError(f"cannot use the journal {db}: {exc}") from None
    finally:
        spool.close()
    return EXIT_ERROR


def parse_time(text: str | None, option: str) -> float | None:
    """An ISO date/time (local time unless it says otherwise), or a duration meaning that long ago."""
    if text is None:
        return None
    with contextlib.suppress(ValueError):
        return time.time() - parse_duration(text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(
            option, [f"{text!r} is neither a date/time (2026-12-01T10:00) nor a duration meaning ago (2h, 7d)"]
        ) from None


class UnknownSink(BridgeError):
    """A sink name the config and the journal do not know."""


def _journal_path(cfg: BridgeConfig, nothing: str) -> Path | None:
    """The journal's path; None (and a line saying why) when there is no journal yet."""
    state = cfg.state_dir
    db = state / "journal.sqlite3"
    try:
        if not state.exists():
            print(
                f"state_dir {state} does not exist: the bridge has not run with this config yet; {nothing}",
                file=sys.stderr,
            )
            return None
        if not state.is_dir():
            raise StateDirError(f"state_dir {state} is a file, not a directory; point state_dir at a directory")
        if not db.exists():
            print(f"no journal at {db}: the bridge has not run with this state_dir yet; {nothing}", file=sys.stderr)
            return None
    except OSError as exc:
        raise unusable_state_dir(state, exc) from None
    return db


class Spool:
    """One connection to the journal, beside a running bridge or not."""

    def __init__(self, cfg: BridgeConfig, path: Path) -> None:
        self.cfg = cfg
        self.path = path
        self.write = False
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _connect(self) -> sqlite3.Connection:
        # Read-only unless the command writes: looking must work for a user who may only read the journal.
        mode = "rw" if self.write else "ro"
        try:
            db = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, isolation_level=None, timeout=10.0)
            db.execute("PRAGMA busy_timeout=10000")
            check_version(db, str(self.path))  # a newer release's journal: say so, touch nothing
        except sqlite3.Error as exc:
            raise BridgeError(f"cannot open the journal {self.path}: {exc}") from None
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a journal from before that table existed: nothing in it
                return []
            raise

    def known_sinks(self) -> list[str]:
        names = [s.name for s in self.cfg.sinks]
        for table in ("cursors", "dead_letters"):
            for (name,) in self._rows(f"SELECT DISTINCT sink FROM {table}"):
                if name not in names:
                    names.append(name)
        return names

    def check_sink(self, sink: str) -> None:
        known = self.known_sinks()
        if sink not in known:
            raise UnknownSink(f"unknown sink {sink!r}: the config and the journal know {', '.join(known) or 'none'}")

    # ---------------------------------------------------------------- stats

    def stats(self, as_json: bool) -> int:
        head_rows = self._rows("SELECT COALESCE(MAX(seq), 0) FROM events")
        meta = self._rows("SELECT value FROM meta WHERE key = 'head'")
        head = max(int(head_rows[0][0]) if head_rows else 0, int(meta[0][0]) if meta else 0)
        cursors = dict(self._rows("SELECT sink, seq FROM cursors"))
        dead = dict(self._rows("SELECT sink, COUNT(*) FROM dead_letters GROUP BY sink"))
        replays = dict(self._rows("SELECT sink, COUNT(*) FROM replays GROUP BY sink"))
        held = dict(self._rows("SELECT sink, COUNT(*) FROM filter_state WHERE pending_body IS NOT NULL GROUP BY sink"))
        live = _live_status(self.cfg)
        now = time.time()
        for name in self.known_sinks():
            cursor = cursors.get(name)
            oldest = None
            if cursor is not None and head > cursor:
                row = self._rows("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (cursor,))
                with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
                    oldest = round(now - float(json.loads(row[0][0])["time"]), 1)
            flying = live.get(name, {}).get("in_flight") if live is not None else None
            info = {
                "sink": name,
                "configured": any(s.name == name for s in self.cfg.sinks),
                "backlog": head - cursor if cursor is not None else None,
                "oldest_undelivered_age": oldest,
                "in_flight": flying,
                "dead_letters": dead.get(name, 0),
                "replays_pending": replays.get(name, 0),
                "held_by_min_interval": held.get(name, 0),
                "state": live.get(name, {}).get("state") if live is not None else None,
            }
            if as_json:
                print(json.dumps(info))
                continue
            age = _age(oldest) if oldest is not None else "-"
            print(
                f"{name:<20} backlog={info['backlog'] if cursor is not None else '-'} oldest={age} "
                f"in_flight={'-' if flying is None else flying} dead_letters={info['dead_letters']} "
                f"replays_pending={info['replays_pending']} held={info['held_by_min_interval']}"
                + ("" if info["configured"] else "  (no longer configured)")
            )
        if not as_json and live is None:
            print("in_flight: '-' = the bridge is not running, or its listener is not reachable", file=sys.stderr)
        return EXIT_OK

    # ---------------------------------------------------------------- dead letters

    def dead_letters(self, sink: str | None, as_json: bool, limit: int) -> int:
        sql = "SELECT sink, seq, id, body, reason, time FROM dead_letters"
        args: tuple[Any, ...] = ()
        if sink is not None:
            sql += " WHERE sink = ?"
            args = (sink,)
        rows = self._rows(sql + " ORDER BY n DESC LIMIT ?", (*args, limit))
        for name, _seq, id_, body, reason, when in rows:
            if as_json:
                print(json.dumps({"sink": name, "id": id_, "time": when, "reason": reason, "event": json.loads(body)}))
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
                print(f"{stamp}  sink={name}  id={id_}  reason={reason}\n    {body}")
        if not as_json:
            print(
                f"{len(rows)} dead-lettered event(s)" + (f" for sink {sink}" if sink else "") + ", newest first",
                file=sys.stderr,
            )
        return EXIT_OK

    def _where(
        self, sink: str, since: float | None, before: float | None, id_: str | None
    ) -> tuple[str, tuple[Any, ...]]:
        sql, args = "sink = ?", list[Any]([sink])
        if since is not None:
            sql, args = sql + " AND time >= ?", [*args, since]
        if before is not None:
            sql, args = sql + " AND time < ?", [*args, before]
        if id_ is not None:
            sql, args = sql + " AND id = ?", [*args, id_]
        return sql, tuple(args)

    def replay(self, sink: str, since: float | None, id_: str | None) -> int:
        where, args = self._where(sink, since, None, id_)
        db = self.db
        # The bridge makes this table at start; a journal it has not opened since the upgrade may lack it.
        db.execute(
            "CREATE TABLE IF NOT EXISTS replays (n INTEGER PRIMARY KEY, sink TEXT NOT NULL, seq INTEGER NOT NULL, "
            "id TEXT NOT NULL, body TEXT NOT NULL, time REAL NOT NULL)"
        )
        db.execute("BEGIN IMMEDIATE")
        try:
            moved = db.execute(
                f"INSERT INTO replays (sink, seq, id, body, time) SELECT sink, seq, id, body, ? FROM dead_letters "
                f"WHERE {where} ORDER BY n",
                (time.time(), *args),
            ).rowcount
            db.execute(f"DELETE FROM dead_letters WHERE {where}", args)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if moved == 0:
            print(f"no dead letters of sink {sink} match; nothing to replay", file=sys.stderr)
            return EXIT_OK
        print(
            f"{moved} dead letter(s) of sink {sink} go back into delivery with their original ids: a running bridge "
            "sends them within seconds, a stopped one at its next start; any refused again are dead-lettered again",
            file=sys.stderr,
        )
        return EXIT_OK

    def purge(self, sink: str, before: float | None) -> int:
        where, args = self._where(sink, None, before, None)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            gone = db.execute(f"DELETE FROM dead_letters WHERE {where}", args).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        print(f"purged {gone} dead letter(s) of sink {sink}", file=sys.stderr)
        return EXIT_OK


def _age(seconds: float) -> str:
    """``42s``, ``5m12s``, ``3h04m``, ``12d03h``: an age as an operator reads it."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _live_status(cfg: BridgeConfig) -> dict[str, dict[str, Any]] | None:
    """The running bridge's view of its sinks (its /healthz), or None when it cannot be asked."""
    if cfg.listen_port == 0:
        return None
    host = cfg.listen_host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{cfg.listen_port}/healthz"

    async def _get() -> dict[str, dict[str, Any]] | None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session,
                session.get(url) as resp,
            ):
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None
        sinks = body.get("sinks") if isinstance(body, dict) else None
        return sinks if isinstance(sinks, dict) else None

    return asyncio.run(_get())


def _drop_sink(cfg: BridgeConfig, path: str, sink: str) -> int:
    if any(s.name == sink for s in cfg.sinks):
        print(f"hubbridge: sink {sink!r} is still in {path}; remove it from the config first", file=sys.stderr)
        return EXIT_USAGE
    db = _journal_path(cfg, "nothing to drop")
    if db is None:
        return EXIT_OK

    async def _drop() -> int:
        from bridge.journal import Journal, StateDirLock

        lock = StateDirLock(cfg.state_dir)
        try:
            lock.acquire()
        except StateDirLocked as exc:
            raise StateDirLocked(f"{exc}: stop the bridge before dropping a sink") from None
        journal = Journal(db)
        await journal.open()
        try:
            dropped = await journal.drop_sink(sink)
        finally:
            await journal.close()
            lock.release()
        if dropped < 0:
            print(f"the journal has no place for a sink {sink!r}; nothing to drop", file=sys.stderr)
        else:
            print(f"dropped sink {sink!r}: {dropped} undelivered event(s) will not be delivered to it", file=sys.stderr)
        return EXIT_OK

    return asyncio.run(_drop())
