"""Journal upgrades (bridge.journal.schema): a journal of the first release opens in this one and loses nothing.

``fixtures/journal_v1.sqlite3`` was written by the build at commit 1386f30 (schema 1, no user_version) with
``fixtures/make_v1_journal.py``: 40 events, sink ``archive`` at seq 25, sink ``splunk`` at 0, one dead letter.
``fixtures/journal_v2.sqlite3`` was written by the build at commit 926d820 (schema 2) with
``fixtures/make_v2_journal.py``: 10 switch changes of hub ``home``, sink ``archive`` at seq 4.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from bridge.config import load_config
from bridge.errors import JournalError
from bridge.journal import SCHEMA_VERSION, Journal
from bridge.pipeline import Pipeline
from bridge.runtime import Runtime
from tests.helpers import all_records, running_journal, switch, wait_until

FIXTURE = Path(__file__).parent / "fixtures" / "journal_v1.sqlite3"
FIXTURE_V2 = Path(__file__).parent / "fixtures" / "journal_v2.sqlite3"


@pytest.fixture
def old_journal(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "journal.sqlite3"
    path.parent.mkdir()
    shutil.copy(FIXTURE, path)
    return path


async def test_a_first_release_journal_is_upgraded_in_place(old_journal: Path) -> None:
    """Opening an old journal migrates it: cursors, events, last-known values, dead letters and ids all stay."""
    before = sqlite3.connect(old_journal)
    install_id = before.execute("SELECT value FROM meta WHERE key='install_id'").fetchone()[0]
    bodies = [row[0] for row in before.execute("SELECT body FROM events ORDER BY seq")]
    before.close()
    async with running_journal(old_journal) as j:
        assert j.install_id == install_id
        assert (j.head, j.cursors) == (40, {"archive": 25, "splunk": 0})
        assert [r.body for r in await all_records(j)] == bodies
        # Sizes are bytes now (the first release counted characters).
        assert j.pending_bytes == sum(len(b.encode("utf-8")) for b in bodies)
        (dead,) = await j.dead_letters()
        assert (dead.sink, dead.seq) == ("archive", 4)
        assert await j.get_meta("home", "types") == {"1": {"switch": "ENUM", "temperature": "NUMBER"}}
        p = await Pipeline.open(j)
        assert len(p.differ) == 40
        # The counters carried over: the next change of an attribute gets a new id, never an old one.
        (ev,) = await p.ingest("home", "hubitat", [switch("1", "off")])
        assert ev.previous == "on" and ev.id not in {json.loads(b)["id"] for b in bodies}
    db = sqlite3.connect(old_journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental: the file can shrink now
    db.close()


async def test_a_schema_2_journal_gains_the_recent_values_record_and_keeps_everything(tmp_path: Path) -> None:
    """The step to schema 3 adds the (empty) record of recent values; events, cursor and last-known values stay,
    and a remembering ingest works on the upgraded file."""
    path = tmp_path / "journal.sqlite3"
    shutil.copy(FIXTURE_V2, path)
    async with running_journal(path) as j:
        assert (j.head, j.cursors) == (10, {"archive": 4})
        assert len(await all_records(j)) == 10
        assert await j.recent("home", 120.0) == []
        p = await Pipeline.open(j)
        assert p.differ.get(("home", "device", "1", "switch")) == "on"
        (ev,) = await p.ingest("home", "hubitat", [switch("1", "off", "eventsocket")], remember=True)
        assert ev.previous == "on"
        assert [(r.value, r.source) for r in await j.recent("home", 120.0)] == [("off", "eventsocket")]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()


async def test_after_the_upgrade_every_undelivered_event_arrives_once(old_journal: Path, tmp_path: Path) -> None:
    """The bridge started on an old journal delivers each sink's backlog exactly once, from where it stopped."""
    config = {
        "state_dir": str(old_journal.parent),
        "listen": "127.0.0.1:0",
        "sinks": [
            {"name": "archive", "type": "file", "path": str(tmp_path / "archive.jsonl"), "batch": {"max_wait": "0s"}},
            {"name": "splunk", "type": "file", "path": str(tmp_path / "splunk.jsonl"), "batch": {"max_wait": "0s"}},
        ],
    }
    path = tmp_path / "hubbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    runtime = Runtime(load_config(path, env={}))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await wait_until(lambda: runtime.ready.is_set() and all(s.lag == 0 for s in runtime.sinks.values()), "drained")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    archive = (tmp_path / "archive.jsonl").read_text(encoding="utf-8").splitlines()
    splunk = (tmp_path / "splunk.jsonl").read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["id"] for line in splunk]
    assert len(splunk) == 40 and len(set(ids)) == 40
    # archive had delivered the first 25: it gets the other 15, in journal order, and nothing twice.
    assert [json.loads(line)["id"] for line in archive] == ids[25:]


async def test_a_journal_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    """A journal with a schema newer than this build knows is not touched: one line says to upgrade."""
    path = tmp_path / "journal.sqlite3"
    async with running_journal(path):
        pass
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    content = path.read_bytes()
    journal = Journal(path)
    with pytest.raises(JournalError, match="newer hubbridge"):
        await journal.open()
    await journal.close()
    # Reading it made SQLite's WAL index beside it, as any reader does; the database itself is as it was.
    assert path.read_bytes() == content, "the newer journal was not touched"
