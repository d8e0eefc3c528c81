"""The SQLite journal (bridge.journal): ids, reading, cursors, trimming, room, dead letters, and their CLI.

Everything runs against a real journal file in tmp_path, with its committer task running.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from bridge.errors import JournalError, JournalFull
from bridge.journal import Journal, SinkSpec
from bridge.pipeline import Pipeline
from tests.helpers import BIG, all_records, running_journal, switch, temp

# ------------------------------------------------------------------------------------------------ ids


async def test_new_journal_gives_new_ids_reopened_journal_keeps_them(tmp_path: Path) -> None:
    """A new state directory gives new ids for the same change; reopening a journal keeps its installation id."""
    ids = []
    for name in ("one", "two"):
        async with running_journal(tmp_path / name / "journal.sqlite3") as j:
            p = await Pipeline.open(j)
            ids.append([(j.install_id, e.id) for e in await p.ingest("home", "hubitat", [switch("1", "on")])])
    (install_1, id_1), (install_2, id_2) = ids[0][0], ids[1][0]
    assert install_1 != install_2
    assert id_1 != id_2

    async with running_journal(tmp_path / "one" / "journal.sqlite3") as j:
        assert j.install_id == install_1


# ------------------------------------------------------------------------------------------------ reading


async def test_read_limits(journal: Journal) -> None:
    """Reads stop at max_events and max_bytes, but always return at least one record."""
    p = await Pipeline.open(journal)
    await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(10)])
    records = await all_records(journal)
    sizes = [len(r.body) for r in records]

    assert [r.seq for r in await journal.read(0, 3, BIG)] == [1, 2, 3]
    assert [r.seq for r in await journal.read(4, 3, BIG)] == [5, 6, 7]
    assert [r.seq for r in await journal.read(0, 100, sizes[0] + sizes[1])] == [1, 2]
    assert [r.seq for r in await journal.read(0, 100, sizes[0] + sizes[1] + 1)] == [1, 2]
    # Always at least one record, however small the byte budget: a large event must not block a sink forever.
    assert [r.seq for r in await journal.read(0, 100, 1)] == [1]
    assert [r.seq for r in await journal.read(7, 100, 0)] == [8]
    assert await journal.read(10, 100, BIG) == []


# ------------------------------------------------------------------------------------------------ cursors


async def test_register_sinks(journal_path: Path) -> None:
    """A new sink starts at the head; a removed sink's cursor goes, and with it what only it was holding back."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["a"])
        assert j.cursors == {"a": 0}
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(5)])

        # A new sink starts at the head: it gets events from now on, not the backlog.
        await j.register_sinks(["a", "b"])
        assert j.cursors == {"a": 0, "b": 5}
        await p.ingest("home", "hubitat", [switch(str(n), "off") for n in range(3)])
        assert [r.seq for r in await all_records(j)] == list(range(1, 9))

        # Sink a is no longer configured: its cursor goes, and with it what only it was holding back.
        await j.register_sinks(["b"])
        assert j.cursors == {"b": 5}
        assert [r.seq for r in await all_records(j)] == [6, 7, 8]
        assert j.pending_bytes == sum(len(r.body) for r in await all_records(j))

    async with running_journal(journal_path) as j:
        assert j.cursors == {"b": 5}
        assert j.cursor("b") == 5
        assert [r.seq for r in await all_records(j)] == [6, 7, 8]
        assert j.pending_bytes == sum(len(r.body) for r in await all_records(j))


