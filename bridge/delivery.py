"""One delivery loop per sink (DESIGN 1, 4 and 6).

The loop reads from the sink's own cursor in the journal, batches by count, bytes and wait time, sends,
classifies the outcome, retries with capped full-jitter backoff (tenacity), splits batches to isolate a bad
record, dead-letters only an isolated record with its reason, and advances its cursor only after the sink
confirmed delivery (for sinks with acknowledgements, after the ack). A slow or broken sink therefore never
holds another back, and a crash at any point resends at most what was in flight (same ids).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_never, wait_random_exponential
from tenacity.wait import wait_base

from bridge.journal import Journal, Record
from bridge.sinks.base import Delivered, Hold, Outcome, Rejected, Retry, Sink, TooLarge

log = structlog.get_logger("bridge.delivery")

# A server's Retry-After is honoured up to this; a larger value is more likely a misconfiguration.
MAX_SERVER_DELAY = 600.0
# How often a sink that keeps failing is logged again (first failure is logged at once).
LOG_EVERY = 300.0


class _Backoff(wait_base):
    """Full-jitter exponential backoff, capped; never shorter than a server-given delay (Retry-After)."""

    def __init__(self, initial: float, cap: float) -> None:
        self._jitter = wait_random_exponential(multiplier=initial, max=cap)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self._jitter(retry_state))
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            result = outcome.result()
            delay = getattr(result, "delay", None)
            if delay:
                wait = max(wait, min(float(delay), MAX_SERVER_DELAY))
        return wait


def _retryable(outcome: Outcome) -> bool:
    return isinstance(outcome, Retry | Hold)


@dataclass(slots=True)
class _InFlight:
    """A batch sent but not yet settled: its parts' acks, and the records it dead-lettered."""

    last_seq: int
    parts: list[tuple[Sequence[Record], asyncio.Future[bool] | None]] = field(default_factory=list)
    dead: list[tuple[Record, str]] = field(default_factory=list)


@dataclass(slots=True)
class SinkStatus:
    """What /healthz and the logs say about one sink."""

    state: str = "starting"  # starting | ok | retrying | holding
    detail: str = ""
    delivered: int = 0
    dead_lettered: int = 0
    last_success: float | None = None


