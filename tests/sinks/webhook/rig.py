"""What the webhook tests share: a journal, the receiver simulator, one webhook sink and its delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.delivery import Delivery
from bridge.filters import FilterEngine
from bridge.journal import Encoded, Journal
from bridge.sim.webhook import WebhookSim
from bridge.sinks import build_sink
from bridge.sinks.webhook import WebhookSink, WebhookSinkConfig
from tests.helpers import running_journal, wait_until

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_dGhlIG9sZCBzZWNyZXQgb2YgdGhlIGhvb2s="
GUARD = 15.0

_n = 0


def event(**kw: Any) -> dict[str, Any]:
    """One contract event (docs/events.md); every call a new id."""
    global _n
    _n += 1
    ev: dict[str, Any] = {
        "id": f"{_n:032x}",
        "time": 1_760_000_000.0 + _n,
        "hub": "house",
        "hub_type": "hubitat",
        "kind": "device",
        "device_id": str(100 + _n % 5),
        "device": "Kitchen sensor",
        "room": "Kitchen",
        "attribute": "temperature",
        "value": 20.0 + _n % 10,
        "previous": None,
        "unit": "°C",
        "source": "eventsocket",
        "description": None,
    }
    ev.update(kw)
    return ev


def encoded(events: Sequence[dict[str, Any]]) -> list[Encoded]:
    out: list[Encoded] = []
    for ev in events:
        body = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
        out.append((ev["id"], body, len(body.encode())))
    return out


def config(url: str, **kw: Any) -> WebhookSinkConfig:
    data: dict[str, Any] = {
        "name": "relay",
        "type": "webhook",
        "url": url,
        "secret": SECRET,
        "retry": {"initial": "10ms", "max": "100ms"},
        "timeout": "5s",
    }
    data.update(kw)
    return WebhookSinkConfig.model_validate(data)


@dataclass
class Rig:
    sim: WebhookSim
    journal: Journal
    sink: WebhookSink
    delivery: Delivery

    async def send(self, events: Sequence[dict[str, Any]]) -> None:
        await self.journal.append(encoded(events), [])

    @property
    def cursor(self) -> int:
        return self.journal.cursor(self.sink.name)

    async def settled(self) -> None:
        await wait_until(lambda: self.cursor == self.journal.head, "the cursor reached the head", GUARD)

    async def dead(self) -> list[Any]:
        return sorted(await self.journal.dead_letters(self.sink.name), key=lambda d: d.seq)


@contextlib.asynccontextmanager
async def rig(tmp: Path, sim: WebhookSim | None = None, clock: Any = None, **kw: Any) -> AsyncIterator[Rig]:
    """A running delivery loop to ``sim`` (a plain 200 receiver unless given), with the sink config ``kw``."""
    own = sim is None
    sim = sim or WebhookSim(secrets=[SECRET])
    if own:
        await sim.start()
    cfg = config(kw.pop("url", sim.url), **kw)
    sink, options = build_sink(cfg)
    assert isinstance(sink, WebhookSink)
    try:
        async with running_journal(tmp / "state" / "journal.sqlite3", synchronous="normal") as journal:
            await journal.register_sinks([cfg.name])
            filters = FilterEngine(cfg.filters, clock) if clock else FilterEngine(cfg.filters)
            async with sink:
                delivery = Delivery(sink, journal, options, filters=filters)
                task = asyncio.create_task(delivery.run())
                try:
                    yield Rig(sim, journal, sink, delivery)
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    finally:
        if own:
            await sim.stop()