async def test_advance_and_trim(journal_path: Path) -> None:
    """Trimming deletes only below the slowest cursor; cursors never move back; seqs carry on after a full trim."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["fast", "slow"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(10)])
        records = await all_records(j)
        assert j.pending_bytes == sum(len(r.body) for r in records)

        await j.advance("fast", 10)
        await j.advance("slow", 4)
        await j.trim(force=True)
        assert (j.cursor("fast"), j.cursor("slow")) == (10, 4)
        # Below the slowest cursor only.
        assert [r.seq for r in await all_records(j)] == list(range(5, 11))
        assert j.pending_bytes == sum(len(r.body) for r in records[4:])

        # A cursor never moves back.
        await j.advance("slow", 2)
        assert j.cursor("slow") == 4

        await j.advance("slow", 10)
        await j.trim(force=True)
        assert await all_records(j) == []
        assert j.pending_bytes == 0
        assert j.head == 10

    # After a full trim, seqs carry on from the head (a sink's cursor must never point past a reused seq).
    async with running_journal(journal_path) as j:
        assert j.head == 10
        assert (j.cursor("fast"), j.cursor("slow")) == (10, 10)
        assert j.pending_bytes == 0
        p = await Pipeline.open(j)
        await p.ingest("home", "hubitat", [switch("1", "off")])
        assert [r.seq for r in await all_records(j)] == [11]


def big(device: str, n: int) -> Any:
    """A reading whose event is about 2 KB: a few thousand fill a small journal."""
    return switch(device, f"{n}-" + "x" * 2000)


async def fill(p: Pipeline, j: Journal) -> None:
    n = 0
    while not j.full:
        await p.ingest("home", "hubitat", [big(str(n % 50), n) for n in range(n, n + 20)])
        n += 20


async def test_journal_full_records_nothing(journal_path: Path) -> None:
    """A full journal refuses new events before diffing: nothing recorded, nothing remembered, until there is room."""
    async with running_journal(journal_path, max_bytes=4 * 1024**2) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["s"])
        await p.ingest("home", "hubitat", [temp("1", 20.0)])
        await fill(p, j)
        head, pending = j.head, j.pending_bytes
        assert j.disk.used_bytes >= j.limit

        with pytest.raises(JournalFull):
            await p.ingest("home", "hubitat", [temp("1", 21.0)])
        with pytest.raises(JournalFull):
            await p.ingest("home", "hubitat", [switch("new", "on")])
        assert (j.head, j.pending_bytes) == (head, pending)
        assert p.differ.get(("home", "device", "1", "temperature")) == 20.0
        assert p.differ.get(("home", "device", "new", "switch")) is None

        # Room again once the sink caught up: the same readings are still changes, against the old values.
        await j.advance("s", head)
        assert not j.full
        events = await p.ingest("home", "hubitat", [temp("1", 21.0), switch("new", "on")])
        assert [(e.attribute, e.value, e.previous) for e in events] == [
            ("temperature", 21.0, 20.0),
            ("switch", "on", None),
        ]

    # And what the refused ingest did not record is not in the persisted state either.
    async with running_journal(journal_path, max_bytes=4 * 1024**2) as j:
        p = await Pipeline.open(j)
        assert p.differ.get(("home", "device", "1", "temperature")) == 21.0


async def test_wait_room_returns_once_the_sink_caught_up(journal_path: Path) -> None:
    """A source waiting for room is woken by the delivery that frees it, with no polling of its own."""
    async with running_journal(journal_path, max_bytes=4 * 1024**2) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["s"])
        await fill(p, j)
        waiter = asyncio.ensure_future(j.wait_room())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        # What a delivery loop does after delivering everything; nobody calls trim() by hand in production.
        await j.advance("s", j.head)
        await asyncio.wait_for(waiter, 5)
        assert await p.ingest("home", "hubitat", [switch("1", "off")])


async def test_sizes_are_counted_in_utf8_bytes(journal: Journal) -> None:
    """What the journal holds is measured in bytes on disk, not characters ("°C" is 3 bytes, not 2)."""
    p = await Pipeline.open(journal)
    await p.ingest("home", "hubitat", [temp("1", 20.5), switch("2", "Température élevée ☃")])
    records = await all_records(journal)
    assert journal.pending_bytes == sum(len(r.body.encode("utf-8")) for r in records)
    assert journal.pending_bytes > sum(len(r.body) for r in records)


# ------------------------------------------------------------------------------------------------ dead letters


async def test_dead_letters(journal_path: Path) -> None:
    """Dead letters keep the event, sink, reason and time after the log is trimmed, newest first."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["splunk", "archive"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(5)])
        r = await all_records(j)
        await j.advance("splunk", 5, dead=[(r[1], "HEC 400: Invalid data format (code 6)"), (r[3], "too large")])
        await j.advance("archive", 5)
        await j.trim(force=True)
        assert await all_records(j) == []  # trimmed from the log, but kept as dead letters

        dead = await j.dead_letters()
        assert [(d.sink, d.seq, d.id, d.body, d.reason) for d in dead] == [
            ("splunk", 4, r[3].id, r[3].body, "too large"),
            ("splunk", 2, r[1].id, r[1].body, "HEC 400: Invalid data format (code 6)"),
        ]
        assert all(d.time > 0 for d in dead)
        assert await j.dead_letters("archive") == []
        assert [d.seq for d in await j.dead_letters("splunk", limit=1)] == [4]  # the newest

        # Dead letters without a cursor move are still recorded.
        await p.ingest("home", "hubitat", [switch("9", "on")])
        (new,) = await j.read(5, 10, BIG)
        await j.advance("archive", 5, dead=[(new, "later")])
        assert [d.reason for d in await j.dead_letters("archive")] == ["later"]

    async with running_journal(journal_path) as j:
        assert len(await j.dead_letters()) == 3


