"""One delivery loop per sink (DESIGN 1, 4 and 6): the same semantics for every sink.

The loop reads from the sink's own cursor in the journal, batches by count, bytes and wait time, and keeps up to
``max_in_flight`` batches on their way at once. Each batch is sent, its outcome classified, retried with capped
full-jitter backoff (honouring a server's delay), split to isolate a bad record, and only an isolated record is
dead-lettered, with its reason. A batch the sink confirms later (indexer acknowledgement) waits for that, up to
``ack_timeout``, and is sent again otherwise. Batches settle in sequence order whatever order they finish in, so
the cursor moves over a prefix of fully settled batches only: a crash at any point resends at most what was in
flight, with the same ids.

While the sink fails, only one batch at a time probes it (the others wait behind the probe), so ``max_in_flight``
never multiplies the load on a struggling destination. Logging is one line per change of state (failing,
holding, delivering again), repeated at most every few minutes while it lasts, never one per attempt.

Every batch read goes through the sink's filters (:mod:`bridge.filters`) first: filtered events are counted and
settle like delivered ones. Besides the batches read from the journal, the loop sends events a minimum-interval
window held back once it closes, and dead letters `hubbridge spool replay` sent back, with their original ids.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from bridge.backoff import Backoff, RateLimitedLog
from bridge.events import shorten
from bridge.filters import FilterEngine, FilterState, Key, event_key
from bridge.journal import FilterRow, Journal, Record
from bridge.sinks.base import Delivered, DeliveryOptions, Hold, Outcome, Partial, Rejected, Retry, Sink, TooLarge

log = structlog.get_logger("bridge.delivery")

# How often a problem that lasts is logged again (its first occurrence is logged at once).
LOG_EVERY = 300.0


@dataclass(slots=True)
class _Batch:
    """A batch on its way: settled once every record is delivered or dead-lettered.

    ``upto`` is the journal seq the cursor may move to once it settles (records held by a filter window or
    replayed are older than that). ``filtered`` counts the events of the read the filters skipped, ``state`` the
    filter rows the read changed, ``replayed`` the replay rows it carries: all recorded when it settles.
    """

    records: Sequence[Record]
    upto: int
    done: bool = False
    delivered: int = 0
    dead: list[tuple[Record, str]] = field(default_factory=list)
    filtered: int = 0
    state: dict[Key, FilterState] = field(default_factory=dict)
    replayed: list[int] = field(default_factory=list)
    keys: frozenset[Key] = frozenset()
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _GaveUp:
    """Retried for longer than ``max_retry_time``: the part is dead-lettered with this reason."""

    reason: str


@dataclass(slots=True)
class SinkStatus:
    """What /healthz and the logs say about one sink."""

    state: str = "starting"  # starting | ok | retrying | holding | restarting
    detail: str = ""
    delivered: int = 0
    dead_lettered: int = 0
    # Events the sink's filters did not forward (settled like delivered ones, never dead-lettered).
    filtered: int = 0
    # Events in batches sent and not yet settled.
    in_flight: int = 0
    last_success: float | None = None
    restarts: int = 0
    health: str = ""
    retries: int = 0  # failed attempts (each is retried)
    progress: float = field(default_factory=time.monotonic)  # when an attempt last finished (the watchdog reads it)
    # (when settled, the JSON line of the batch's oldest event) per settled batch: bridge.metrics takes them for
    # the delivery-latency histogram.
    settled: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=10_000))

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "filtered": self.filtered,
            "in_flight": self.in_flight,
            "last_success": self.last_success,
            "restarts": self.restarts,
            "health": self.health,
        }


def _final(outcome: Outcome) -> bool:
    return isinstance(outcome, Delivered | Rejected | TooLarge)


class Delivery:
    """The delivery loop of one sink. Run :meth:`run` as a task; cancel it to stop."""

    def __init__(
        self,
        sink: Sink,
        journal: Journal,
        options: DeliveryOptions | None = None,
        *,
        status: SinkStatus | None = None,
        filters: FilterEngine | None = None,
        **overrides: Any,
    ) -> None:
        self.sink = sink
        self.journal = journal
        self.options = opts = replace(options or DeliveryOptions(), **overrides)
        self.max_in_flight = max(1, opts.max_in_flight)
        self.status = status or SinkStatus()
        self._log = log.bind(sink=sink.name)
        self._rate_log = RateLimitedLog(self._log, window=LOG_EVERY)
        self._window: deque[_Batch] = deque()
        self._finished = asyncio.Event()
        self._backoff = Backoff(opts.retry_initial, opts.retry_max)
        self._probe = asyncio.Lock()
        self._failing_since: float | None = None
        self._recoveries = 0
        self._attempts = 0
        self.filters = filters
        self._replaying: set[int] = set()
        self._next_replay_check = 0.0
        self._stopping = False

    def stop(self) -> None:
        """Take no new batch; :meth:`run` returns once those on their way are settled (the cursor moved over them)."""
        self._stopping = True
        self._finished.set()

    @property
    def lag(self) -> int:
        """Events committed to the journal that this sink has not yet settled."""
        return self.journal.head - self.journal.cursor(self.sink.name)

    async def run(self) -> None:
        pos = self.journal.cursor(self.sink.name)
        self.status.state, self.status.detail = "ok", ""  # a fresh loop: what the last one died of is past
        if self.filters is not None and self.filters.stateful:
            self.filters.load(_state_from_rows(await self.journal.filter_state(self.sink.name)))
        async with asyncio.TaskGroup() as tg:
            while True:
                await self._settle()
                if self._stopping:
                    if not self._window:
                        return
                    self._finished.clear()
                    if not self._window[0].done:
                        await self._finished.wait()
                    continue
                if len(self._window) >= self.max_in_flight:
                    # Full: only the oldest batch finishing lets the cursor (and so the window) move.
                    self._finished.clear()
                    if not self._window[0].done:
                        await self._finished.wait()
                    continue
                batch = await self._extra(pos)
                if batch is None:
                    if not await self._wait_events(pos):
                        continue
                    await self._fill(pos)
                    records = await self.journal.read(pos, self.options.max_events, self.options.max_bytes)
                    if not records:
                        continue
                    upto = records[-1].seq
                    if self.filters is not None and self.filters.active:
                        send, filtered, state = self.filters.decide(records)
                        batch = _Batch(send, upto, filtered=filtered, state=state)
                    else:
                        batch = _Batch(records, upto)
                    pos = upto
                self._launch(batch, tg)

    def _launch(self, batch: _Batch, tg: asyncio.TaskGroup) -> None:
        self._window.append(batch)
        if not batch.records:  # all filtered: settles with the next look at the window
            batch.done = True
            batch.finished.set()
            return
        if self.options.ordered_keys and self.max_in_flight > 1:
            batch.keys = frozenset(event_key(json.loads(r.body)) for r in batch.records)
        self.status.in_flight += len(batch.records)
        tg.create_task(self._run_batch(batch), name=f"sink[{self.sink.name}].batch")

    async def _extra(self, pos: int) -> _Batch | None:
        """A batch of held events whose window closed, or of replayed dead letters; None when there is none."""
        limit = self.options.max_events
        if self.filters is not None and self.filters.stateful:
            due = self.filters.next_due()
            if due is not None and due <= self.filters.clock():
                records, state = self.filters.due(limit)
                if records:
                    return _Batch(records, pos, state=state)
        now = time.monotonic()
        if now < self._next_replay_check:
            return None
        self._next_replay_check = now + self.options.replay_poll
        rows = await self.journal.replays(self.sink.name, limit, self._replaying)
        if not rows:
            return None
        self._replaying.update(n for n, _ in rows)
        self._log.info("sending dead letters again (spool replay)", events=len(rows))
        return _Batch([r for _, r in rows], pos, replayed=[n for n, _ in rows])

    def _wake_in(self) -> float:
        """Seconds until the loop must look again without news: a filter window closing, the next replay look."""
        now = time.monotonic()
        wait = max(0.0, self._next_replay_check - now)
        if self.filters is not None and self.filters.stateful:
            due = self.filters.next_due()
            if due is not None:
                wait = min(wait, max(0.0, due - self.filters.clock()))
        return wait

    async def _wait_events(self, pos: int) -> bool:
        """Wait until the journal has events after ``pos`` (True), or a batch on its way finished or something
        else is due (False)."""
        if self.journal.head > pos:
            return True
        self._finished.clear()
        if self._window and self._window[0].done:
            return False
        grew = asyncio.ensure_future(self.journal.wait_beyond(pos))
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait([grew, finished], return_when=asyncio.FIRST_COMPLETED, timeout=self._wake_in())
        finally:
            for task in (grew, finished):
                if not task.done():
                    task.cancel()
        return self.journal.head > pos

    async def _fill(self, pos: int) -> None:
        """Give a small batch up to ``max_wait`` to grow to ``max_events`` (fewer, larger requests)."""
        if self.options.max_wait <= 0:
            return
        deadline = time.monotonic() + self.options.max_wait
        while self.journal.head - pos < self.options.max_events:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # Returns on every commit (True or not): loop until the batch is full or the wait is over.
            await self.journal.wait_beyond(pos + self.options.max_events - 1, timeout=left)

    async def _settle(self) -> None:
        """Advance the cursor over the oldest batches that are completely settled, in order."""
        last, dead, delivered, filtered = None, [], 0, 0
        state: dict[Key, FilterState] = {}
        replayed: list[int] = []
        settled: list[_Batch] = []
        while self._window and self._window[0].done:
            batch = self._window.popleft()
            settled.append(batch)
            last = batch.upto
            dead.extend(batch.dead)
            delivered += batch.delivered
            filtered += batch.filtered
            state.update(batch.state)
            replayed.extend(batch.replayed)
        if last is None:
            return
        if state or replayed:
            rows = _rows_from_state(state)
            await self.journal.advance(self.sink.name, last, dead, filter_state=rows, replayed=replayed)
        else:
            await self.journal.advance(self.sink.name, last, dead)
        self._replaying.difference_update(replayed)
        self.status.delivered += delivered
        self.status.dead_lettered += len(dead)
        self.status.filtered += filtered
        self.status.last_success = now = time.time()
        # Only batches that carried events say how late delivery was (an all-filtered one carried none).
        self.status.settled.extend((now, b.records[0].body) for b in settled if b.records)
        self.status.progress = time.monotonic()

    async def _run_batch(self, batch: _Batch) -> None:
        try:
            if batch.keys:
                # In order per device and attribute: wait for the earlier batches that hold the same ones.
                for earlier in list(self._window):
                    if earlier is batch:
                        break
                    if not earlier.done and earlier.keys & batch.keys:
                        await earlier.finished.wait()
            await self._deliver(batch)
        finally:
            self.status.in_flight -= len(batch.records)
            batch.finished.set()
            self._finished.set()

    async def _deliver(self, batch: _Batch) -> None:
        """Send ``batch`` until every record is confirmed or isolated and dead-lettered."""
        queue: deque[Sequence[Record]] = deque([batch.records])
        while queue:
            part = queue.popleft()
            outcome, part = await self._send_until_final(part, batch)
            if isinstance(outcome, _GaveUp):
                for record in part:
                    self._dead(batch, record, outcome.reason)
            elif isinstance(outcome, Delivered):
                if outcome.ack is not None and not await self._confirmed(outcome.ack, part):
                    queue.appendleft(part)  # never confirmed: the same records again (same ids)
                    continue
                batch.delivered += len(part)
            elif isinstance(outcome, Rejected) and outcome.index is not None and 0 <= outcome.index < len(part):
                i = outcome.index
                batch.delivered += i
                self._dead(batch, part[i], outcome.reason)
                if i + 1 < len(part):
                    queue.appendleft(part[i + 1 :])
            elif isinstance(outcome, Rejected | TooLarge):
                if len(part) == 1:
                    self._dead(batch, part[0], outcome.reason)
                else:
                    mid = len(part) // 2
                    queue.appendleft(part[mid:])
                    queue.appendleft(part[:mid])
        batch.done = True

    def _dead(self, batch: _Batch, record: Record, reason: str) -> None:
        batch.dead.append((record, reason))
        self._rate_log.error(
            ("dead", reason[:60]),
            "event dead-lettered: the destination refused it (see `hubbridge spool dead-letters`)",
            event_id=record.id,
            seq=record.seq,
            reason=shorten(reason, 300),
        )

    async def _confirmed(self, ack: asyncio.Future[bool], part: Sequence[Record]) -> bool:
        """Wait for the destination's confirmation of ``part``, up to ``ack_timeout``."""
        timeout = self.options.ack_timeout
        try:
            async with asyncio.timeout(timeout):
                ok = await asyncio.shield(ack)
        except TimeoutError:
            ack.cancel()  # tells the sink to stop waiting for it
            self._rate_log.warning(
                "ack-timeout",
                "the destination did not confirm a batch in time; it is sent again (same event ids)",
                events=len(part),
                ack_timeout=timeout,
            )
            return False
        except asyncio.CancelledError:
            if ack.cancelled():  # the sink gave up on it (it is closing): resend
                return False
            raise
        except Exception as exc:  # the sink failed the confirmation: resend
            self._rate_log.warning("ack-failed", "a batch was not confirmed; it is sent again", reason=str(exc))
            return False
        if not ok:
            self._rate_log.warning(
                "ack-false", "the destination says a batch will not be confirmed; it is sent again", events=len(part)
            )
        return bool(ok)

    async def _send_until_final(
        self, part: Sequence[Record], batch: _Batch
    ) -> tuple[Outcome | _GaveUp, Sequence[Record]]:
        """Send ``part`` until the outcome is final; returns it with the records it applies to.

        A partial acceptance counts its prefix as delivered and goes on with the rest. While the sink fails, sends
        go one at a time through the probe lock, each after a backoff. With ``max_retry_time``, a part that keeps
        failing transiently for longer is given up (a hold never is: the data is fine, the sink is not).
        """
        outcome: Outcome | None = None if self._failing_since is not None else await self._send_once(part)
        started = time.monotonic()
        limit = self.options.max_retry_time
        while True:
            if outcome is not None:
                if isinstance(outcome, Partial) and 0 < outcome.accepted < len(part):
                    batch.delivered += outcome.accepted
                    part = part[outcome.accepted :]
                elif _final(outcome):
                    if self._failing_since is not None:
                        self._recovered()
                    self.status.state, self.status.detail = "ok", ""
                    return outcome, part
                self._failed(outcome)
                if limit is not None and not isinstance(outcome, Hold) and time.monotonic() - started >= limit:
                    reason = shorten(getattr(outcome, "reason", "unknown"), 500)
                    return _GaveUp(f"still failing after max_retry_time {limit:g}s: {reason}"), part
            generation = self._recoveries
            async with self._probe:
                # Another batch's probe got through meanwhile: no reason to wait before trying this one.
                if outcome is None or (generation == self._recoveries and self._failing_since is not None):
                    await asyncio.sleep(self._backoff.next(getattr(outcome, "delay", None)))
                outcome = await self._send_once(part)
                if _final(outcome) and self._failing_since is not None:
                    self._recovered()

    async def _send_once(self, part: Sequence[Record]) -> Outcome:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands just as
            # send() finishes, and the loop would then outlive the shutdown that cancelled it.
            async with asyncio.timeout(self.options.send_timeout):
                outcome = await self.sink.send(part)
            self.status.progress = time.monotonic()
            return outcome
        except TimeoutError:
            self.status.progress = time.monotonic()
            return Retry(f"no answer within {self.options.send_timeout:g}s")
        except Exception as exc:
            # A sink bug must not stop delivery for good, nor lose the batch: log it and retry.
            if self._rate_log.allow("sink-raised") is not None:
                self._log.exception("sink raised instead of returning an outcome")
            return Retry(f"{type(exc).__name__}: {exc}")

    def _failed(self, outcome: Outcome) -> None:
        now = time.monotonic()
        self._attempts += 1
        self.status.retries += 1
        holding = isinstance(outcome, Hold)
        reason = shorten(getattr(outcome, "reason", "unknown"), 500)
        state = "holding" if holding else "retrying"
        changed = self._failing_since is None or state != self.status.state or reason != self.status.detail
        self.status.state, self.status.detail = state, reason
        if self._failing_since is None:
            self._failing_since = now
        # One line when the problem starts or changes, then at most one per LOG_EVERY while it lasts; it says by
        # when the next attempt comes (the backoff's ceiling: the wait itself is drawn when the probe sleeps).
        if changed:
            self._rate_log.forget(("failing", state, reason))
        within = self._backoff.ceiling(getattr(outcome, "delay", None))
        when = {
            "retry_within": round(within, 2),
            "until": time.strftime("%H:%M:%S", time.localtime(time.time() + within)),
        }
        if holding:
            self._rate_log.error(
                ("failing", state, reason),
                "sink refuses delivery; holding events until fixed (nothing is dropped)",
                reason=reason,
                attempts=self._attempts,
                **when,
            )
        else:
            self._rate_log.warning(
                ("failing", state, reason),
                "sink delivery failed; will retry",
                reason=reason,
                attempts=self._attempts,
                **when,
            )

    def _recovered(self) -> None:
        assert self._failing_since is not None
        self._log.info(
            "sink delivering again",
            after_attempts=self._attempts,
            down_for=round(time.monotonic() - self._failing_since, 1),
        )
        self._failing_since = None
        self._attempts = 0
        self._recoveries += 1
        self._backoff.reset()
        self.status.state, self.status.detail = "ok", ""


def _state_from_rows(rows: list[FilterRow]) -> list[tuple[Key, FilterState]]:
    return [
        (key, FilterState(json.loads(fwd) if fwd is not None else None, fwd_time, pending, due))
        for key, fwd, fwd_time, pending, due in rows
    ]


def _rows_from_state(state: dict[Key, FilterState]) -> list[FilterRow]:
    return [
        (
            key,
            json.dumps(st.forwarded) if st.forwarded is not None else None,
            st.forwarded_time,
            st.pending,
            st.pending_due,
        )
        for key, st in state.items()
    ]
