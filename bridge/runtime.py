"""The supervisor: one TaskGroup of named tasks for the journal, every sink and every hub (DESIGN 1, 7).

Start order: state directory (checked and locked), journal, sinks (each with a health check), the listener, then
hubs. Stop order is the reverse, so nothing is accepted from a hub that cannot be recorded: the listener stops
first, then each hub's streams and poll stop and what they queued is committed, sinks get a bounded time to drain,
and the journal commits what it still holds before it closes. A component that crashes is logged and replaced by a
fresh one after a backoff; the others keep running, and /healthz shows it as restarting.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from bridge.backoff import Backoff, RateLimitedLog
from bridge.config import BridgeConfig
from bridge.delivery import Delivery, SinkStatus
from bridge.errors import BridgeError
from bridge.events import Event, shorten
from bridge.filters import FilterEngine
from bridge.handover import hand_over
from bridge.journal import Journal, SinkSpec, StateDirLock, prepare_state_dir
from bridge.metrics import Stats
from bridge.options import HubConfigBase, SinkConfigBase
from bridge.pipeline import Listener, Pipeline
from bridge.server import NOT_FOUND, Server
from bridge.shard import owned, resolve
from bridge.sinks import build_sink
from bridge.sources import SOURCES
from bridge.sources.runner import HubRunner, HubStatus

log = structlog.get_logger("bridge.runtime")

# Restarts within this window count as a crash loop (shown on /healthz).
CRASH_WINDOW = 600.0
# The wait before a crashed component is replaced: capped exponential with jitter, never below the floor.
RESTART_INITIAL = 1.0
RESTART_MAX = 60.0
RESTART_FLOOR = 0.5
# How often /healthz's figures that need the journal (oldest undelivered event, device counts) are refreshed.
STATS_EVERY = 1.0


@dataclass(slots=True)
class _Crashes:
    times: list[float] = field(default_factory=list)

    def note(self) -> int:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < CRASH_WINDOW] + [now]
        return len(self.times)


async def supervise(name: str, run_once: Callable[[], Awaitable[None]], status: HubStatus | SinkStatus) -> None:
    """Run fresh components until one returns: a component that crashes is logged and replaced after a backoff."""
    backoff = Backoff(RESTART_INITIAL, RESTART_MAX, floor=RESTART_FLOOR)
    crashes = _Crashes()
    rate_log = RateLimitedLog(log, window=300.0)
    while True:
        started = time.monotonic()
        try:
            await run_once()
            return
        except Exception as exc:
            # A component's own TaskGroup wraps what failed in it: look at the leaves.
            leaves = _leaves(exc)
            if all(isinstance(e, BridgeError) for e in leaves):
                # Foreseeable (the journal cannot write, a file cannot be opened...): one line, no traceback.
                why = "; ".join(dict.fromkeys(shorten(str(e), 300) for e in leaves))
                kinds = tuple(sorted({type(e).__name__ for e in leaves}))
                rate_log.error((name, kinds), "component failed; restarting it", component=name, error=why)
            else:
                if rate_log.allow((name, "crash")) is not None:
                    log.exception("component crashed; restarting it", component=name)
                bug = next(e for e in leaves if not isinstance(e, BridgeError))
                why = f"{type(bug).__name__}: {shorten(str(bug), 200)}"
        if time.monotonic() - started > 60:
            backoff.reset()
        recent = crashes.note()
        status.restarts += 1
        status.state = "restarting"
        status.detail = f"{why} ({recent} restart(s) in the last {CRASH_WINDOW / 60:g} min)"
        await asyncio.sleep(backoff.next())


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


class HubSlot:
    """One configured hub: its status, and the runner of the moment (a fresh one after every crash)."""

    def __init__(self, cfg: HubConfigBase, pipeline: Pipeline) -> None:
        self.cfg = cfg
        self.source_cls = SOURCES[cfg.type]
        self.pipeline = pipeline
        self.status = HubStatus()
        self.runner: HubRunner | None = None
        self.task: asyncio.Task[None] | None = None
        self._stopping = False

    async def run_once(self) -> None:
        if self._stopping:
            return
        runner = self.runner = HubRunner(self.cfg, self.source_cls, self.pipeline, self.status)
        try:
            await runner.run()
        finally:
            self.runner = None

    def stop(self) -> None:
        self._stopping = True
        if self.runner is not None:
            self.runner.stop()

    async def handle(self, route: str, request: web.Request) -> web.StreamResponse:
        runner = self.runner
        if runner is None:
            return web.Response(status=503, text="hub source not running")
        return await runner.handle(route, request)


class SinkSlot:
    """One configured sink: its status, and the sink and delivery loop of the moment (fresh after a crash)."""

    def __init__(self, cfg: SinkConfigBase, journal: Journal) -> None:
        self.cfg = cfg
        self.journal = journal
        self.status = SinkStatus()
        self.delivery: Delivery | None = None
        self.kind = cfg.type
        self.task: asyncio.Task[None] | None = None
        self._first = True
        self._stopping = False

    def stop(self) -> None:
        """Finish the batches on their way (the cursor moves over them), take no new ones, then return."""
        self._stopping = True
        if self.delivery is not None:
            self.delivery.stop()

    async def run_once(self) -> None:
        if self._stopping:
            return
        sink, options = build_sink(self.cfg)
        async with sink:
            health = await sink.health()
            self.status.health = health.detail
            if self._first or not health.ok:
                if health.ok:
                    log.info("sink ready", sink=sink.name, kind=sink.kind, detail=health.detail)
                else:
                    log.warning("sink not healthy; events wait in the journal", sink=sink.name, detail=health.detail)
            self._first = False
            filters = FilterEngine(self.cfg.filters)
            self.delivery = Delivery(sink, self.journal, options, status=self.status, filters=filters)
            if self._stopping:
                self.delivery.stop()
            await self.delivery.run()

    @property
    def lag(self) -> int:
        return self.journal.head - self.journal.cursor(self.cfg.name)


class Runtime:
    """The whole bridge for one config. ``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self, config: BridgeConfig, on_events: Listener | None = None, reload: asyncio.Event | None = None
    ) -> None:
        self.config = config
        # Set (by SIGHUP) to re-read the config file and apply what changed (bridge.reload).
        self.reload_requested = reload
        self.on_events = on_events
        opts = config.journal
        self.journal = Journal(
            config.state_dir / "journal.sqlite3",
            max_bytes=opts.max_bytes,
            synchronous=opts.synchronous,
            commit_window=opts.commit_window,
            dead_letter_max_count=opts.dead_letters.max_count,
            dead_letter_max_age=opts.dead_letters.max_age,
        )
        self.pipeline: Pipeline | None = None
        self.hubs: dict[str, HubSlot] = {}
        self.sinks: dict[str, SinkSlot] = {}
        self.server: Server | None = None
        self.ready = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self.stats = Stats(self)
        # Run as tasks once the bridge is running, cancelled when it starts stopping (bridge.service: the systemd
        # notifier and watchdog, the periodic summary line).
        self.services: list[Callable[[Runtime], Coroutine[Any, Any, None]]] = []

    @property
    def runners(self) -> dict[str, HubRunner]:
        """The hub runners running now, by hub name."""
        return {name: slot.runner for name, slot in self.hubs.items() if slot.runner is not None}

    async def run(self, stop: asyncio.Event) -> None:
        prepare_state_dir(self.config.state_dir)
        lock = StateDirLock(self.config.state_dir)
        lock.acquire()
        try:
            await self.journal.open()
            try:
                await self._run(stop)
            finally:
                await self.journal.close()
                log.info("stopped")
        finally:
            lock.release()

    async def _run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            journal_task = tg.create_task(self.journal.run(), name="journal")
            pipeline = self.pipeline = await Pipeline.open(self.journal)
            if self.on_events is not None:
                pipeline.listeners.append(self.on_events)
            pipeline.on_readings = self.stats.on_readings
            pipeline.listeners.append(self.stats.on_events)
            pipeline.listeners.append(self._log_events)
            log.info(
                "journal open", path=str(self.journal.path), head=self.journal.head, known_values=len(pipeline.differ)
            )
            await self.journal.register_sinks(
                [SinkSpec(s.name, s.renamed_from) for s in cfg.sinks], keep_removed=cfg.journal.removed_sinks == "keep"
            )
            await self.stats.load()
            for sink_cfg in cfg.sinks:
                self.start_sink(sink_cfg)
            self.server = Server(cfg.listen_host, cfg.listen_port, self.health, self.stats.metrics)
            shard = resolve(cfg.shard)
            hubs = owned(cfg.hubs, shard)
            if shard is not None:
                log.info("sharded", shard=str(shard), origin=shard.origin, hubs=len(hubs))
            for hub_cfg in hubs:
                self.mount_routes(hub_cfg)
            try:
                await self.server.start()
            except BridgeError:
                journal_task.cancel()
                for slot in self.sinks.values():
                    assert slot.task is not None
                    slot.task.cancel()
                raise
            # A hub that moved to this shard takes its last-known values over from the stream first (docs/scale.md).
            await hand_over(pipeline, hubs, cfg.sinks, shard)
            for hub_cfg in hubs:
                self.start_hub(hub_cfg)
            self.ready.set()
            log.info("bridge running", hubs=len(self.hubs), sinks=len(self.sinks))
            services = [tg.create_task(svc(self), name=f"service[{svc.__name__}]") for svc in self.services]
            services.append(tg.create_task(self._refresh_stats(), name="stats"))
            await self._serve(stop)
            log.info("stopping")
            for task in services:
                task.cancel()
            await self.server.stop()
            deadline = time.monotonic() + cfg.shutdown_timeout
            await self._stop_hubs([s.task for s in self.hubs.values() if s.task is not None], deadline)
            await self._drain(deadline)
            sink_tasks = [s.task for s in self.sinks.values() if s.task is not None]
            for task in sink_tasks:
                task.cancel()
            await asyncio.gather(*sink_tasks, return_exceptions=True)
            await self.stats.save()
            await self.journal.close()

    def _log_events(self, events: list[Event]) -> None:
        """At ``log.level: debug``, one line per committed event (what changed, from where)."""
        if self.config.log.level != "debug":
            return
        for ev in events:
            log.debug(
                "event",
                hub=ev.hub,
                kind=ev.kind,
                device_id=ev.device_id,
                device=ev.device,
                attribute=ev.attribute,
                value=ev.value,
                previous=ev.previous,
                source=ev.source,
                id=ev.id,
            )

    async def _refresh_stats(self) -> None:
        while True:
            await self.stats.refresh()
            await asyncio.sleep(STATS_EVERY)

    async def _serve(self, stop: asyncio.Event) -> None:
        """Wait for ``stop``, applying a new config whenever a reload is requested meanwhile."""
        from bridge.reload import reload_from_file

        requested = self.reload_requested
        while not stop.is_set():
            if requested is None:
                await stop.wait()
                return
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(requested.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if requested.is_set() and not stop.is_set():
                requested.clear()
                await reload_from_file(self)

    # ------------------------------------------------------------------ components (also used by reload)

    def start_sink(self, sink_cfg: SinkConfigBase) -> SinkSlot:
        assert self._tg is not None
        slot = self.sinks[sink_cfg.name] = SinkSlot(sink_cfg, self.journal)
        n = sink_cfg.name
        slot.task = self._tg.create_task(supervise(f"sink:{n}", slot.run_once, slot.status), name=f"sink[{n}]")
        return slot

    def start_hub(self, hub_cfg: HubConfigBase) -> HubSlot:
        assert self._tg is not None and self.pipeline is not None
        slot = self.hubs[hub_cfg.name] = HubSlot(hub_cfg, self.pipeline)
        n = hub_cfg.name
        slot.task = self._tg.create_task(supervise(f"hub:{n}", slot.run_once, slot.status), name=f"hub[{n}]")
        return slot

    def mount_routes(self, hub_cfg: HubConfigBase) -> None:
        """Mount a hub's routes; a request finds the hub's slot of the moment by name (a reload may replace it)."""
        assert self.server is not None
        for route in SOURCES[hub_cfg.type].routes(hub_cfg):
            self.server.add_route(route.method, route.path, functools.partial(self._handle, hub_cfg.name, route.name))

    async def _handle(self, hub: str, route: str, request: web.Request) -> web.StreamResponse:
        slot = self.hubs.get(hub)
        if slot is None:  # removed by a reload: the same 404 as any unknown path
            return web.Response(status=404, text=NOT_FOUND)
        return await slot.handle(route, request)

    async def _stop_hubs(self, tasks: list[asyncio.Task[None]], deadline: float) -> None:
        """Stop streams and polls, and commit what they queued, within the drain deadline."""
        for slot in self.hubs.values():
            slot.stop()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        if pending:
            log.warning("hubs did not finish committing what they had queued within the deadline", hubs=len(pending))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, deadline: float) -> None:
        """Give sinks a bounded time to deliver what is journalled; what is left is delivered next start."""
        while time.monotonic() < deadline:
            if all(s.lag == 0 or s.status.state != "ok" for s in self.sinks.values()):
                return
            await asyncio.sleep(0.05)
        log.info(
            "drain deadline reached; the rest is delivered at next start",
            lag={n: s.lag for n, s in self.sinks.items()},
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """/healthz: every hub and sink with its state; ok (200) only while all are ok, else degraded (503)."""
        stats = self.stats
        stats.count()
        problems: list[str] = []
        hubs: dict[str, Any] = {}
        for name, hub_slot in self.hubs.items():
            hst = hub_slot.status
            streams = hst.streams
            hubs[name] = {
                **hst.as_dict(),
                "streams_connected": sorted(k for k, v in streams.items() if v.get("up")),
                "last_event": stats.last_event.get(name),
                "devices": stats.devices.get(name, 0),
                "crash_loop": stats.crash_loop(f"hub:{name}"),
            }
            if hst.state != "ok":
                problems.append(f"hub {name} is {hst.state}" + (f": {hst.detail}" if hst.detail else ""))
            elif hubs[name]["crash_loop"]:
                problems.append(f"hub {name} keeps crashing ({hst.restarts} restarts)")
        sinks: dict[str, Any] = {}
        for name, sink in self.sinks.items():
            st = sink.status
            totals = stats.totals.get(name, {})
            sinks[name] = {
                **st.as_dict(),
                "kind": sink.kind,
                "lag": sink.lag,
                "backlog": sink.lag,
                "oldest_undelivered_age": stats.oldest.get(name),
                "in_flight": st.in_flight,
                "retries": st.retries,
                "delivered_total": totals.get("delivered", 0),
                "dead_lettered_total": totals.get("dead_lettered", 0),
                "filtered_total": totals.get("filtered", 0),
                "crash_loop": stats.crash_loop(f"sink:{name}"),
            }
            if st.state != "ok":
                problems.append(f"sink {name} is {st.state}" + (f": {st.detail}" if st.detail else ""))
            elif sinks[name]["crash_loop"]:
                problems.append(f"sink {name} keeps crashing ({st.restarts} restarts)")
            if stats.recent_dead_letter(name):
                problems.append(f"sink {name} dead-lettered events in the last hour (hubbridge spool dead-letters)")
        disk = self.journal.disk
        if self.journal.full:
            problems.append("the journal is full: hubs hold until the sinks catch up")
        ok = not problems
        return ok, {
            "status": "ok" if ok else "degraded",
            "problems": problems,
            "uptime": round(time.time() - stats.started, 1),
            "events_emitted": sum(stats.emitted.values()),
            "hubs": hubs,
            "sinks": sinks,
            "journal": {
                "head": self.journal.head,
                "pending_bytes": self.journal.pending_bytes,
                "disk_bytes": disk.file_bytes,
                "used_bytes": disk.used_bytes,
                "max_bytes": self.journal.max_bytes,
                "full": self.journal.full,
                "removed_sinks_kept": sorted(set(self.journal.cursors) - set(self.sinks)),
            },
        }
