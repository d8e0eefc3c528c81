"""The hub runner (bridge.sources.runner): what every hub gets, whatever its family, shown with a small source.

``ScriptedSource`` is a real :class:`~bridge.sources.base.Source` (the contract a Homey or NATS source implements):
its poll returns what the test put in its "hub", and its stream pushes through the runner's queue. The journal is
real; a failing commit is a real SQLite error (the connection switched to ``query_only``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bridge.errors import HubUnavailable, JournalError
from bridge.events import Reading, SourceName
from bridge.journal import Journal
from bridge.options import HubConfigBase
from bridge.pipeline import Pipeline
from bridge.sources.base import HubContext, Source, Stream
from bridge.sources.runner import HubRunner, HubStatus
from tests.helpers import all_records, running_journal, wait_until


class ScriptedSource(Source):
    """A hub whose state is a dict the test edits; ``failing`` makes polls raise like an unreachable hub."""

    type_name = "scripted"
    hub_type = "scripted"
    Config = HubConfigBase
    state: ClassVar[dict[str, Any]] = {}
    polls: ClassVar[list[float]] = []
    failing: ClassVar[bool] = False
    poll_time: ClassVar[float] = 0.0
    overlaps: ClassVar[int] = 0
    live: ClassVar[bool] = False
    stream_items: ClassVar[asyncio.Queue[Reading] | None] = None
    instance: ClassVar[ScriptedSource | None] = None

    def __init__(self, cfg: HubConfigBase, hub: HubContext) -> None:
        super().__init__(cfg, hub)
        self._polling = False
        ScriptedSource.instance = self

    async def poll(self, source: SourceName) -> list[Reading]:
        if self._polling:
            ScriptedSource.overlaps += 1
        self._polling = True
        try:
            ScriptedSource.polls.append(asyncio.get_running_loop().time())
            if self.poll_time:
                await asyncio.sleep(self.poll_time)
            if self.failing:
                raise HubUnavailable(self.cfg.name, "GET /state: cannot connect to the hub: connection refused")
            return [Reading("device", d, "switch", v, source) for d, v in self.state.items()]
        finally:
            self._polling = False

    def streams(self) -> dict[str, Stream]:
        return {"stream": self._stream} if self.stream_items is not None else {}

    async def _stream(self) -> None:
        assert self.stream_items is not None
        while True:
            reading = await self.stream_items.get()
            await self.hub.push([reading], size=100, track=False)

    @property
    def stream_live(self) -> bool:
        return self.live


@pytest.fixture(autouse=True)
def _fresh_script() -> None:
    ScriptedSource.state = {"1": "off", "2": "off"}
    ScriptedSource.polls = []
    ScriptedSource.failing = False
    ScriptedSource.poll_time = 0.0
    ScriptedSource.overlaps = 0
    ScriptedSource.live = False
    ScriptedSource.stream_items = None
    ScriptedSource.poll_interval = 300.0
    ScriptedSource.reconcile_interval = 900.0
    ScriptedSource.backoff_max = 1.0


@contextlib.asynccontextmanager
async def running(journal: Journal, min_gap: float = 0.0) -> AsyncIterator[HubRunner]:
    pipeline = await Pipeline.open(journal)
    runner = HubRunner(HubConfigBase(name="h", type="scripted"), ScriptedSource, pipeline, HubStatus())
    runner.min_gap = min_gap
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: runner.status.polls >= 1 or task.done(), "the first poll")
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    async with running_journal(tmp_path / "journal.sqlite3", max_bytes=4 * 1024**2, synchronous="normal") as j:
        await j.register_sinks(["s"])
        yield j


def values(records: list[Any]) -> list[tuple[str, Any]]:
    return [(r.event()["device_id"], r.event()["value"]) for r in records if r.event()["kind"] == "device"]


async def test_polls_never_overlap_however_often_a_reconcile_is_asked(journal: Journal) -> None:
    """Reconciliations asked for while a poll is on its way wait for it: one poll of a hub at a time."""
    ScriptedSource.poll_time = 0.05
    async with running(journal) as runner:
        for _ in range(20):
            runner.reconcile("test")
            await asyncio.sleep(0.01)
        await wait_until(lambda: not runner.polling and not runner._reconcile.is_set(), "the polls settle")
    assert ScriptedSource.overlaps == 0
    assert 2 <= len(ScriptedSource.polls) <= 12


async def test_reconciliations_are_floored(journal: Journal) -> None:
    """A storm of reconcile requests (a flapping socket, 500 hub restarts) polls at most once per min_gap."""
    async with running(journal, min_gap=0.3) as runner:
        start = len(ScriptedSource.polls)
        for _ in range(50):
            runner.reconcile("hub restarted")
            await asyncio.sleep(0.02)  # 1 s of requests
        await wait_until(lambda: not runner._reconcile.is_set() and not runner.polling, "the last poll")
    times = ScriptedSource.polls[start - 1 :]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 0.29, gaps
    assert len(times) - 1 <= 5


async def test_no_poll_while_the_journal_is_full_then_one_at_once(journal: Journal) -> None:
    """A full journal stops polls (the answer could not be recorded); room again brings a poll at once."""
    async with running(journal) as runner:
        # The sink is down: fill the journal with the stream's events until it says full.
        n = 0
        while not journal.full:
            big = [Reading("device", f"d{k % 300}", "v", f"{k}" + "x" * 2000, "eventsocket") for k in range(n, n + 20)]
            await runner.pipeline.ingest("h", "scripted", big)
            n += 20
        ScriptedSource.state["1"] = "on"
        polls = len(ScriptedSource.polls)
        runner.reconcile("eventsocket connected")
        await wait_until(lambda: runner.status.state == "holding", "the runner waits for room")
        assert len(ScriptedSource.polls) == polls, "nothing polled while nothing can be recorded"
        # The sink catches up: room again, and the latest values come at once, not after poll_interval (300 s).
        await journal.advance("s", journal.head)
        await wait_until(lambda: len(ScriptedSource.polls) > polls, "a poll right after room returned")
        await wait_until(lambda: runner.status.state == "ok" and not runner.polling, "the runner is ok again")
    assert len(ScriptedSource.polls) == polls + 1
    assert ("1", "on") in values(await all_records(journal))


async def test_a_failing_hub_backs_off_goes_offline_once_and_comes_back(journal: Journal) -> None:
    """Poll errors back off, give one hub_status offline event and one online event when the hub is back."""
    async with running(journal) as runner:
        ScriptedSource.failing = True
        ScriptedSource.state["2"] = "on"
        runner.reconcile("test")
        await wait_until(lambda: len(ScriptedSource.polls) >= 3, "a few failed polls")
        assert runner.status.state == "offline" and "connection refused" in runner.status.detail
        times = ScriptedSource.polls[1:]
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), "spaced by the 1 s floor"
        ScriptedSource.failing = False
        await wait_until(lambda: runner.status.state == "ok", "the hub is back")
    status = [r.event()["value"] for r in await all_records(journal) if r.event()["attribute"] == "hub_status"]
    assert status == ["online", "offline", "online"]
    assert ("2", "on") in values(await all_records(journal))


async def test_stop_commits_every_queued_pushed_reading(journal: Journal) -> None:
    """Stopping (SIGTERM) commits what the stream already queued: button presses are never dropped."""
    ScriptedSource.stream_items = asyncio.Queue()
    pipeline = await Pipeline.open(journal)
    runner = HubRunner(HubConfigBase(name="h", type="scripted"), ScriptedSource, pipeline, HubStatus())
    task = asyncio.create_task(runner.run())
    await wait_until(lambda: runner.status.polls >= 1, "the first poll")
    for k in range(5000):
        press = Reading("device", str(k), "pushed", 1, "eventsocket", momentary=True, time=float(k))
        ScriptedSource.stream_items.put_nowait(press)
    await wait_until(
        lambda: ScriptedSource.stream_items is not None and ScriptedSource.stream_items.empty(), "all queued"
    )
    runner.stop()
    await asyncio.wait_for(task, 10)
    presses = [r for r in await all_records(journal) if r.event()["attribute"] == "pushed"]
    assert len(presses) == 5000


async def test_a_journal_error_delays_pushed_readings_but_never_drifts(journal: Journal) -> None:
    """While the journal cannot write, pushes wait; once it can, each is answered for its own commit."""
    async with running(journal) as runner:
        await journal._call(lambda: journal.db.execute("PRAGMA query_only=1"))
        waiting = [await runner.push([Reading("device", "5", "level", k, "webhook")], size=10) for k in range(3)]
        await wait_until(lambda: "journal" in str(runner.rate_log._last), "the runner reported the journal error")
        assert not any(f is not None and f.done() for f in waiting)
        await journal._call(lambda: journal.db.execute("PRAGMA query_only=0"))
        await asyncio.wait_for(asyncio.gather(*[f for f in waiting if f is not None]), 10)
        # Later pushes are answered for their own commit, at once (nothing counts commits on the side).
        later = await runner.push([Reading("device", "5", "level", 99, "webhook")], size=10)
        assert later is not None
        events = await asyncio.wait_for(later, 5)
    assert [e.value for e in events] == [99]
    assert [v for d, v in values(await all_records(journal)) if d == "5"] == [0, 1, 2, 99]


@pytest.mark.parametrize("live", [True, False])
async def test_the_poll_interval_follows_the_stream(journal: Journal, live: bool) -> None:
    """While a push stream is healthy polls only reconcile, every reconcile_interval; without one, poll_interval."""
    ScriptedSource.live = live
    ScriptedSource.poll_interval, ScriptedSource.reconcile_interval = (300.0, 0.2) if live else (0.2, 300.0)
    async with running(journal):
        await wait_until(lambda: len(ScriptedSource.polls) >= 4, "a few scheduled polls")
    gaps = [b - a for a, b in zip(ScriptedSource.polls[1:], ScriptedSource.polls[2:], strict=False)]
    assert all(g >= 0.17 for g in gaps), gaps  # the interval, jittered by +-10%


def test_the_readme_config_asks_a_healthy_hub_for_little() -> None:
    """With the README's config (eventsocket on, poll_interval 30s) a live stream costs the hub <= 15 requests/h."""
    from bridge.sources.hubitat import HubitatConfig

    cfg = HubitatConfig.model_validate(
        {"name": "h", "type": "hubitat", "url": "http://hub", "app_id": 1, "access_token": "t", "poll_interval": "30s"}
    )
    requests_per_poll = 3  # /devices/all, /modes, /hsm
    assert requests_per_poll * 3600 / cfg.reconcile_interval <= 15


