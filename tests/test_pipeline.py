"""Ingest (bridge.pipeline): diff, encode, one journal transaction; what one bad event or one failed commit does.

Everything runs against a real journal file in tmp_path, with its committer task running. A failing commit is a real
SQLite error: the journal's connection is switched to ``query_only``, so every write fails as on a read-only disk.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import structlog

from bridge.errors import JournalError
from bridge.events import MAX_DEPTH, MAX_EVENT_BYTES, Reading
from bridge.journal import Journal
from bridge.pipeline import Pipeline
from tests.helpers import CONTRACT_FIELDS, all_records, running_journal, switch, temp


async def writes_fail(journal: Journal, failing: bool) -> None:
    """Make every write of the journal fail (a real SQLite error), or work again."""
    await journal._call(lambda: journal.db.execute(f"PRAGMA query_only={int(failing)}"))


def value(device: str, attribute: str, v: Any, hub_device: str | None = None) -> Reading:
    return Reading("device", device, attribute, v, "eventsocket", device=hub_device or f"Device {device}")


async def test_pipeline_persists_last_known_values(journal_path: Path) -> None:
    """Last-known values survive a restart: unchanged values stay silent, changes name the persisted previous."""
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
    """ingest() returns once the events are committed: a sink can read them, in order, with their ids."""
    p = await Pipeline.open(journal)
    events = await p.ingest("home", "hubitat", [temp("1", 20), switch("1", "off")])
    records = await all_records(journal)
    assert [r.seq for r in records] == [1, 2]
    assert [r.id for r in records] == [e.id for e in events]
    assert [r.event() for r in records] == [e.to_dict() for e in events]


async def test_group_commit_of_concurrent_ingests(journal: Journal) -> None:
    """Concurrent ingests share commits, keep arrival order and never share an id."""
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
    """The journalled line is the contract object, UTF-8, one line, with the contract fields in order."""
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


# ------------------------------------------------------------------------------------------------ one bad event


@pytest.mark.parametrize(
    "bad",
    [
        math.nan,
        math.inf,
        {"codes": [1, math.nan]},
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        "x" * (MAX_EVENT_BYTES + 1),
    ],
    ids=["nan", "infinity", "nan-inside", "too-deep", "too-large"],
)
async def test_an_event_that_cannot_be_stored_fails_alone(journal: Journal, bad: Any) -> None:
    """One unstorable value is refused with one line naming hub, device and attribute; other hubs' events commit."""
    assert not isinstance(bad, list) or MAX_DEPTH < 40
    p = await Pipeline.open(journal)
    with structlog.testing.capture_logs() as logs:
        results = await asyncio.gather(
            p.ingest("cellar", "hubitat", [value("7", "lockState", bad, "Cellar Lock"), switch("8", "on")]),
            p.ingest("home", "hubitat", [switch("1", "on")]),
        )
    assert [[(e.hub, e.device_id) for e in r] for r in results] == [[("cellar", "8")], [("home", "1")]]
    assert [(r.event()["hub"], r.event()["device_id"]) for r in await all_records(journal)] == [
        ("cellar", "8"),
        ("home", "1"),
    ]
    (line,) = [e for e in logs if e["log_level"] == "error"]
    assert (line["hub"], line["device_id"], line["device"], line["attribute"]) == (
        "cellar",
        "7",
        "Cellar Lock",
        "lockState",
    )
    # Nothing remembered for it: the same bad value again is refused again, a good one is a first value.
    assert p.differ.get(("cellar", "device", "7", "lockState")) is None
    (good,) = await p.ingest("cellar", "hubitat", [value("7", "lockState", "locked")])
    assert good.previous is None


async def test_a_lone_surrogate_is_made_storable(journal: Journal) -> None:
    """Half an emoji (a lone surrogate from a \\ud83d escape) is stored as U+FFFD instead of failing the commit."""
    p = await Pipeline.open(journal)
    (ev,) = await p.ingest("home", "hubitat", [value("1", "label", "Lamp \ud83d", "Lamp \ud83d")])
    (record,) = await all_records(journal)
    assert record.event()["value"] == "Lamp \ufffd" and record.event()["device"] == "Lamp \ufffd"
    assert ev.value == "Lamp \ufffd"
    record.body.encode("utf-8")  # valid UTF-8


# ------------------------------------------------------------------------------------------------ failed commits


async def test_a_failed_commit_records_nothing_and_is_taken_back(journal: Journal) -> None:
    """A commit that fails raises JournalError; its changes are forgotten, so the same readings are changes again."""
    p = await Pipeline.open(journal)
    await p.ingest("home", "hubitat", [switch("1", "off")])
    await writes_fail(journal, True)
    with pytest.raises(JournalError):
        await p.ingest("home", "hubitat", [switch("1", "on"), temp("2", 20.5)])
    await writes_fail(journal, False)
    events = await p.ingest("home", "hubitat", [switch("1", "on"), temp("2", 20.5)])
    assert [(e.value, e.previous) for e in events] == [("on", "off"), (20.5, None)]
    assert [r.event()["value"] for r in await all_records(journal)] == ["off", "on", 20.5]


async def test_ids_and_previous_stay_right_when_a_commit_fails_among_concurrent_ingests(journal: Journal) -> None:
    """After a failed commit, concurrent ingests still give every change its own id and the right previous."""
    p = await Pipeline.open(journal)
    await p.ingest("home", "hubitat", [switch(str(n), "off") for n in range(20)])
    await writes_fail(journal, True)
    failed = await asyncio.gather(
        *(p.ingest("home", "hubitat", [switch(str(n), "on")]) for n in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, JournalError) for r in failed)
    await writes_fail(journal, False)
    for _ in range(3):
        await asyncio.gather(
            *(p.ingest("home", "hubitat", [switch(str(n), v)]) for n in range(20) for v in ("on",)),
        )
        await asyncio.gather(*(p.ingest("home", "hubitat", [switch(str(n), "off")]) for n in range(20)))
    records = [r.event() for r in await all_records(journal)]
    assert len({r["id"] for r in records}) == len(records)
    last: dict[str, Any] = {}
    for r in records:
        assert r["previous"] == last.get(r["device_id"]), r
        last[r["device_id"]] = r["value"]


async def test_an_unchanged_value_is_answered_only_after_its_commit(journal: Journal) -> None:
    """A reading equal to a value still being committed returns only once that commit is durable."""
    p = await Pipeline.open(journal)
    first = asyncio.ensure_future(p.ingest("home", "hubitat", [switch("1", "on")]))
    await asyncio.sleep(0)  # the first ingest has diffed and is waiting for its commit
    copy = await p.ingest("home", "hubitat", [switch("1", "on")])
    assert copy == []
    assert first.done() and [e.value for e in first.result()] == ["on"]
    assert [r.event()["value"] for r in await all_records(journal)] == ["on"]


async def test_an_unchanged_value_whose_commit_failed_is_not_acknowledged(journal: Journal) -> None:
    """If the commit a copy depended on fails, the copy fails too, so its caller retries instead of losing it."""
    p = await Pipeline.open(journal)
    await writes_fail(journal, True)
    first = asyncio.ensure_future(p.ingest("home", "hubitat", [switch("1", "on")]))
    await asyncio.sleep(0)
    with pytest.raises(JournalError):
        await p.ingest("home", "hubitat", [switch("1", "on")])
    with pytest.raises(JournalError):
        await first
    await writes_fail(journal, False)
    assert [e.value for e in await p.ingest("home", "hubitat", [switch("1", "on")])] == ["on"]
