"""Indexer acknowledgement (splunk_hec.md §4): the ackIds of accepted requests, polled on ``/ack`` until true.

One ackId covers one request; HEC answers ``true`` once and then forgets the id (item 5), so an id is settled the
first time it is true. How long to wait is the delivery loop's ``ack_timeout``: it cancels the future of a batch
it gave up on (and sends the batch again), and the poller then stops asking for that id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from bridge.backoff import RateLimitedLog

log = structlog.get_logger("bridge.sinks.splunk_hec")

# Poll failures that may pass (the ids can still be confirmed): logged, at most once per window each.
POLL_PROBLEMS = ("token", "error")

# (state, detail) of one /ack request: ("ok", acks object) or (problem, one line).
AckRequest = Callable[[dict[str, str] | None, list[int]], Awaitable[tuple[str, "dict[str, Any] | str"]]]


class AckPoller:
    """Pending acknowledgements of one sink and the task that polls for them."""

    def __init__(self, sink: str, interval: float, request: AckRequest) -> None:
        self.sink = sink
        self.interval = interval
        self.request = request
        # unknown until /ack answered once; ok | disabled (code 14) | missing (no /ack at all)
        self.state = "unknown"
        self._pending: dict[int, asyncio.Future[bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rate_log = RateLimitedLog(log.bind(sink=sink))

    @property
    def pending(self) -> int:
        return sum(1 for f in self._pending.values() if not f.done())

    def ids(self) -> list[int]:
        return sorted(i for i, f in self._pending.items() if not f.done())

    def expect(self, ack_id: int) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        old = self._pending.pop(ack_id, None)
        if old is not None and not old.done():  # HEC reused an id: the old one can never be answered
            old.set_result(False)
        self._pending[ack_id] = future
        self._wake.set()
        return future

    def resolve(self, acks: dict[str, Any]) -> None:
        # §4 item 5: HEC reports true once and then forgets the id, so settle it the first time.
        for key, value in acks.items():
            if value is not True:
                continue
            try:
                future = self._pending.pop(int(key), None)
            except ValueError:
                continue
            if future is not None and not future.done():
                future.set_result(True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sink[{self.sink}].acks")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.abandon()

    def abandon(self) -> None:
        """Give up every pending ackId: the delivery loop resends those batches (after a restart, re-reads them).

        A cancelled future is the "never mind" the delivery loop understands without logging a line of its own.
        """
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    async def _run(self) -> None:
        """Every ``interval``, ask for every outstanding ackId in one request."""
        while True:
            for ack_id in [i for i, f in self._pending.items() if f.done()]:
                del self._pending[ack_id]  # settled, or given up on by the delivery loop
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.interval)
            ids = self.ids()
            if not ids:
                continue
            try:
                state, detail = await self.request(None, ids)
            except Exception:  # a bug here must not stop confirmations for good
                if self._rate_log.allow("bug") is not None:
                    log.exception("ack poll failed", sink=self.sink)
                continue
            if state == "ok" and isinstance(detail, dict):
                for problem in POLL_PROBLEMS:
                    self._rate_log.forget(("poll", problem))  # over: a recurrence is logged at once
                self.resolve(detail)
            elif state in ("missing", "disabled"):
                # Ack was switched off on the token after it issued these ids, or /ack is gone (a proxy, another
                # receiver): these ids can never be confirmed. Give them up now rather than after ack_timeout;
                # the batches go out again, send() probes /ack and holds, and the delivery loop logs that once.
                self.abandon()
            else:
                # The token was refused or the receiver failed (5xx, network): the ids may still be confirmed once
                # it is back, so they wait (up to ack_timeout); meanwhile one line per problem.
                self._rate_log.warning(("poll", state), "cannot poll indexer acknowledgements", reason=str(detail))