async def test_a_caller_waiting_too_long_is_answered_and_its_readings_still_land(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the journal cannot write, a POST gets its answer (not recorded yet) in time; the reading lands later."""
    monkeypatch.setattr("bridge.sources.runner.ANSWER_WITHIN", 0.3)
    async with running(journal) as runner:
        await journal._call(lambda: journal.db.execute("PRAGMA query_only=1"))
        waiting = await runner.push([Reading("device", "7", "level", 42, "webhook")], size=10)
        assert waiting is not None
        with pytest.raises(JournalError):
            await asyncio.wait_for(waiting, 10)
        await journal._call(lambda: journal.db.execute("PRAGMA query_only=0"))
        await wait_until(lambda: runner._idle.is_set(), "the queue drained")
    assert ("7", 42) in values(await all_records(journal))


async def test_a_copy_queued_right_behind_its_original_is_answered_at_once(journal: Journal) -> None:
    """A POST copy queued just behind its eventsocket original (no lag) is answered as soon as the original is
    recorded, not after COPY_WAIT: taking both into one batch made the batch wait for its own commit, stalling the
    stream and every POST behind it for 30 s."""
    async with running(journal) as runner:
        loop = asyncio.get_running_loop()
        original = await runner.push([Reading("device", "5", "level", 40, "eventsocket")], size=10)
        assert original is not None
        done: asyncio.Future[None] = loop.create_future()
        original.add_done_callback(lambda f: done.set_result(None))
        # Queued in the same tick as the original, so the ingest loop finds both waiting.
        copy = await runner.push([Reading("device", "5", "level", 40, "webhook")], size=10, unless=done)
        assert copy is not None
        async with asyncio.timeout(5):
            assert await copy == []  # skipped: a copy of what the original committed
        assert len(await original) == 1
    assert values(await all_records(journal)).count(("5", 40)) == 1


async def test_a_poll_never_overtakes_pushed_events_queued_before_its_answer(journal: Journal) -> None:
    """An event pushed before a poll answered is recorded before the poll's newer snapshot, never after it: the
    user sees "on" then "dimmed", not "dimmed", "on" (a change back to a stale value) as before."""
    async with running(journal) as runner:
        loop = asyncio.get_running_loop()
        hold: asyncio.Future[None] = loop.create_future()
        # The ingest loop is busy (a copy waits for its original), so pushed readings wait in the queue.
        await runner.push([Reading("device", "7", "level", 1, "webhook")], size=10, unless=hold)
        pushed = await runner.push([Reading("device", "1", "switch", "on", "eventsocket")], size=10)
        assert pushed is not None
        ScriptedSource.state = {"1": "dimmed", "2": "off"}
        runner.reconcile("test")
        await wait_until(lambda: len(ScriptedSource.polls) == 2, "the poll ran")
        hold.set_result(None)
        await wait_until(lambda: runner.status.polls >= 2, "the poll was recorded")
        await pushed
    assert [v for d, v in values(await all_records(journal)) if d == "1"] == ["off", "on", "dimmed"]