async def test_cli_lists_dead_letters(tmp_path: Path) -> None:
    """`hubbridge spool dead-letters` lists them with reason and body, as text or JSON, per sink."""
    config = tmp_path / "hubbridge.yaml"
    config.write_text(
        "state_dir: ./state\nsinks:\n  - name: archive\n    type: file\n    path: ./events.jsonl\n", encoding="utf-8"
    )
    async with running_journal(tmp_path / "state" / "journal.sqlite3") as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["archive"])
        await p.ingest("home", "hubitat", [switch("1", "on"), switch("2", "on")])
        r = await all_records(j)
        await j.advance("archive", 2, dead=[(r[1], "file refused: no space left on device")])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli", "spool", "dead-letters", "-c", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env=dict(os.environ),
        )

    result = cli()
    assert result.returncode == 0, result.stderr
    assert "sink=archive" in result.stdout
    assert f"id={r[1].id}" in result.stdout
    assert "reason=file refused: no space left on device" in result.stdout
    assert r[1].body in result.stdout
    assert r[0].id not in result.stdout
    assert "1 dead-lettered event(s)" in result.stderr

    result = cli("--json")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    obj = json.loads(line)
    assert obj["sink"] == "archive"
    assert obj["reason"] == "file refused: no space left on device"
    assert obj["event"] == r[1].event()

    # A sink neither configured nor in the journal is a mistake to point out, not an empty (reassuring) list.
    result = cli("--sink", "splunk")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown sink 'splunk'" in result.stderr and "archive" in result.stderr


async def test_dead_letters_are_purged_by_count_and_age(journal_path: Path) -> None:
    """Only the newest max_count dead letters are kept, and none older than max_age."""
    async with running_journal(journal_path, dead_letter_max_count=3, dead_letter_max_age=3600) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["s"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(6)])
        r = await all_records(j)
        await j.advance("s", 6, dead=[(rec, f"bad {rec.seq}") for rec in r])
        assert [d.seq for d in await j.dead_letters()] == [6, 5, 4]
        # One of those is older than max_age (as if written two hours ago): the next upkeep purges it.
        await j._call(lambda: j.db.execute("UPDATE dead_letters SET time = time - 7200 WHERE seq = 4"))
        await j.trim(force=True, maintain=True)
        assert [d.seq for d in await j.dead_letters()] == [6, 5]


async def test_a_removed_sink_with_a_backlog_is_dropped_with_a_warning_saying_how_many(journal_path: Path) -> None:
    """Removing a sink that had undelivered events says how many were dropped for it (never silently)."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["a", "b"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(7)])
        await j.advance("a", 7)
        await j.advance("b", 2)
        with structlog.testing.capture_logs() as logs:
            await j.register_sinks(["a"])
        (line,) = [e for e in logs if e["log_level"] == "warning"]
        assert (line["sink"], line["dropped"]) == ("b", 5)
        assert "renamed_from" in line["event"] and "removed_sinks: keep" in line["event"]
        assert await all_records(j) == []


async def test_a_renamed_sink_keeps_its_backlog(journal_path: Path) -> None:
    """A sink configured with renamed_from takes over the old name's place: nothing is skipped or repeated."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["splunk"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(5)])
        await j.advance("splunk", 2)
        await j.register_sinks([SinkSpec("splunk-prod", renamed_from="splunk")])
        assert j.cursors == {"splunk-prod": 2}
        assert [r.seq for r in await all_records(j)] == [3, 4, 5]


