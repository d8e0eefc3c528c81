"""What every hub needs, whatever its family: the runner that drives one :class:`~bridge.sources.base.Source`.

* **Health**: when the source reads hub health, its own loop (its own task, interval and backoff; never the poll's
  request budget), jittered, never faster than ``health_interval`` even while the hub fails, and never while
  nothing can be recorded.
* **Polls**: one at a time (a single loop), jittered, every ``poll_interval`` while no push stream is healthy and
  every ``reconcile_interval`` while one is, at once when a stream (re)connects or the hub restarted, but never
  closer together than :attr:`HubRunner.min_gap`; capped full-jitter backoff while the hub fails.
* **Journal room**: while the journal is full nothing is polled (the answer could not be recorded); the moment
  there is room again, a reconciliation poll brings the latest values.
* **hub_status**: ``kind: bridge`` events when the hub goes offline and comes back.
* **The ingest queue** for pushed readings: bounded in bytes (a full queue makes the stream wait, which pushes back
  into TCP), each item carrying the future of its own commit, so a caller (a POST-URL request) is answered exactly
  when its readings are durable and nothing counts commits on the side.
* **Drain**: on stop the streams and the poll stop first, then what is queued is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog
from aiohttp import web

from bridge.backoff import Backoff, RateLimitedLog
from bridge.errors import HubAuthError, HubError, HubUnavailable, JournalError, JournalFull
from bridge.events import Event, Reading, SourceName, shorten
from bridge.journal import Recent
from bridge.options import HubConfigBase
from bridge.pipeline import Pipeline
from bridge.sources import base
from bridge.sources.base import Source

log = structlog.get_logger("bridge.sources")

# Pushed readings waiting for the committer, at most (bytes as received); a full queue blocks the stream.
QUEUE_BYTES = 16 * 1024 * 1024
# Readings per ingest (one diff, one append): large enough to share an fsync, small enough to keep latency.
INGEST_BATCH = 2000
# How long a copy (eventsocket frame of an event a POST brought) waits for the original's commit.
COPY_WAIT = 30.0
# A caller waiting for its readings' commit (a POST-URL request) is told "not recorded" after this long while the
# journal cannot take them; the readings stay queued and are recorded once it can.
ANSWER_WITHIN = 30.0
# Reconciliation polls asked for by streams or hub restarts are never closer together than this.
MIN_RECONCILE_GAP = 5.0


@dataclass(slots=True)
class HubStatus:
    """What /healthz says about one hub; it outlives the runner (a crashed one is replaced by a fresh one)."""

    state: str = "starting"  # starting | ok | offline | auth | holding | restarting
    detail: str = ""
    polls: int = 0
    last_poll: float | None = None
    pushed: int = 0  # readings the push streams handed over
    restarts: int = 0
    health_rounds: int = 0  # hub health rounds that answered
    health_detail: str = ""  # why the last health round failed ("" when it answered)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    poll_started: float | None = None  # time.monotonic() while a poll is on its way (the watchdog reads it)
    info: dict[str, Any] = field(default_factory=dict)  # what the source shows (the address in use...)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.info,
            "state": self.state,
            "detail": self.detail,
            "polls": self.polls,
            "last_poll": self.last_poll,
            "pushed": self.pushed,
            "restarts": self.restarts,
            "streams": self.streams,
            "health_rounds": self.health_rounds,
            "health_detail": self.health_detail,
        }


class _Item(NamedTuple):
    """Pushed readings waiting in the queue: their size, the future of their commit, the commit they copy."""

    readings: list[Reading]
    size: int
    future: asyncio.Future[list[Event]] | None
    unless: asyncio.Future[None] | None
    since: float  # loop time when queued


def _succeeded(fut: asyncio.Future[Any] | None) -> bool:
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None


class HubRunner:
    """Runs one hub's source until stopped. Implements :class:`~bridge.sources.base.HubContext`."""

    def __init__(self, cfg: HubConfigBase, source_cls: type[Source], pipeline: Pipeline, status: HubStatus) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.source_cls = source_cls
        self.pipeline = pipeline
        self.journal = pipeline.journal
        self.state_dir = pipeline.journal.path.parent
        self.status = status
        self.log = log.bind(hub=cfg.name)
        self.rate_log = RateLimitedLog(self.log)
        self.source: Source | None = None
        self.min_gap = MIN_RECONCILE_GAP
        self._reconcile = asyncio.Event()
        self._health_now = asyncio.Event()
        self._last_poll = -math.inf
        self._online: bool | None = None
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        # Items ever queued, and ever ingested (in queue order): a poll waits for what was queued before its answer.
        self._queued_items = 0
        self._done_items = 0
        self._progress = asyncio.Event()
        self._work = asyncio.Event()
        self._space = asyncio.Event()
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = asyncio.Event()
        self.polling = False  # a poll is on its way to the hub or to the journal
        self._before_hold = ("starting", "")
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Open a fresh source and run its poll loop, streams and the ingest loop until :meth:`stop`."""
        async with self.source_cls(self.cfg, self) as src:
            self.source = src
            try:
                async with asyncio.TaskGroup() as tg:
                    ingest = tg.create_task(self._ingest_loop(), name=f"hub[{self.name}].ingest")
                    producers = [tg.create_task(self._poll_loop(), name=f"hub[{self.name}].poll")]
                    if src.health_interval is not None:
                        producers.append(tg.create_task(self._health_loop(), name=f"hub[{self.name}].health"))
                    for stream, run in src.streams().items():
                        producers.append(tg.create_task(run(), name=f"hub[{self.name}].{stream}"))
                    await self._stopping.wait()
                    for task in producers:
                        task.cancel()
                    await asyncio.gather(*producers, return_exceptions=True)
                    await self._idle.wait()  # what the streams queued is committed before the source closes
                    ingest.cancel()
            finally:
                self.source = None
                self.status.poll_started = None
                for item in self._queue:
                    if item.future is not None and not item.future.done():
                        item.future.set_exception(
                            JournalError("the bridge stopped before these readings were recorded")
                        )

    def stop(self) -> None:
        """Stop the streams and the poll, commit what is queued, then return from :meth:`run`."""
        self._stopping.set()

    async def handle(self, route: str, request: web.Request) -> web.StreamResponse:
        """An HTTP request for one of the source's routes (503 while the source is not running)."""
        src = self.source
        if src is None or self._stopping.is_set():
            return web.Response(status=503, text="hub source not running")
        return await src.handle(route, request)

    # ------------------------------------------------------------------ HubContext

    async def push(
        self,
        readings: Sequence[Reading],
        *,
        size: int,
        unless: asyncio.Future[None] | None = None,
        hold: bool = True,
        track: bool = True,
    ) -> asyncio.Future[list[Event]] | None:
        if not hold:
            self.journal.check_room()
        while self._queue and self._queued_bytes + size > QUEUE_BYTES:
            self._space.clear()
            await self._space.wait()
        future: asyncio.Future[list[Event]] | None = None
        if track or unless is not None:
            future = asyncio.get_running_loop().create_future()
        items = readings if isinstance(readings, list) else list(readings)
        self.status.pushed += len(items)
        # tuple.__new__, not _Item(...): one is made per pushed event, and a NamedTuple's own constructor is Python.
        self._queue.append(tuple.__new__(_Item, (items, size, future, unless, self._loop.time())))
        self._queued_bytes += size
        self._queued_items += 1
        self._idle.clear()
        self._work.set()
        return future

    async def relay(self, events: Sequence[Event]) -> list[Event]:
        while True:
            try:
                return await self.pipeline.relay(events)
            except JournalFull:
                await self._hold_for_room()

    def reconcile(self, why: str) -> None:
        if not self._reconcile.is_set():
            self.log.debug("reconciliation poll requested", why=why)
        self._reconcile.set()

    def stream_state(self, stream: str, up: bool, detail: str = "") -> None:
        self.status.streams[stream] = {"up": up, "detail": detail}

    def show(self, key: str, value: Any) -> None:
        self.status.info[key] = value

    async def get_meta(self, key: str) -> Any:
        return await self.journal.get_meta(self.name, key)

    async def set_meta(self, key: str, value: Any) -> None:
        await self.journal.set_meta(self.name, key, value)

    async def recent(self, within: float) -> list[Recent]:
        return await self.journal.recent(self.name, within)

    # ------------------------------------------------------------------ polling

    async def _poll_loop(self) -> None:
        src = self.source
        assert src is not None
        floor = base.HUB_RETRY_FLOOR
        backoff = Backoff(floor, src.backoff_max, floor=min(floor, src.backoff_max))
        # A small random start offset, so several bridges (or hubs) started together do not poll in step.
        delay = random.uniform(0, min(1.0, src.poll_interval / 10))
        first = True
        while True:
            await self._next_poll(delay)
            if self.journal.full:
                await self._hold_for_room()
            # With a stream the poll only reconciles; without one it is the source, except right after start where
            # it catches up with what changed while the bridge was down.
            source: SourceName = "reconcile" if (src.reconciles or first) else "poll"
            self.polling = True
            self.status.poll_started = time.monotonic()
            try:
                readings = await src.poll(source)
                await self._pushed_first()
                readings.append(self._status_reading(True, None))
                await self.pipeline.ingest(
                    self.name, src.hub_type, readings, on_changes=src.polled, remember=src.remembers
                )
            except JournalFull:
                self.polling = False
                self.status.poll_started = None
                delay = 0.0
                continue
            except (HubError, JournalError) as exc:
                self.polling = False
                self.status.poll_started = None
                # A rate limit's Retry-After (the cloud relay's 429) is honoured when longer than the backoff.
                wait = backoff.next(exc.retry_after if isinstance(exc, HubUnavailable) else None)
                await self._poll_failed(exc, wait)
                # While backing off, reconnects and hub restarts must not bring extra polls.
                await asyncio.sleep(wait)
                delay = 0.0
                continue
            first = False
            backoff.reset()
            self._polled()
            self.polling = False
            self.status.poll_started = None
            interval = src.reconcile_interval if src.stream_live else src.poll_interval
            delay = interval * random.uniform(0.9, 1.1)

    async def _pushed_first(self) -> None:
        """Wait (up to ANSWER_WITHIN) until what the streams queued before the poll's answer is ingested.

        Pushed readings wait in the queue while a poll's readings go straight to the diff, so under load a poll
        could overtake events received before its answer: an older pushed value then came after the poll's newer
        one, as a change back (or was dropped as stale after its POST was answered). In queue order they are
        changes before the snapshot, and the diff drops what the snapshot has older than them.
        """
        mark = self._queued_items
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANSWER_WITHIN):
                while self._done_items < mark:
                    self._progress.clear()
                    await self._progress.wait()

    def health_soon(self, why: str) -> None:
        """Run a health round now instead of at the end of the interval (``why`` goes to the debug log)."""
        self.log.debug("health round requested", why=why)
        self._health_now.set()

    async def _health_loop(self) -> None:
        src = self.source
        assert src is not None and src.health_interval is not None
        interval = src.health_interval
        floor = base.HUB_RETRY_FLOOR
        backoff = Backoff(floor, max(src.backoff_max, interval), floor=min(floor, src.backoff_max))
        delay = random.uniform(0, min(1.0, interval / 10))
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._health_now.wait()
            self._health_now.clear()
            if self.journal.full:
                await self.journal.wait_room()  # the answer could not be recorded: do not ask the hub
            try:
                readings = await src.health()
                if readings:
                    await self.pipeline.ingest(self.name, src.hub_type, readings)
            except (HubError, JournalError) as exc:
                # A failing hub is asked no more often than a healthy one; longer while it keeps failing.
                delay = max(interval * random.uniform(0.9, 1.1), backoff.next())
                text = shorten(str(exc), 300)
                self.status.health_detail = text
                self.rate_log.warning("health", "hub health not read; retrying", error=text, retry_in=round(delay, 1))
                continue
            backoff.reset()
            self.rate_log.forget("health")
            self.status.health_rounds += 1
            self.status.health_detail = ""
            delay = interval * random.uniform(0.9, 1.1)

    async def _next_poll(self, delay: float) -> None:
        """Wait ``delay``, or less when a reconciliation is asked for, but at least ``min_gap`` after the last poll."""
        deadline = time.monotonic() + delay
        while True:
            now = time.monotonic()
            due = deadline
            if self._reconcile.is_set():
                due = min(due, max(now, self._last_poll + self.min_gap))
            if now >= due:
                self._reconcile.clear()
                return
            if self._reconcile.is_set():
                await asyncio.sleep(due - now)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - now):
                        await self._reconcile.wait()

    async def _hold_for_room(self) -> None:
        """Nothing can be recorded: wait for room without touching the hub, then poll at once."""
        if self.status.state != "holding":
            self._before_hold = self.status.state, self.status.detail
        self.status.state, self.status.detail = "holding", "journal full: waiting for sinks to catch up"
        await self.journal.wait_room()
        if self.status.state == "holding":
            self.status.state, self.status.detail = self._before_hold

    def _polled(self) -> None:
        self._last_poll = time.monotonic()
        self.status.polls += 1
        self.status.last_poll = time.time()
        self.status.state, self.status.detail = "ok", ""
        self.rate_log.forget("auth")
        if self._online is not True:
            self.log.info("hub online", polls=self.status.polls)
        self._online = True

    async def _poll_failed(self, exc: HubError | JournalError, wait: float) -> None:
        text = shorten(str(exc), 500)
        if isinstance(exc, HubAuthError):
            self.status.state, self.status.detail = "auth", text
            self.rate_log.error("auth", text, retry_in=round(wait, 1))
        elif isinstance(exc, JournalError):
            self.status.detail = text
            self.rate_log.error("journal", "cannot record the poll; retrying", error=text, retry_in=round(wait, 1))
        else:
            self.status.state, self.status.detail = "offline", text
            if self._online is not False:
                until = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
                self.log.warning("hub poll failed; backing off", error=text, retry_in=round(wait, 1), until=until)
            else:
                self.log.debug("hub poll failed again", error=text, retry_in=round(wait, 1))
        if self._online is not False and not isinstance(exc, JournalError):
            self._online = False
            with contextlib.suppress(JournalError):
                await self.pipeline.ingest(self.name, self.source_cls.hub_type, [self._status_reading(False, text)])

    @staticmethod
    def _status_reading(online: bool, reason: str | None) -> Reading:
        return Reading(
            kind="bridge",
            device_id=None,
            attribute="hub_status",
            value="online" if online else "offline",
            source="poll",
            description=reason,
            time=time.time(),
        )

    # ------------------------------------------------------------------ ingest of pushed readings

    def _answer_late(self, items: list[_Item], exc: JournalError) -> None:
        """Tell callers waiting longer than ANSWER_WITHIN that their readings are not recorded yet (still queued)."""
        now = self._loop.time()
        for item in items:
            if item.future is not None and not item.future.done() and now - item.since >= ANSWER_WITHIN:
                item.future.set_exception(exc)
                item.future.exception()  # retrieved: the caller may have gone

    async def _ingest_loop(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            while not self._queue:
                self._idle.set()
                self._work.clear()
                await self._work.wait()
            batch: list[_Item] = []
            n = 0
            while self._queue and (not batch or n + len(self._queue[0].readings) <= INGEST_BATCH):
                unless = self._queue[0].unless
                if batch and unless is not None and not unless.done():
                    # A copy waits for its original's commit, and the original may be in this batch: taking the copy
                    # too would make the batch wait for itself (COPY_WAIT, with the stream and POSTs stalled).
                    break
                item = self._queue.popleft()
                batch.append(item)
                n += len(item.readings)
            try:
                await self._ingest(batch, backoff)
            finally:
                self._queued_bytes -= sum(item.size for item in batch)
                self._done_items += len(batch)
                self._progress.set()
                self._space.set()

    async def _ingest(self, batch: list[_Item], backoff: Backoff) -> None:
        waits = [i.unless for i in batch if i.unless is not None and not i.unless.done()]
        if waits:
            await asyncio.wait(waits, timeout=COPY_WAIT)
        live = []
        for item in batch:
            if _succeeded(item.unless):
                if item.future is not None:
                    item.future.set_result([])  # a copy of what the original already committed
            else:
                live.append(item)
        readings = [r for item in live for r in item.readings]
        hub_type = self.source_cls.hub_type
        remember = self.source is not None and self.source.remembers
        while live:
            try:
                events = await self.pipeline.ingest(self.name, hub_type, readings, remember=remember)
            except JournalFull as exc:
                # Wait for room, answering callers that wait too long meanwhile (the readings stay queued).
                while self.journal.full:
                    self._answer_late(live, exc)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(ANSWER_WITHIN / 3):
                            await self._hold_for_room()
                continue
            except JournalError as exc:
                self._answer_late(live, exc)
                # The journal cannot write (disk full, I/O error): keep the readings and try again; the queue is
                # bounded, so the stream waits meanwhile. Stale readings are dropped by the diff on the retry.
                wait = backoff.next()
                self.rate_log.error(
                    "journal", "cannot record pushed events; retrying", error=shorten(str(exc), 300), retry_in=wait
                )
                await asyncio.sleep(wait)
                continue
            backoff.reset()
            for item in live:
                if item.future is not None and not item.future.done():
                    item.future.set_result(events)
            return
