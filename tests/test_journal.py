"""Tests for the diff (bridge.state), the SQLite journal (bridge.journal) and ingest (bridge.pipeline).

Everything runs against a real journal file in tmp_path, with its committer task running.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import JournalFull
from bridge.events import Reading, event_id
from bridge.journal import Journal
from bridge.pipeline import Pipeline
from bridge.state import MOMENTARY_DUPLICATE_WINDOW, Differ
from tests.helpers import CONTRACT_FIELDS, running_journal

BIG = 1 << 30


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite3"


@pytest.fixture
async def journal(journal_path: Path) -> AsyncIterator[Journal]:
    async with running_journal(journal_path) as j:
        yield j


def temp(device: str, value: Any, **kw: Any) -> Reading:
    return Reading(
        "device", device, "temperature", value, "poll", device=f"Sensor {device}", room="Hall", unit="°C", **kw
    )


def switch(device: str, value: Any, source: Any = "poll") -> Reading:
    return Reading("device", device, "switch", value, source, device=f"Lamp {device}")


def button(value: Any, description: str | None = None) -> Reading:
    return Reading("device", "9", "pushed", value, "eventsocket", description=description, momentary=True)


async def all_records(journal: Journal) -> list[Any]:
    return await journal.read(0, 1_000_000, BIG)


# ------------------------------------------------------------------------------------------------ the diff


def test_differ_emits_only_changes() -> None:
    d = Differ("install-1")
    events, rows = d.diff("home", "hubitat", [temp("1", 21.5)], now=100.0)
    assert len(events) == 1 and len(rows) == 1
    ev = events[0]
    assert (ev.value, ev.previous, ev.time, ev.hub, ev.hub_type) == (21.5, None, 100.0, "home", "hubitat")
    assert (ev.device_id, ev.device, ev.room, ev.unit, ev.attribute) == ("1", "Sensor 1", "Hall", "°C", "temperature")

    # Unchanged: nothing.
    assert d.diff("home", "hubitat", [temp("1", 21.5)], now=101.0) == ([], [])
    # Changed: previous is the last known value.
    events, _ = d.diff("home", "hubitat", [temp("1", 22.0)], now=102.0)
    assert [(e.value, e.previous) for e in events] == [(22.0, 21.5)]
    # The same attribute on another hub or device is its own state.
    events, _ = d.diff("cellar", "hubitat", [temp("1", 22.0)])
    assert [(e.hub, e.previous) for e in events] == [("cellar", None)]


def test_differ_uses_the_hub_time_when_given() -> None:
    events, _ = Differ("i").diff("home", "hubitat", [temp("1", 1, time=1234.5)], now=2000.0)
    assert events[0].time == 1234.5


@pytest.mark.parametrize(
    ("first", "second", "changed"),
    [
        (29, 29.0, False),
        (29.0, 29, False),
        (True, 1, True),
        (1, True, True),
        (False, 0, True),
        ("1", 1, True),
        (1, "1", True),
        ("on", "on", False),
        (None, None, False),
        ([1, 2], [1, 2], False),
        ({"a": 1}, {"a": 2}, True),
    ],
)
def test_differ_value_equality(first: Any, second: Any, changed: bool) -> None:
    d = Differ("i")
    d.diff("home", "hubitat", [switch("1", first)])
    events, _ = d.diff("home", "hubitat", [switch("1", second)])
    assert bool(events) is changed
    if changed:
        assert events[0].previous == first and type(events[0].previous) is type(first)


def test_momentary_readings() -> None:
    d = Differ("i")
    w = MOMENTARY_DUPLICATE_WINDOW
    assert len(d.diff("home", "hubitat", [button(1, "pushed 1")], now=100.0)[0]) == 1
    # The same frame again within the window: a duplicate, dropped.
    assert d.diff("home", "hubitat", [button(1, "pushed 1")], now=100.0 + w / 2)[0] == []
    # The same value again later: a second press.
    events, _ = d.diff("home", "hubitat", [button(1, "pushed 1")], now=100.0 + 2 * w)
    assert len(events) == 1
    assert events[0].previous == 1
    # Within the window but a different value (another button): a real event.
    assert len(d.diff("home", "hubitat", [button(2, "pushed 2")], now=100.0 + 2 * w + 0.01)[0]) == 1
    # Each emitted press has its own id.
    ids = {
        e.id for now in (200.0, 200.0 + 2 * w, 200.0 + 4 * w) for e in d.diff("home", "hubitat", [button(3)], now)[0]
    }
    assert len(ids) == 3


def test_ids_are_deterministic() -> None:
    readings = [switch("1", "on"), temp("2", 20)]
    a, _ = Differ("install-A").diff("home", "hubitat", readings)
    b, _ = Differ("install-A").diff("home", "hubitat", readings)
    assert [e.id for e in a] == [e.id for e in b]
    assert a[0].id == event_id("install-A", "home", "device", "1", "switch", 1)

    # Another installation: other ids for the same changes.
    c, _ = Differ("install-B").diff("home", "hubitat", readings)
    assert not {e.id for e in a} & {e.id for e in c}

    # on, off, on: three changes, three ids, although the value repeats.
    d = Differ("install-A")
    ids = [d.diff("home", "hubitat", [switch("1", v)])[0][0].id for v in ("on", "off", "on")]
    assert len(set(ids)) == 3
    assert ids[0] == a[0].id


async def test_new_journal_gives_new_ids_reopened_journal_keeps_them(tmp_path: Path) -> None:
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


# ------------------------------------------------------------------------------------------------ pipeline


async def test_pipeline_persists_last_known_values(journal_path: Path) -> None:
    async with running_journal(journal_path) as j:
        p = await Pipeline.open(j)
        first = await p.ingest(
            "home", "hubitat", [temp("1", 29.0), switch("2", "on"), switch("3", True), switch("4", "1")]
        )
        assert [e.previous for e in first] == [None, None, None, None]
        head = j.head

    async with running_journal(journal_path) as j:
        assert j.head == head
        p = await Pipeline.open(j)
        assert len(p.differ) == 4
        # The same values (29 is the same temperature as 29.0): nothing to emit, nothing journalled.
        unchanged = await p.ingest("home", "hubitat", [temp("1", 29), switch("2", "on"), switch("3", True)])
        assert unchanged == []
        assert j.head == head
        # Changes after the restart carry the persisted previous value, with their original type.
        changed = await p.ingest("home", "hubitat", [temp("1", 30.5), switch("3", 1), switch("4", 1)])
        assert [(e.device_id, e.value, e.previous) for e in changed] == [
            ("1", 30.5, 29.0),
            ("3", 1, True),
            ("4", 1, "1"),
        ]
        assert changed[1].previous is True
        assert j.head == head + 3
        # The per-attribute counter survived too: no id repeats one from before the restart.
        assert not {e.id for e in changed} & {e.id for e in first}
        records = await all_records(j)
        assert [r.event()["value"] for r in records[-3:]] == [30.5, 1, 1]


async def test_ingest_returns_after_commit_and_events_are_readable(journal: Journal) -> None:
    p = await Pipeline.open(journal)
    events = await p.ingest("home", "hubitat", [temp("1", 20), switch("1", "off")])
    records = await all_records(journal)
    assert [r.seq for r in records] == [1, 2]
    assert [r.id for r in records] == [e.id for e in events]
    assert [r.event() for r in records] == [e.to_dict() for e in events]


async def test_group_commit_of_concurrent_ingests(journal: Journal) -> None:
    p = await Pipeline.open(journal)
    results = await asyncio.wait_for(
        asyncio.gather(*(p.ingest("home", "hubitat", [switch(str(n), "on")]) for n in range(200))), 30
    )
    assert all(len(r) == 1 for r in results)
    records = await all_records(journal)
    assert [r.seq for r in records] == list(range(1, 201))
    assert journal.head == 200
    assert len({r.id for r in records}) == 200
    # In arrival order: ingest n is seq n+1.
    assert [r.event()["device_id"] for r in records] == [str(n) for n in range(200)]
    assert [r.id for r in records] == [r[0].id for r in results]
    # They were grouped: far fewer transactions than ingests.
    assert journal.commits < 200


async def test_json_body_is_the_event_contract(journal: Journal) -> None:
    p = await Pipeline.open(journal)
    await p.ingest("home", "hubitat", [temp("176", 21.5, description="Sensor 176 temperature is 21.5°C")])
    await p.ingest("home", "hubitat", [temp("176", 22)])
    for record in await all_records(journal):
        assert record.body == record.body.strip() and "\n" not in record.body
        obj = json.loads(record.body)
        assert list(obj) == CONTRACT_FIELDS
        assert obj["id"] == record.id
    first, second = (r.event() for r in await all_records(journal))
    assert first == {
        "id": first["id"],
        "time": first["time"],
        "hub": "home",
        "hub_type": "hubitat",
        "kind": "device",
        "device_id": "176",
        "device": "Sensor 176",
        "room": "Hall",
        "attribute": "temperature",
        "value": 21.5,
        "previous": None,
        "unit": "°C",
        "source": "poll",
        "description": "Sensor 176 temperature is 21.5°C",
    }
    assert isinstance(first["time"], float)
    assert (second["value"], second["previous"]) == (22, 21.5)
    assert "°C" in (await all_records(journal))[0].body  # UTF-8, not \u escapes


# ------------------------------------------------------------------------------------------------ reading


async def test_read_limits(journal: Journal) -> None:
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


async def test_journal_full_records_nothing(journal_path: Path) -> None:
    async with running_journal(journal_path, max_bytes=1500) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["s"])
        await p.ingest("home", "hubitat", [temp("1", 20.0)])
        while not j.full:
            await p.ingest("home", "hubitat", [switch(str(j.head), "on")])
        head, pending = j.head, j.pending_bytes
        assert pending >= 1500

        with pytest.raises(JournalFull):
            await p.ingest("home", "hubitat", [temp("1", 21.0)])
        with pytest.raises(JournalFull):
            await p.ingest("home", "hubitat", [switch("new", "on")])
        # Nothing recorded, nothing remembered.
        assert (j.head, j.pending_bytes) == (head, pending)
        assert p.differ.get(("home", "device", "1", "temperature")) == 20.0
        assert p.differ.get(("home", "device", "new", "switch")) is None
        assert [r.event()["value"] for r in await all_records(j)][-1] == "on"

        # Room again once the sink caught up: the same readings are still changes, against the old values.
        await j.advance("s", head)
        await j.trim(force=True)
        assert not j.full
        events = await p.ingest("home", "hubitat", [temp("1", 21.0), switch("new", "on")])
        assert [(e.attribute, e.value, e.previous) for e in events] == [
            ("temperature", 21.0, 20.0),
            ("switch", "on", None),
        ]

    # And what the refused ingest did not record is not in the persisted state either.
    async with running_journal(journal_path, max_bytes=1500) as j:
        p = await Pipeline.open(j)
        assert p.differ.get(("home", "device", "1", "temperature")) == 21.0


async def test_journal_has_room_once_the_sink_caught_up(journal_path: Path) -> None:
    async with running_journal(journal_path, max_bytes=2000) as j:
        p = await Pipeline.open(j)
        await j.register_sinks(["s"])
        await p.ingest("home", "hubitat", [switch(str(n), "on") for n in range(20)])
        assert j.full
        # What a delivery loop does after delivering everything; nobody calls trim() by hand in production.
        await j.advance("s", j.head)
        assert not j.full
        assert await p.ingest("home", "hubitat", [switch("1", "off")])


# ------------------------------------------------------------------------------------------------ dead letters


async def test_dead_letters(journal_path: Path) -> None:
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
            ("splunk", 2, r[1].id, r[1].body, "HEC 400: Invalid data format (code 6)"),
            ("splunk", 4, r[3].id, r[3].body, "too large"),
        ]
        assert all(d.time > 0 for d in dead)
        assert await j.dead_letters("archive") == []
        assert len(await j.dead_letters("splunk", limit=1)) == 1

        # Dead letters without a cursor move are still recorded.
        await p.ingest("home", "hubitat", [switch("9", "on")])
        (new,) = await j.read(5, 10, BIG)
        await j.advance("archive", 5, dead=[(new, "later")])
        assert [d.reason for d in await j.dead_letters("archive")] == ["later"]

    async with running_journal(journal_path) as j:
        assert len(await j.dead_letters()) == 3


async def test_cli_lists_dead_letters(tmp_path: Path) -> None:
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

    result = cli("--sink", "splunk")
    assert result.returncode == 0
    assert result.stdout == ""
    assert "0 dead-lettered event(s) for sink splunk" in result.stderr