async def test_keep_removed_sinks_holds_their_backlog_until_dropped(journal_path: Path, tmp_path: Path) -> None:
    """With removed_sinks: keep, a removed sink's events stay (and warn) until `spool drop-sink` drops them."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["a", "b"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(4)])
        await j.advance("a", 4)
        with structlog.testing.capture_logs() as logs:
            await j.register_sinks(["a"], keep_removed=True)
        assert [(e["sink"], e["undelivered"]) for e in logs if e["log_level"] == "warning"] == [("b", 4)]
        assert len(await all_records(j)) == 4
    config = tmp_path / "hubbridge.yaml"
    config.write_text(
        f"state_dir: {journal_path.parent}\nsinks:\n  - name: a\n    type: file\n    path: ./e.jsonl\n",
        encoding="utf-8",
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge.cli", "spool", "drop-sink", "-c", str(config), "b"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "dropped sink 'b': 4 undelivered event(s)" in result.stderr
    async with running_journal(journal_path) as j:
        assert j.cursors == {"a": 4}
        assert await all_records(j) == []


async def test_close_commits_what_is_queued_and_answers_every_caller(journal_path: Path) -> None:
    """Closing the journal while appends are queued or being committed resolves every one of them."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        ingests = [asyncio.ensure_future(p.ingest("home", "hubitat", [switch(str(n), "on")])) for n in range(50)]
        await asyncio.sleep(0)  # all diffed and queued; a commit is on its way
        await j.close()
        results = await asyncio.wait_for(asyncio.gather(*ingests, return_exceptions=True), 5)
        assert all(isinstance(r, list) and len(r) == 1 for r in results), results
    async with running_journal(journal_path) as j:
        assert j.head == 50


async def test_a_damaged_journal_file_says_so(tmp_path: Path) -> None:
    """A journal file that is not a database at all gets one line saying to move it aside, not a wrong hint."""
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not a database, it is a text file someone copied over it\n" * 100)
    journal = Journal(path)
    with pytest.raises(JournalError, match=r"not a SQLite database .* move it aside"):
        await journal.open()
    await journal.close()


async def test_a_cursor_change_the_disk_refuses_is_one_clear_error_and_changes_nothing(journal_path: Path) -> None:
    """Registering or dropping sinks on a journal that cannot be written is a JournalError naming what failed;
    the cursors stay as they were (in memory and on disk), and the journal takes the same change later."""
    async with running_journal(journal_path) as j:
        await j.register_sinks(["a", "b"])
    reader = Journal(journal_path, inspect=True)  # opened read-only: every write fails in SQLite
    await reader.open()
    try:
        with pytest.raises(JournalError, match=r"cannot drop the cursor of sink b .*readonly"):
            await reader.drop_sink("b")
        with pytest.raises(JournalError, match=r"cannot record the sinks' cursors .*readonly"):
            await reader.register_sinks(["a", "c"])
        assert reader.cursors == {"a": 0, "b": 0}
        # The failed transactions were rolled back: the connection still reads.
        assert await reader.dead_letters() == []
    finally:
        await reader.close()
    async with running_journal(journal_path) as j:
        assert j.cursors == {"a": 0, "b": 0}
        assert await j.drop_sink("b") == 0
        assert j.cursors == {"a": 0}


async def test_inspecting_a_journal_changes_nothing_in_it(journal_path: Path) -> None:
    """`spool` commands read a journal beside a running bridge without writing, migrating or checkpointing it."""
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["s"])
        await p.ingest("home", "hubitat", [switch("1", "on")])
        # The WAL index (-shm) takes readers' marks by design; the data files must not change.
        files = {f.name: f.read_bytes() for f in journal_path.parent.iterdir() if not f.name.endswith("-shm")}
        reader = Journal(journal_path, inspect=True)
        await reader.open()
        assert (reader.head, reader.cursors) == (1, {"s": 0})
        assert await reader.dead_letters() == []
        await reader.close()
        assert {f.name: f.read_bytes() for f in journal_path.parent.iterdir() if not f.name.endswith("-shm")} == files
