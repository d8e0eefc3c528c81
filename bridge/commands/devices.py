"""``hubbridge devices``: a dry run against each hub: its devices and attributes, and an events-per-day estimate.

Each hub's source is opened with a context of our own that journals nothing: one poll gives the devices and
attributes; then the hub's push streams (the eventsocket) run for ``--sample`` seconds and every change they bring
is counted. POST-URL is not registered (a dry run changes nothing on the hub), so a hub without an eventsocket is
sampled by polling at the end of the sample instead.

Each sink's include/exclude rules are applied to what was found: per sink, how many attributes it would forward and
its share of the estimate (an attribute no sink forwards is shown in brackets; deadband and min_interval thin the
flow further, so those figures are upper bounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from bridge.backoff import RateLimitedLog
from bridge.config import load_config
from bridge.diff import same_value
from bridge.errors import BridgeError, ConfigError, JournalError
from bridge.events import Event, Reading
from bridge.filters import FilterEngine
from bridge.journal import Recent
from bridge.logs import setup_logging
from bridge.sources import SOURCES

EXIT_OK = 0
EXIT_ERROR = 1


class _DryRun:
    """A HubContext that records what it is given and journals nothing."""

    def __init__(self, name: str, state_dir: Path) -> None:
        self.name = name
        # A stored cloud login lives there; a rotated refresh token must be written back even in a dry run, or
        # the running bridge's copy would be the one the cloud no longer accepts.
        self.state_dir = state_dir
        self.log = structlog.get_logger("bridge.devices").bind(hub=name)
        self.rate_log = RateLimitedLog(self.log)
        self.values: dict[tuple[str, str], Any] = {}
        self.names: dict[str, str] = {}
        self.rooms: dict[str, str] = {}
        self.changes: Counter[tuple[str, str]] = Counter()
        self.meta: dict[str, Any] = {}
        self.sampling = False

    def take(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            if r.kind != "device" or r.device_id is None:
                continue
            key = (r.device_id, r.attribute)
            if r.device:
                self.names[r.device_id] = r.device
            if r.room:
                self.rooms[r.device_id] = r.room
            if self.sampling and (key not in self.values or r.momentary or not same_value(self.values[key], r.value)):
                self.changes[key] += 1
            self.values[key] = r.value

    async def push(
        self,
        readings: Sequence[Reading],
        *,
        size: int,
        unless: asyncio.Future[None] | None = None,
        hold: bool = True,
        track: bool = True,
    ) -> asyncio.Future[list[Event]] | None:
        self.take(readings)
        if not track and unless is None:
            return None
        fut: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        fut.set_result([])
        return fut

    async def relay(self, events: Sequence[Event]) -> list[Event]:
        # Never reached (JetStream hubs are not sampled), and must not be: what is not recorded is not acknowledged.
        raise JournalError("a dry run records nothing")

    def reconcile(self, why: str) -> None:
        pass

    def show(self, key: str, value: Any) -> None:
        pass

    def stream_state(self, stream: str, up: bool, detail: str = "") -> None:
        pass

    async def get_meta(self, key: str) -> Any:
        return self.meta.get(key)

    async def set_meta(self, key: str, value: Any) -> None:
        self.meta[key] = value

    async def recent(self, within: float) -> list[Recent]:
        return []  # a dry run recorded nothing, so there is nothing to match copies against


async def _sample(cfg: Any, state_dir: Path, seconds: float) -> _DryRun:
    ctx = _DryRun(cfg.name, state_dir)
    source_cls = SOURCES[cfg.type]
    async with source_cls(cfg, ctx) as src:
        ctx.take(await src.poll("poll"))
        ctx.sampling = True
        print(
            f"hub {cfg.name}: {len(ctx.names)} device(s); sampling changes for {seconds:g}s",
            file=sys.stderr,
            flush=True,
        )
        streams = {n: run for n, run in src.streams().items() if n != "postURL"}
        tasks = [asyncio.create_task(run(), name=f"devices[{cfg.name}].{n}") for n, run in streams.items()]
        try:
            await asyncio.sleep(seconds)
            if not src.stream_live:
                ctx.take(await src.poll("poll"))  # no push stream: what changed over the sample, at least
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
    return ctx


def devices(config: str, hub: str | None, sample: float, as_json: bool) -> int:
    cfg = load_config(config)
    setup_logging("warning", "console", sys.stderr)  # stdout is for the list (JSON lines with --json)
    hubs = [h for h in cfg.hubs if hub is None or h.name == hub]
    for h in [h for h in hubs if h.type == "nats"]:
        # Sampling it would take messages other central bridges are waiting for; it has no devices of its own.
        print(f"hub {h.name}: a JetStream hub relays what other bridges recorded; it has no devices to list")
        hubs.remove(h)
    if not hubs:
        raise ConfigError(config, [f"no hub named {hub!r}" if hub else "no hubs configured"])
    engines = {s.name: FilterEngine(s.filters) for s in cfg.sinks}
    failed = False
    for h in hubs:
        started = time.monotonic()
        try:
            ctx = asyncio.run(_sample(h, cfg.state_dir, max(0.0, sample)))
        except BridgeError as exc:
            print(f"hubbridge: hub {h.name}: {exc}")
            failed = True
            continue
        took = max(1e-6, time.monotonic() - started)
        per_day = 86400.0 / max(sample, took if sample <= 0 else sample)
        by_device: dict[str, list[str]] = {}
        for device_id, attribute in ctx.values:
            by_device.setdefault(device_id, []).append(attribute)
        total = sum(ctx.changes.values()) * per_day
        # Which attributes each sink's include/exclude rules let through (deadband and min_interval only thin
        # them out further, so the per-sink estimates are upper bounds).
        forwarded: dict[str, dict[str, list[str]]] = {name: {} for name in engines}
        for device_id, attrs in by_device.items():
            for name, engine in engines.items():
                ev = {
                    "hub": h.name,
                    "kind": "device",
                    "device_id": device_id,
                    "device": ctx.names.get(device_id),
                    "room": ctx.rooms.get(device_id),
                }
                forwarded[name][device_id] = sorted(a for a in attrs if engine.passes_rules({**ev, "attribute": a}))
        if not as_json:
            print(
                f"hub {h.name}: {len(by_device)} device(s); sampled {sample:g}s: about {total:,.0f} events/day in all"
            )
            for name, fwd in forwarded.items():
                n = sum(map(len, fwd.values()))
                rate = sum(ctx.changes[(d, a)] for d, attrs in fwd.items() for a in attrs) * per_day
                held = " (before its deadband/min_interval)" if engines[name].stateful else ""
                print(f"  sink {name}: {n} of {len(ctx.values)} attribute(s), about {rate:,.0f} events/day{held}")
        for device_id in sorted(by_device, key=lambda d: (ctx.names.get(d) or d).lower()):
            attrs = sorted(by_device[device_id])
            rate = sum(ctx.changes[(device_id, a)] for a in attrs) * per_day
            if as_json:
                row = {
                    "hub": h.name,
                    "device_id": device_id,
                    "device": ctx.names.get(device_id),
                    "room": ctx.rooms.get(device_id),
                    "attributes": {a: round(ctx.changes[(device_id, a)] * per_day, 1) for a in attrs},
                    "events_per_day": round(rate, 1),
                    "sinks": {name: fwd[device_id] for name, fwd in forwarded.items()},
                }
                print(json.dumps(row))
            else:
                name = ctx.names.get(device_id, "?")
                # An attribute no sink forwards is shown in brackets.
                shown = [a if any(a in fwd[device_id] for fwd in forwarded.values()) else f"[{a}]" for a in attrs]
                print(f"  {device_id:>6}  {name[:30]:<30} ~{rate:>8,.0f}/day  {', '.join(shown)}")
    return EXIT_ERROR if failed else EXIT_OK
