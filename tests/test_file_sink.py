"""The JSON-lines file sink (bridge.sinks.file) driven by the real delivery loop (bridge.delivery) and journal.

The second half checks the delivery loop's own semantics (split, dead-letter, retry, hold, ack) with a small
scripted sink, since a file never rejects a record or acknowledges late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.config import FileSinkConfig
from bridge.delivery import Delivery
from bridge.events import Event, Reading
from bridge.journal import Journal, Record
from bridge.pipeline import Pipeline
from bridge.sinks.base import Delivered, Hold, Outcome, Rejected, Retry, Sink, TooLarge
from bridge.sinks.file import FileSink
from tests.helpers import CONTRACT_FIELDS, wait_until

BIG = 1 << 30
GUARD = 10.0  # seconds; a hang guard, never a speed assertion


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
async def pipeline(journal: Journal) -> Pipeline:
    return await Pipeline.open(journal)


_counter = 0


def readings(n: int) -> list[Reading]:
    """``n`` distinct changes (each a new value of some switch or temperature)."""
    global _counter
    out = []
    for _ in range(n):
        _counter += 1
        c = _counter
        if c % 2:
            out.append(Reading("device", str(c % 7), "temperature", 15 + c / 10, "poll", device="T", unit="°C"))
        else:
            out.append(Reading("device", str(c % 5), "level", c, "eventsocket", device="Dimmer", room="Hall"))
    return out


async def ingest(pipeline: Pipeline, n: int) -> list[Event]:
    events = await pipeline.ingest("home", "hubitat", readings(n))
    assert len(events) == n
    return events


@contextlib.asynccontextmanager
async def delivering(sink: Sink, journal: Journal, **kwargs: Any) -> AsyncIterator[Delivery]:
    options: dict[str, Any] = {"max_wait": 0.0, "retry_initial": 0.01, "retry_max": 0.05, "send_timeout": 5.0}
    options.update(kwargs)
    delivery = Delivery(sink, journal, **options)
    task = asyncio.create_task(delivery.run())
    try:
        yield delivery
    finally:
        crashed = task.done() and not task.cancelled() and task.exception() is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not crashed, f"the delivery loop crashed: {task.exception()!r}"


async def caught_up(journal: Journal, name: str) -> None:
    await wait_until(lambda: journal.cursor(name) == journal.head, f"sink {name} delivered everything")


async def deliver_all(sink: Sink, journal: Journal, **kwargs: Any) -> None:
    """Start ``sink``, run its delivery loop until everything journalled is delivered, close it."""
    await sink.start()
    try:
        async with delivering(sink, journal, **kwargs):
            await caught_up(journal, sink.name)
    finally:
        await sink.close()


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


# ------------------------------------------------------------------------------------------------ delivery loop


class ScriptedSink(Sink):
    """A sink whose answers are scripted per call. ``accepted`` is what the destination would now hold."""

    kind = "scripted"

    def __init__(self, respond: Callable[[list[int], int], Outcome]) -> None:
        super().__init__("scripted")
        self.respond = respond
        self.calls: list[list[int]] = []
        self.times: list[float] = []
        self.accepted: list[int] = []
        self.outcomes: list[Outcome] = []

    async def send(self, batch: Sequence[Record]) -> Outcome:
        seqs = [r.seq for r in batch]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a batch must be contiguous, in journal order"
        self.calls.append(seqs)
        self.times.append(time.monotonic())
        outcome = self.respond(seqs, len(self.calls))
        self.outcomes.append(outcome)
        if isinstance(outcome, Delivered):
            self.accepted.extend(seqs)
        elif isinstance(outcome, Rejected) and outcome.index is not None:
            self.accepted.extend(seqs[: outcome.index])
        return outcome


async def scripted(
    journal: Journal, pipeline: Pipeline, n: int, respond: Callable[[list[int], int], Outcome]
) -> ScriptedSink:
    sink = ScriptedSink(respond)
    await journal.register_sinks([sink.name])
    await ingest(pipeline, n)
    return sink


async def dead(journal: Journal) -> list[tuple[int, str]]:
    return [(d.seq, d.reason) for d in await journal.dead_letters("scripted")]


async def test_rejected_with_index(journal: Journal, pipeline: Pipeline) -> None:
    def respond(seqs: list[int], call: int) -> Outcome:
        if 4 in seqs:
            return Rejected("field 'value' is invalid", index=seqs.index(4))
        return Delivered()

    sink = await scripted(journal, pipeline, 10, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        await caught_up(journal, "scripted")
        # The loop keeps going afterwards.
        await ingest(pipeline, 2)
        await caught_up(journal, "scripted")
    # The prefix was accepted by the first call and is not resent; the rest follows the bad record.
    assert sink.calls == [list(range(1, 11)), list(range(5, 11)), [11, 12]]
    assert sink.accepted == [1, 2, 3, *range(5, 13)]
    assert await dead(journal) == [(4, "field 'value' is invalid")]
    assert journal.cursor("scripted") == 12
    assert (delivery.status.delivered, delivery.status.dead_lettered) == (11, 1)


@pytest.mark.parametrize("bad", [1, 5, 8])
async def test_rejected_without_index_bisects(journal: Journal, pipeline: Pipeline, bad: int) -> None:
    def respond(seqs: list[int], call: int) -> Outcome:
        return Rejected("HEC 400: Invalid data format") if bad in seqs else Delivered()

    sink = await scripted(journal, pipeline, 8, respond)
    async with delivering(sink, journal, max_events=100):
        await caught_up(journal, "scripted")
    assert Counter(sink.accepted) == Counter(s for s in range(1, 9) if s != bad)
    assert sorted(sink.accepted) == sink.accepted  # still in journal order
    assert await dead(journal) == [(bad, "HEC 400: Invalid data format")]
    assert journal.cursor("scripted") == 8
    # Isolating one bad record among 8 takes a handful of sends, not one per record.
    assert len(sink.calls) <= 8


async def test_too_large_splits(journal: Journal, pipeline: Pipeline) -> None:
    def respond(seqs: list[int], call: int) -> Outcome:
        return TooLarge("413 request entity too large") if len(seqs) > 3 else Delivered()

    sink = await scripted(journal, pipeline, 10, respond)
    async with delivering(sink, journal, max_events=100):
        await caught_up(journal, "scripted")
    assert sink.accepted == list(range(1, 11))
    delivered = [c for c, o in zip(sink.calls, sink.outcomes, strict=True) if isinstance(o, Delivered)]
    assert [s for c in delivered for s in c] == list(range(1, 11))
    assert all(len(c) <= 3 for c in delivered)
    assert await dead(journal) == []


async def test_too_large_single_record_is_dead_lettered(journal: Journal, pipeline: Pipeline) -> None:
    def respond(seqs: list[int], call: int) -> Outcome:
        return TooLarge("event over 1 MB") if 6 in seqs else Delivered()

    sink = await scripted(journal, pipeline, 10, respond)
    async with delivering(sink, journal, max_events=100):
        await caught_up(journal, "scripted")
    assert Counter(sink.accepted) == Counter(s for s in range(1, 11) if s != 6)
    assert await dead(journal) == [(6, "event over 1 MB")]


async def test_retry_with_delay(journal: Journal, pipeline: Pipeline) -> None:
    states: list[str] = []
    holder: dict[str, Delivery] = {}

    def respond(seqs: list[int], call: int) -> Outcome:
        states.append(holder["d"].status.state)
        return Retry("503 server busy", delay=0.1) if call <= 2 else Delivered()

    sink = await scripted(journal, pipeline, 5, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        holder["d"] = delivery
        await caught_up(journal, "scripted")
        assert delivery.status.state == "ok"
    assert sink.calls == [[1, 2, 3, 4, 5]] * 3
    assert sink.accepted == [1, 2, 3, 4, 5]
    assert states[1:] == ["retrying", "retrying"]
    # The server's delay is honoured (it is longer than retry_max).
    gaps = [b - a for a, b in zip(sink.times, sink.times[1:], strict=False)]
    assert all(g >= 0.09 for g in gaps), gaps
    assert await dead(journal) == []


async def test_hold_never_dead_letters(journal: Journal, pipeline: Pipeline) -> None:
    states: list[str] = []
    holder: dict[str, Delivery] = {}

    def respond(seqs: list[int], call: int) -> Outcome:
        states.append(holder["d"].status.state)
        return Hold("401 invalid token") if call <= 8 else Delivered()

    sink = await scripted(journal, pipeline, 5, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        holder["d"] = delivery
        await wait_until(lambda: len(sink.calls) >= 3, "a few attempts")
        assert journal.cursor("scripted") == 0
        assert delivery.status.state == "holding"
        assert delivery.status.detail == "401 invalid token"
        await caught_up(journal, "scripted")
    assert len(sink.calls) == 9
    assert all(c == [1, 2, 3, 4, 5] for c in sink.calls)  # never split
    assert "holding" in states
    assert sink.accepted == [1, 2, 3, 4, 5]
    assert await dead(journal) == []


async def test_sink_that_raises_is_retried(journal: Journal, pipeline: Pipeline) -> None:
    def respond(seqs: list[int], call: int) -> Outcome:
        if call <= 2:
            raise RuntimeError("sink bug")
        return Delivered()

    sink = await scripted(journal, pipeline, 4, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        await caught_up(journal, "scripted")
        assert delivery.status.state == "ok"
    assert sink.calls == [[1, 2, 3, 4]] * 3
    assert sink.accepted == [1, 2, 3, 4]
    assert await dead(journal) == []


async def test_sink_that_hangs_is_retried(journal: Journal, pipeline: Pipeline) -> None:
    hang = asyncio.Event()

    class Hanging(ScriptedSink):
        async def send(self, batch: Sequence[Record]) -> Outcome:
            if not self.calls:
                self.calls.append([r.seq for r in batch])
                await hang.wait()  # never set: only the loop's send_timeout ends this attempt
            return await super().send(batch)

    sink = Hanging(lambda seqs, call: Delivered())
    await journal.register_sinks([sink.name])
    await ingest(pipeline, 3)
    async with delivering(sink, journal, max_events=100, send_timeout=0.1):
        await caught_up(journal, "scripted")
    assert sink.accepted == [1, 2, 3]


async def test_ack_true_advances_only_once_confirmed(journal: Journal, pipeline: Pipeline) -> None:
    acks: list[asyncio.Future[bool]] = []

    def respond(seqs: list[int], call: int) -> Outcome:
        acks.append(asyncio.get_running_loop().create_future())
        return Delivered(ack=acks[-1])

    sink = await scripted(journal, pipeline, 6, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        await wait_until(lambda: len(sink.calls) == 1, "the batch was sent")
        await asyncio.sleep(0.2)  # give the loop every chance to (wrongly) move on
        assert journal.cursor("scripted") == 0
        assert len(sink.calls) == 1
        assert delivery.lag == 6
        acks[0].set_result(True)
        await caught_up(journal, "scripted")
    assert sink.calls == [[1, 2, 3, 4, 5, 6]]
    assert await dead(journal) == []


async def test_ack_false_resends(journal: Journal, pipeline: Pipeline) -> None:
    acks: list[asyncio.Future[bool]] = []

    def respond(seqs: list[int], call: int) -> Outcome:
        acks.append(asyncio.get_running_loop().create_future())
        return Delivered(ack=acks[-1])

    sink = await scripted(journal, pipeline, 6, respond)
    async with delivering(sink, journal, max_events=100):
        await wait_until(lambda: len(sink.calls) == 1, "the batch was sent")
        acks[0].set_result(False)  # the destination never confirmed it
        await wait_until(lambda: len(sink.calls) == 2, "the batch was resent")
        await asyncio.sleep(0.1)
        assert journal.cursor("scripted") == 0
        acks[1].set_result(True)
        await caught_up(journal, "scripted")
    assert sink.calls == [[1, 2, 3, 4, 5, 6]] * 2
    assert await dead(journal) == []
