"""The supervisor: one TaskGroup of named tasks for the journal, every source and every sink (DESIGN 1, 7).

Start order: journal, then sinks (each with a health check), then the listener, then sources. Stop order is the
reverse, so nothing is accepted from a hub that cannot be recorded: the listener and sources stop first, the
journal commits what it holds, sinks get a bounded time to drain, then everything closes. A crash in one
component is logged and that component restarts after a backoff; the others keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from bridge.config import BridgeConfig, HubitatHubConfig
from bridge.delivery import Delivery
from bridge.journal import Journal
from bridge.pipeline import Listener, Pipeline
from bridge.server import Server
from bridge.sinks import build_sink
from bridge.sinks.base import Sink
from bridge.sources.hubitat import HubitatSource

log = structlog.get_logger("bridge.runtime")

DRAIN_DEADLINE = 10.0


async def supervise(name: str, factory: Callable[[], Awaitable[None]]) -> None:
    """Run ``factory()`` forever: a component that crashes is logged and restarted with capped backoff."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if time.monotonic() - started > 60:
                failures = 0
            failures += 1
            delay = random.uniform(0.5, min(60.0, 2.0**failures))
            log.exception("component crashed; restarting it", component=name, retry_in=round(delay, 1))
            await asyncio.sleep(delay)


class Runtime:
    """The whole bridge for one config. ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, config: BridgeConfig, on_events: Listener | None = None) -> None:
        self.config = config
        self.on_events = on_events
        self.journal = Journal(
            config.state_dir / "journal.sqlite3",
            max_bytes=config.journal.max_bytes,
            synchronous=config.journal.synchronous,
            commit_window=config.journal.commit_window,
        )
        self.pipeline: Pipeline | None = None
        self.sinks: list[Sink] = []
        self.deliveries: dict[str, Delivery] = {}
        self.sources: dict[str, HubitatSource] = {}
        self.server: Server | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await self.journal.open()
        try:
            async with asyncio.TaskGroup() as tg:
                journal_task = tg.create_task(self.journal.run(), name="journal")
                pipeline = self.pipeline = await Pipeline.open(self.journal)
                if self.on_events is not None:
                    pipeline.listeners.append(self.on_events)
                log.info(
                    "journal open",
                    path=str(self.journal.path),
                    head=self.journal.head,
                    known_values=len(pipeline.differ),
                )
                await self._start_sinks()
                delivery_tasks = [
                    tg.create_task(supervise(f"sink:{name}", d.run), name=f"sink:{name}")
                    for name, d in self.deliveries.items()
                ]
                for hub in self.config.hubs:
                    if isinstance(hub, HubitatHubConfig):
                        self.sources[hub.name] = HubitatSource(hub, pipeline)
                self.server = Server(self.config.listen_host, self.config.listen_port, self.health)
                self.server.hubitat = {n: s for n, s in self.sources.items() if s.cfg.webhook_secret is not None}
                await self.server.start()
                source_tasks = [
                    tg.create_task(supervise(f"hub:{name}", src.run), name=f"hub:{name}")
                    for name, src in self.sources.items()
                ]
                self.ready.set()
                log.info("bridge running", hubs=len(self.sources), sinks=len(self.deliveries))
                await stop.wait()
                log.info("stopping")
                await self.server.stop()
                for task in source_tasks:
                    task.cancel()
                await asyncio.gather(*source_tasks, return_exceptions=True)
                await self._drain()
                for task in [*delivery_tasks, journal_task]:
                    task.cancel()
        finally:
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            for src in self.sources.values():
                await src.close()
            await self.journal.close()
            log.info("stopped")

    async def _start_sinks(self) -> None:
        for cfg in self.config.sinks:
            sink, opts = build_sink(cfg)
            await sink.start()
            self.sinks.append(sink)
            health = await sink.health()
            if health.ok:
                log.info("sink ready", sink=sink.name, kind=sink.kind, detail=health.detail)
            else:
                log.warning(
                    "sink not healthy at start; events wait in the journal", sink=sink.name, detail=health.detail
                )
            self.deliveries[sink.name] = Delivery(sink, self.journal, **dataclasses.asdict(opts))
        await self.journal.register_sinks([s.name for s in self.sinks])

    async def _drain(self) -> None:
        """Give sinks a bounded time to deliver what is journalled; what is left is delivered next start."""
        deadline = time.monotonic() + DRAIN_DEADLINE
        while time.monotonic() < deadline:
            if all(d.lag == 0 or d.status.state != "ok" for d in self.deliveries.values()):
                return
            await asyncio.sleep(0.05)
        log.info(
            "drain deadline reached; the rest is delivered at next start",
            lag={n: d.lag for n, d in self.deliveries.items()},
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        hubs = {
            name: {"status": src.status, "eventsocket_connected": src.connected, "polls": src.polls}
            for name, src in self.sources.items()
        }
        sinks = {
            name: {
                "state": d.status.state,
                "detail": d.status.detail,
                "lag": d.lag,
                "delivered": d.status.delivered,
                "dead_lettered": d.status.dead_lettered,
            }
            for name, d in self.deliveries.items()
        }
        ok = all(s["state"] == "ok" for s in sinks.values()) and all(h["status"] == "ok" for h in hubs.values())
        return ok, {
            "status": "ok" if ok else "degraded",
            "hubs": hubs,
            "sinks": sinks,
            "journal": {"head": self.journal.head, "pending_bytes": self.journal.pending_bytes},
        }
