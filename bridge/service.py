"""What a service manager and an operator see of a running bridge: systemd's READY/STATUS/STOPPING, the watchdog,
and the periodic summary line. :func:`attach` adds them to a :class:`~bridge.runtime.Runtime` run by ``hubbridge
run``.

The watchdog is fed only while every component is making progress or waiting in a known state. Waiting out an
outage is known: a hub that is offline, refuses the token or holds for journal room; a sink that is retrying,
holding or being restarted; an idle one. Wedged is work on its way that has not finished for ``stall_timeout``: a
hub poll, a sink's batches in flight with no attempt finishing, journal appends with no commit. The event loop
itself being blocked stops the feeding too (this runs on it). systemd then restarts the bridge (``WatchdogSec``),
and the journal makes that lose nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from typing import TYPE_CHECKING

import structlog

from bridge.notify import NOTIFIER, Notifier, watchdog_interval

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = structlog.get_logger("bridge.service")

# How often the STATUS line is refreshed when there is no watchdog to feed.
STATUS_EVERY = 5.0
# READY waits at most this long for hubs and sinks to be past starting (systemd's start timeout is 90 s).
READY_WAIT = 60.0
# The flow summary: one info line this often.
SUMMARY_EVERY = 300.0


def attach(runtime: Runtime, notifier: Notifier | None = None) -> None:
    """Add the service tasks to ``runtime`` (they start once it is running)."""
    chosen = notifier or NOTIFIER

    async def systemd(rt: Runtime) -> None:
        await notify_loop(rt, chosen)

    async def summary(rt: Runtime) -> None:
        await summary_loop(rt)

    if chosen.enabled:
        runtime.services.append(systemd)
    runtime.services.append(summary)


class Rate:
    """Events per minute from a running total, over the last minute of samples."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        t0, n0 = self.samples[0]
        span = now - t0
        return 0.0 if span <= 0 else (total - n0) * 60.0 / span


def status_line(rt: Runtime, per_minute: float) -> str:
    """``2 hubs, 3 sinks, 14 ev/min, backlog 0`` and what is not ok."""
    hubs, sinks = len(rt.hubs), len(rt.sinks)
    backlog = sum(s.lag for s in rt.sinks.values())
    text = (
        f"{hubs} hub{'s' if hubs != 1 else ''}, {sinks} sink{'s' if sinks != 1 else ''}, "
        f"{per_minute:.0f} ev/min, backlog {backlog}"
    )
    trouble = [f"hub {n} {s.status.state}" for n, s in rt.hubs.items() if s.status.state != "ok"]
    trouble += [f"sink {n} {s.status.state}" for n, s in rt.sinks.items() if s.status.state != "ok"]
    if rt.journal.full:
        trouble.append("journal full")
    return text + (f"; {', '.join(trouble)}" if trouble else "")


class Stalls:
    """Finds wedged components (see the module docstring)."""

    def __init__(self, stall_timeout: float) -> None:
        self.stall_timeout = stall_timeout
        self._busy: dict[str, float] = {}  # sink -> since when it has had work (so an idle sink is not stale)

    def wedged(self, rt: Runtime, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        limit = self.stall_timeout
        out = []
        for name, hub in rt.hubs.items():
            started = hub.status.poll_started
            if started is not None and now - started > limit:
                out.append(f"hub {name}: a poll has been on its way for {now - started:.0f}s")
        for name, sink in rt.sinks.items():
            st = sink.status
            if st.state != "ok" or sink.lag == 0:
                self._busy.pop(name, None)
                continue  # retrying, holding, restarting, starting: a known wait; idle: nothing to do
            since = max(st.progress, self._busy.setdefault(name, now))
            if now - since > limit:
                what = f"{st.in_flight} event(s) on their way" if st.in_flight else f"{sink.lag} event(s) waiting"
                out.append(f"sink {name}: {what}, no attempt finished for {now - since:.0f}s")
        started = rt.journal.commit_started
        if started is not None and now - started > limit:
            out.append(f"journal: a commit has been on the disk for {now - started:.0f}s")
        return out


def _starting(rt: Runtime) -> bool:
    hubs = any(h.status.state == "starting" for h in rt.hubs.values())
    return hubs or any(s.status.state == "starting" for s in rt.sinks.values())


async def notify_loop(rt: Runtime, notifier: Notifier) -> None:
    """READY, then STATUS (and WATCHDOG while not wedged) on every tick; STOPPING when cancelled."""
    interval = watchdog_interval()
    tick = min(interval, STATUS_EVERY) if interval else STATUS_EVERY
    stalls = Stalls(rt.config.stall_timeout)
    rate = Rate()
    # READY once every hub and sink is past starting (a first poll answered or failed, a sink's health check
    # done): up, or waiting in a known state. Capped, so a slow hub cannot hold systemd's start past its timeout.
    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline and _starting(rt):  # noqa: ASYNC110 - states are plain fields, no event
        await asyncio.sleep(0.05)
    line = status_line(rt, 0.0)
    notifier.send("READY=1", f"STATUS={line}", f"MAINPID={os.getpid()}")
    fed = True
    try:
        while True:
            await asyncio.sleep(tick)
            stalls.stall_timeout = rt.config.stall_timeout  # a reload may change it
            line = status_line(rt, rate.add(sum(rt.stats.emitted.values())))
            wedged = stalls.wedged(rt) if interval else []
            if wedged:
                if fed:
                    log.error(
                        "the pipeline is wedged: no longer feeding systemd's watchdog, which will restart the bridge",
                        wedged=wedged,
                    )
                fed = False
                notifier.send(f"STATUS=wedged: {'; '.join(wedged)}")
                continue
            if not fed:
                log.info("the pipeline moves again; feeding the watchdog")
            fed = True
            notifier.send(f"STATUS={line}", *(["WATCHDOG=1"] if interval else []))
    finally:
        with contextlib.suppress(Exception):
            notifier.send("STOPPING=1", "STATUS=stopping: committing and delivering what is on its way")


async def summary_loop(rt: Runtime, every: float | None = None) -> None:
    """One info line every ``every`` seconds: events in, out per sink, backlog, what is not ok."""
    last_in = sum(rt.stats.emitted.values())
    last_out = dict(rt.stats.rates())
    while True:
        await asyncio.sleep(every or rt.config.log.summary_every)
        rates = rt.stats.rates()
        now_in = rates["in"]
        out = {name: rates.get(f"sink:{name}", 0) - last_out.get(f"sink:{name}", 0) for name in rt.sinks}
        log.info(
            "flow summary",
            events_in=now_in - last_in,
            delivered=out,
            backlog={name: s.lag for name, s in rt.sinks.items()},
            hubs={name: s.status.state for name, s in rt.hubs.items()},
            sinks={name: s.status.state for name, s in rt.sinks.items()},
            period=every or rt.config.log.summary_every,
        )
        last_in, last_out = now_in, dict(rates)
