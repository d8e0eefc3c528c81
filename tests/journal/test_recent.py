"""The journal's short record of recently recorded values (``Journal.recent``), which lets a hub with two push
channels recognise, after a crash, the late copies of what it had already recorded.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bridge.pipeline import Pipeline
from tests.helpers import running_journal, switch, temp


async def test_recorded_values_survive_a_reopen_in_order_and_only_when_asked(tmp_path: Path) -> None:
    """Every change an ingest with ``remember`` recorded (two of one attribute in one batch too) comes back after
    the journal is reopened, oldest first, with its source; other hubs' and unremembered changes do not."""
    path = tmp_path / "journal.sqlite3"
    async with running_journal(path) as j:
        p = await Pipeline.open(j)
        await p.ingest(
            "home", "hubitat", [switch("1", "on", "eventsocket"), switch("1", "off", "eventsocket")], remember=True
        )
        await p.ingest("home", "hubitat", [temp("2", 21.5)], remember=True)
        await p.ingest("home", "hubitat", [switch("1", "on", "webhook")], remember=True)
        await p.ingest("home", "hubitat", [temp("2", 22.0)])  # not asked: not kept
        await p.ingest("cabin", "hubitat", [switch("1", "on", "eventsocket")], remember=True)
        # Unchanged readings record nothing (no commit of their own).
        await p.ingest("home", "hubitat", [switch("1", "on", "eventsocket")], remember=True)
    async with running_journal(path) as j:
        rows = await j.recent("home", 120.0)
        assert [(r.kind, r.device_id, r.attribute, r.value, r.source) for r in rows] == [
            ("device", "1", "switch", "on", "eventsocket"),
            ("device", "1", "switch", "off", "eventsocket"),
            ("device", "2", "temperature", 21.5, "poll"),
            ("device", "1", "switch", "on", "webhook"),
        ]
        assert all(time.time() - 60 < r.time <= time.time() for r in rows)
        assert [r.value for r in await j.recent("cabin", 120.0)] == ["on"]


async def test_the_record_is_bounded_by_age_and_by_rows(tmp_path: Path) -> None:
    """Rows older than the window go with the next commit, and never more than ``recent_max_rows`` are kept, so
    the record stays a small part of ``journal.max_bytes`` whatever the event rate."""
    path = tmp_path / "journal.sqlite3"
    async with running_journal(path, max_bytes=4 * 1024**2) as j:
        assert j.recent_max_rows * 128 <= j.max_bytes // 64
        p = await Pipeline.open(j)
        await p.ingest("home", "hubitat", [temp("1", 20.0)], remember=True)
        # As if that row had been recorded a quarter of an hour ago (the journal is the only writer otherwise).
        other = sqlite3.connect(path)
        other.execute("UPDATE recent SET time = time - 900")
        other.commit()
        other.close()
        assert await j.recent("home", 120.0) == [], "too old to be given out"
        await p.ingest("home", "hubitat", [temp("1", 20.5)], remember=True)
        assert [r.value for r in await j.recent("home", 120.0)] == [20.5]
        db = sqlite3.connect(path)
        assert db.execute("SELECT COUNT(*) FROM recent").fetchone()[0] == 1, "the expired row was deleted"
        db.close()

        burst = [temp(str(n), 100 + n) for n in range(j.recent_max_rows + 50)]
        await p.ingest("home", "hubitat", burst, remember=True)
        rows = await j.recent("home", 120.0)
        assert len(rows) == j.recent_max_rows
        assert rows[-1].value == 100 + j.recent_max_rows + 49, "the newest are kept"
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM recent").fetchone()[0] == j.recent_max_rows
    db.close()
