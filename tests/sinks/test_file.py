"""The JSON-lines file sink (bridge.sinks.file) driven by the real delivery loop (bridge.delivery) and journal."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.events import Event
from bridge.journal import Journal, Record
from bridge.pipeline import Pipeline
from bridge.sinks.base import Delivered, Outcome, Retry, Sink
from bridge.sinks.file import FileSink, FileSinkConfig
from tests.helpers import BIG, CONTRACT_FIELDS, caught_up, deliver_all, delivering, ingest, wait_until


@pytest.fixture
async def pipeline(journal: Journal) -> Pipeline:
    return await Pipeline.open(journal)


def file_config(path: Path, **kwargs: Any) -> FileSinkConfig:
    return FileSinkConfig(name="archive", type="file", path=path, **kwargs)


def lines_of(path: Path) -> list[str]:
    data = path.read_text(encoding="utf-8")
    assert data == "" or data.endswith("\n"), "the file ends in a partial line"
    return data.splitlines()


def rotated_files(path: Path) -> list[Path]:
    """``events.jsonl.N`` ... ``events.jsonl.1``: the rotated files, oldest first."""
    return sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: int(p.suffix[1:]), reverse=True)


def assert_contract_lines(lines: list[str], events: list[Event]) -> None:
    objs = [json.loads(line) for line in lines]
    for obj in objs:
        assert list(obj) == CONTRACT_FIELDS
    assert objs == [e.to_dict() for e in events]


# ------------------------------------------------------------------------------------------------ file sink


async def test_events_end_up_in_the_file_as_contract_lines(
    tmp_path: Path, journal: Journal, pipeline: Pipeline
) -> None:
    """Every event becomes one line holding exactly the contract fields, in journal order."""
    path = tmp_path / "out" / "events.jsonl"
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 7)
    sink = FileSink(file_config(path))
    await sink.start()
    assert (await sink.health()).ok
    try:
        async with delivering(sink, journal, max_events=3) as delivery:
            await caught_up(journal, "archive")
            # Events arriving while the loop runs follow, in order.
            events += await ingest(pipeline, 5)
            events += await ingest(pipeline, 1)
            await caught_up(journal, "archive")
            assert delivery.status.delivered == 13
            assert delivery.status.state == "ok"
    finally:
        await sink.close()
    lines = lines_of(path)
    assert_contract_lines(lines, events)
    assert await journal.dead_letters() == []


@pytest.mark.parametrize("fsync", [True, False])
async def test_cursor_moves_only_after_the_file_holds_the_lines(
    tmp_path: Path, journal: Journal, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """The cursor moves past a batch only once the file holds its lines (a reader never sees a gap)."""
    path = tmp_path / "events.jsonl"
    await journal.register_sinks(["archive"])
    await ingest(pipeline, 10)
    body = {r.seq: r.body for r in await journal.read(0, 100, BIG)}

    seen: list[int] = []
    problems: list[str] = []
    real_advance = journal.advance

    async def advance(sink: str, seq: int, dead: Any = ()) -> None:
        # What another process reading the file sees at the moment the cursor is about to move.
        on_disk = path.read_text(encoding="utf-8") if path.exists() else ""
        expected = "".join(body[s] + "\n" for s in range(1, seq + 1))
        if on_disk != expected:
            problems.append(f"cursor to {seq} while the file held {on_disk.count(chr(10))} lines")
        seen.append(seq)
        await real_advance(sink, seq, dead)

    monkeypatch.setattr(journal, "advance", advance)
    sink = FileSink(file_config(path, fsync=fsync))
    await deliver_all(sink, journal, max_events=3)
    assert seen == [3, 6, 9, 10]
    assert problems == []


async def test_rotation_by_size_loses_nothing(tmp_path: Path, journal: Journal, pipeline: Pipeline) -> None:
    """Rotation by size keeps every event exactly once across events.jsonl.N ... events.jsonl."""
    path = tmp_path / "events.jsonl"
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 30)
    longest = max(len(e.to_json()) + 1 for e in events)
    rotate = 3 * longest
    sink = FileSink(file_config(path, rotate_bytes=rotate, keep_files=100))
    await deliver_all(sink, journal, max_events=2)

    rotated = rotated_files(path)
    assert len(rotated) >= 8
    assert [int(p.suffix[1:]) for p in rotated] == list(range(len(rotated), 0, -1))
    for p in rotated:
        assert 0 < p.stat().st_size <= rotate
    # Oldest first: events.jsonl.N ... events.jsonl.1, events.jsonl hold every event once, in order.
    lines = [line for p in [*rotated, path] for line in lines_of(p)]
    assert_contract_lines(lines, events)


async def test_rotation_drops_the_oldest_files(tmp_path: Path, journal: Journal, pipeline: Pipeline) -> None:
    """With keep_files: 2 only the newest events stay, without a gap."""
    path = tmp_path / "events.jsonl"
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 30)
    longest = max(len(e.to_json()) + 1 for e in events)
    sink = FileSink(file_config(path, rotate_bytes=3 * longest, keep_files=2))
    await deliver_all(sink, journal, max_events=2)

    assert [p.name for p in rotated_files(path)] == ["events.jsonl.2", "events.jsonl.1"]
    lines = [
        line for name in ("events.jsonl.2", "events.jsonl.1", "events.jsonl") for line in lines_of(tmp_path / name)
    ]
    # What is kept is the newest events, without a gap.
    assert 3 <= len(lines) < 30
    assert_contract_lines(lines, events[-len(lines) :])


async def test_rotation_with_keep_files_zero(tmp_path: Path, journal: Journal, pipeline: Pipeline) -> None:
    """With keep_files: 0 a full file is simply started again."""
    path = tmp_path / "events.jsonl"
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 12)
    longest = max(len(e.to_json()) + 1 for e in events)
    sink = FileSink(file_config(path, rotate_bytes=3 * longest, keep_files=0))
    await deliver_all(sink, journal, max_events=2)
    assert rotated_files(path) == []
    lines = lines_of(path)
    assert 0 < len(lines) < 12
    assert_contract_lines(lines, events[-len(lines) :])


@pytest.mark.parametrize("delivered_before", [5, 0])
async def test_partial_last_line_is_cut_and_rewritten(
    tmp_path: Path, journal: Journal, pipeline: Pipeline, delivered_before: int
) -> None:
    """A line torn by a crash is cut at start and its events are written again, whole."""
    path = tmp_path / "events.jsonl"
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 10)
    records = await journal.read(0, 100, BIG)
    # A crash in the middle of writing the batch after `delivered_before`: its first line is torn.
    torn = records[delivered_before].body
    path.write_text(
        "".join(r.body + "\n" for r in records[:delivered_before]) + torn[: len(torn) // 2], encoding="utf-8"
    )
    if delivered_before:
        await journal.advance("archive", delivered_before)

    sink = FileSink(file_config(path))
    await sink.start()
    try:
        # The torn tail is gone as soon as the sink starts, before anything is appended.
        assert lines_of(path) == [r.body for r in records[:delivered_before]]
        async with delivering(sink, journal):
            await caught_up(journal, "archive")
    finally:
        await sink.close()
    assert_contract_lines(lines_of(path), events)


class _Counting:
    """Wraps a sink's send() to count attempts and remember outcomes."""

    def __init__(self, sink: Sink) -> None:
        self.outcomes: list[Outcome] = []
        self._send = sink.send

    async def __call__(self, batch: Sequence[Record]) -> Outcome:
        outcome = await self._send(batch)
        self.outcomes.append(outcome)
        return outcome