class Delivery:
    """The delivery loop of one sink. Run :meth:`run` as a task; cancel it to stop."""

    def __init__(
        self,
        sink: Sink,
        journal: Journal,
        *,
        max_events: int = 500,
        max_bytes: int = 1024 * 1024,
        max_wait: float = 1.0,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
        send_timeout: float = 120.0,
        max_in_flight: int = 1,
    ) -> None:
        self.sink = sink
        self.journal = journal
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.send_timeout = send_timeout
        self.max_in_flight = max(1, max_in_flight)
        self.status = SinkStatus()
        self._log = log.bind(sink=sink.name)
        self._inflight: deque[_InFlight] = deque()
        self._failing_since: float | None = None
        self._last_fail_log = 0.0
        self._attempts = 0

    @property
    def lag(self) -> int:
        """Events committed to the journal that this sink has not yet settled."""
        return self.journal.head - self.journal.cursor(self.sink.name)

    async def run(self) -> None:
        pos = self.journal.cursor(self.sink.name)
        self.status.state = "ok"
        while True:
            await self._settle()
            if len(self._inflight) >= self.max_in_flight:
                await self._wait_inflight()
                continue
            # Wake for new events, or as soon as an outstanding acknowledgement resolves (to settle it).
            if not await self._wait_events_or_acks(pos):
                continue
            await self._fill(pos)
            batch = await self.journal.read(pos, self.max_events, self.max_bytes)
            if not batch:
                continue
            entry = _InFlight(batch[-1].seq)
            await self._deliver(batch, entry)
            self._inflight.append(entry)
            pos = entry.last_seq

    async def _fill(self, pos: int) -> None:
        """Give a small batch up to ``max_wait`` to grow to ``max_events`` (fewer, larger requests)."""
        if self.max_wait <= 0:
            return
        deadline = time.monotonic() + self.max_wait
        while self.journal.head - pos < self.max_events:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # Returns on every commit (True or not): loop until the batch is full or the wait is over.
            await self.journal.wait_beyond(pos + self.max_events - 1, timeout=left)

    async def _wait_events_or_acks(self, pos: int) -> bool:
        """Wait until the journal has events after ``pos`` (True) or an in-flight ack resolved (False)."""
        acks = [f for entry in self._inflight for _, f in entry.parts if f is not None and not f.done()]
        if not acks:
            return await self.journal.wait_beyond(pos)
        if self.journal.head > pos:
            return True
        grew = asyncio.ensure_future(self.journal.wait_beyond(pos))
        try:
            await asyncio.wait([grew, *acks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not grew.done():
                grew.cancel()
        return self.journal.head > pos

    async def _wait_inflight(self) -> None:
        futures = [f for part in self._inflight[0].parts if (f := part[1]) is not None and not f.done()]
        if futures:
            await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)

    async def _settle(self) -> None:
        """Advance the cursor over the oldest in-flight batches whose parts are all acknowledged."""
        while self._inflight:
            head = self._inflight[0]
            for i, (records, fut) in enumerate(list(head.parts)):
                if fut is None or not fut.done():
                    continue
                if fut.cancelled() or fut.exception() is not None or not fut.result():
                    # The destination never confirmed these: resend them (same ids, so at worst duplicates
                    # that consumers can drop by id; never a loss).
                    self._log.warning("delivery not confirmed; resending", events=len(records))
                    head.parts[i] = (records, None)
                    redo = _InFlight(head.last_seq)
                    await self._deliver(records, redo)
                    head.parts[i : i + 1] = redo.parts
                    head.dead.extend(redo.dead)
                    break
            else:
                if any(fut is not None and not fut.done() for _, fut in head.parts):
                    return
                self._inflight.popleft()
                await self.journal.advance(self.sink.name, head.last_seq, head.dead)
                delivered = sum(len(records) for records, _ in head.parts)
                self.status.delivered += delivered
                self.status.dead_lettered += len(head.dead)
                self.status.last_success = time.time()
                continue

    async def _deliver(self, batch: Sequence[Record], entry: _InFlight) -> None:
        """Send ``batch`` until every record is accepted (maybe pending an ack) or isolated and dead-lettered."""
        queue: deque[Sequence[Record]] = deque([batch])
        while queue:
            part = queue.popleft()
            outcome = await self._send_with_retry(part)
            if isinstance(outcome, Delivered):
                entry.parts.append((part, outcome.ack))
            elif isinstance(outcome, Rejected) and outcome.index is not None and 0 <= outcome.index < len(part):
                i = outcome.index
                if i:
                    entry.parts.append((part[:i], None))
                entry.dead.append((part[i], outcome.reason))
                self._log.error(
                    "event dead-lettered: the destination refused it",
                    event_id=part[i].id,
                    seq=part[i].seq,
                    reason=outcome.reason,
                )
                if i + 1 < len(part):
                    queue.appendleft(part[i + 1 :])
            elif isinstance(outcome, Rejected | TooLarge):
                if len(part) == 1:
                    entry.dead.append((part[0], outcome.reason))
                    self._log.error(
                        "event dead-lettered: the destination refused it",
                        event_id=part[0].id,
                        seq=part[0].seq,
                        reason=outcome.reason,
                    )
                else:
                    mid = len(part) // 2
                    queue.appendleft(part[mid:])
                    queue.appendleft(part[:mid])
            else:  # pragma: no cover - _send_with_retry only returns final outcomes
                raise AssertionError(f"unexpected outcome {outcome!r}")

    async def _send_with_retry(self, part: Sequence[Record]) -> Outcome:
        retrying = AsyncRetrying(
            retry=retry_if_result(_retryable),
            wait=_Backoff(self.retry_initial, self.retry_max),
            stop=stop_never,
            before_sleep=self._on_failure,
            reraise=True,
        )
        outcome: Outcome = Retry("not sent")
        async for attempt in retrying:
            with attempt:
                outcome = await self._send_once(part)
            if attempt.retry_state.outcome is not None and not attempt.retry_state.outcome.failed:
                attempt.retry_state.set_result(outcome)
        if self._failing_since is not None:
            self._log.info(
                "sink delivering again",
                after_attempts=self._attempts,
                down_for=round(time.monotonic() - self._failing_since, 1),
            )
            self._failing_since = None
            self._attempts = 0
        self.status.state, self.status.detail = "ok", ""
        return outcome

    async def _send_once(self, part: Sequence[Record]) -> Outcome:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands just as
            # send() finishes, and the loop would then outlive the shutdown that cancelled it.
            async with asyncio.timeout(self.send_timeout):
                return await self.sink.send(part)
        except TimeoutError:
            return Retry(f"no answer within {self.send_timeout:g}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A sink bug must not stop delivery for good, nor lose the batch: log it and retry.
            self._log.exception("sink raised instead of returning an outcome")
            return Retry(f"{type(exc).__name__}: {exc}")

    def _on_failure(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome.result() if retry_state.outcome else None
        now = time.monotonic()
        self._attempts += 1
        holding = isinstance(outcome, Hold)
        reason = getattr(outcome, "reason", "unknown")
        self.status.state = "holding" if holding else "retrying"
        self.status.detail = reason
        wait = retry_state.upcoming_sleep
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if first or now - self._last_fail_log >= LOG_EVERY:
            self._last_fail_log = now
            if holding:
                self._log.error(
                    "sink refuses delivery; holding events until fixed (nothing is dropped)",
                    reason=reason,
                    attempts=self._attempts,
                    next_try_in=round(wait, 1),
                )
            else:
                self._log.warning(
                    "sink delivery failed; will retry",
                    reason=reason,
                    attempts=self._attempts,
                    next_try_in=round(wait, 1),
                )