def _target_is_a_directory(path: Path) -> Callable[[], None]:
    path.mkdir(parents=True)
    (path / "keep").write_text("x")
    return lambda: shutil.rmtree(path)


def _parent_is_a_file(path: Path) -> Callable[[], None]:
    path.parent.write_text("not a directory")
    return path.parent.unlink


@pytest.mark.parametrize("breakage", [_target_is_a_directory, _parent_is_a_file], ids=["target-dir", "parent-file"])
async def test_unwritable_path_retries_until_fixed(
    tmp_path: Path, journal: Journal, pipeline: Pipeline, breakage: Callable[[Path], Callable[[], None]]
) -> None:
    """An unwritable path retries (nothing delivered, nothing dropped) and delivers everything once fixed."""
    path = tmp_path / "out" / "events.jsonl"
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    fix = breakage(path)
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 4)
    # Not started: start() cannot open the file yet (see test_start_with_an_unwritable_path_does_not_crash).
    sink = FileSink(file_config(path))
    counting = _Counting(sink)
    sink.send = counting  # type: ignore[method-assign]
    try:
        async with delivering(sink, journal) as delivery:
            await wait_until(lambda: len(counting.outcomes) >= 4, "several attempts")
            assert all(isinstance(o, Retry) and "cannot write" in o.reason for o in counting.outcomes)
            assert delivery.status.state == "retrying"
            assert "cannot write" in delivery.status.detail
            # Nothing delivered, nothing dropped, and events keep being journalled meanwhile.
            assert journal.cursor("archive") == 0
            events += await ingest(pipeline, 3)
            await wait_until(lambda: len(counting.outcomes) >= 6, "more attempts")
            assert journal.cursor("archive") == 0

            fix()
            await caught_up(journal, "archive")
            assert delivery.status.state == "ok"
    finally:
        await sink.close()
    assert isinstance(counting.outcomes[-1], Delivered)
    assert_contract_lines(lines_of(path), events)
    assert await journal.dead_letters() == []


async def test_start_with_an_unwritable_path_does_not_crash(
    tmp_path: Path, journal: Journal, pipeline: Pipeline
) -> None:
    """A sink that cannot open its file at start waits and retries instead of crashing."""
    path = tmp_path / "events.jsonl"
    fix = _target_is_a_directory(path)
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 3)
    sink = FileSink(file_config(path))
    await sink.start()
    try:
        async with delivering(sink, journal) as delivery:
            await wait_until(lambda: delivery.status.state == "retrying", "the loop retries")
            fix()
            await caught_up(journal, "archive")
    finally:
        await sink.close()
    assert_contract_lines(lines_of(path), events)


async def test_a_write_slower_than_send_timeout_never_gets_a_second_writer(
    tmp_path: Path, journal: Journal, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that outlives send_timeout (a slow disk) finishes alone: one writer at a time, no line twice."""
    path = tmp_path / "events.jsonl"
    await journal.register_sinks(["archive"])
    events = await ingest(pipeline, 5)
    lock = threading.Lock()
    active, most = 0, 0
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        # The disk: each fsync takes longer than the delivery loop waits for one attempt.
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.3)
        real_fsync(fd)
        with lock:
            active -= 1

    monkeypatch.setattr(os, "fsync", slow_fsync)
    sink = FileSink(file_config(path))
    await sink.start()
    try:
        async with delivering(sink, journal, max_events=1, send_timeout=0.05) as delivery:
            await caught_up(journal, "archive")
            assert delivery.status.delivered == 5
    finally:
        await sink.close()
    assert most == 1
    assert_contract_lines(lines_of(path), events)
