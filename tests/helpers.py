"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bridge.delivery import Delivery
from bridge.events import Event, Reading
from bridge.journal import Journal, Record
from bridge.pipeline import Pipeline
from bridge.runtime import Runtime
from bridge.sinks.base import Sink

# DESIGN section 3, in order. Written out here (not imported from bridge.events) so that a change to the
# contract fails the tests that check it.
CONTRACT_FIELDS = [
    "id",
    "time",
    "hub",
    "hub_type",
    "kind",
    "device_id",
    "device",
    "room",
    "attribute",
    "value",
    "previous",
    "unit",
    "source",
    "description",
]


@contextlib.asynccontextmanager
async def running_journal(path: Path, **kwargs: Any) -> AsyncIterator[Journal]:
    """An open journal with its committer task running; closed on exit."""
    journal = Journal(path, **kwargs)
    await journal.open()
    task = asyncio.create_task(journal.run())
    try:
        yield journal
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.close()


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``cond`` until it holds; fail (never hang) after ``timeout`` seconds.

    Polling on purpose: cursors and sink states live inside the code under test, with no event to wait on.
    """
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


# ------------------------------------------------------------------------------------------------ readings

BIG = 1 << 30


def temp(device: str, value: Any, **kw: Any) -> Reading:
    """A temperature reading of sensor ``device`` as a poll sees it."""
    return Reading(
        "device", device, "temperature", value, "poll", device=f"Sensor {device}", room="Hall", unit="°C", **kw
    )


def switch(device: str, value: Any, source: Any = "poll", **kw: Any) -> Reading:
    """A switch reading of lamp ``device``."""
    return Reading("device", device, "switch", value, source, device=f"Lamp {device}", **kw)


def button(value: Any, description: str | None = None) -> Reading:
    """A button press (momentary: the same value twice is two presses)."""
    return Reading("device", "9", "pushed", value, "eventsocket", description=description, momentary=True)


async def all_records(journal: Journal) -> list[Record]:
    """Every event the journal holds, oldest first."""
    return await journal.read(0, 1_000_000, BIG)


# ------------------------------------------------------------------------------------------------ delivery

_counter = 0


def readings(n: int) -> list[Reading]:
    """``n`` distinct changes (each a new value of some temperature or dimmer level)."""
    global _counter
    out = []
    for _ in range(n):
        _counter += 1
        c = _counter
        if c % 2:
            out.append(Reading("device", str(c % 7), "temperature", 15 + c / 10, "poll", device="T", unit="°C"))
        else:
            out.append(Reading("device", str(c % 5), "level", c, "eventsocket", device="Dimmer", room="Hall"))
    return out


async def ingest(pipeline: Pipeline, n: int) -> list[Event]:
    """Journal ``n`` changes and return them."""
    events = await pipeline.ingest("home", "hubitat", readings(n))
    assert len(events) == n
    return events


@contextlib.asynccontextmanager
async def delivering(sink: Sink, journal: Journal, **kwargs: Any) -> AsyncIterator[Delivery]:
    """A delivery loop for ``sink`` with short retry caps; fails the test if the loop crashed."""
    options: dict[str, Any] = {"max_wait": 0.0, "retry_initial": 0.01, "retry_max": 0.05, "send_timeout": 5.0}
    options.update(kwargs)
    delivery = Delivery(sink, journal, **options)
    task = asyncio.create_task(delivery.run())
    try:
        yield delivery
    finally:
        crashed = task.done() and not task.cancelled() and task.exception() is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not crashed, f"the delivery loop crashed: {task.exception()!r}"


async def caught_up(journal: Journal, name: str) -> None:
    """Wait until sink ``name`` settled everything journalled."""
    await wait_until(lambda: journal.cursor(name) == journal.head, f"sink {name} delivered everything")


async def deliver_all(sink: Sink, journal: Journal, **kwargs: Any) -> None:
    """Start ``sink``, run its delivery loop until everything journalled is delivered, close it."""
    await sink.start()
    try:
        async with delivering(sink, journal, **kwargs):
            await caught_up(journal, sink.name)
    finally:
        await sink.close()


def kitchen_temperature(id: str, time: float, device_id: str, value: Any, previous: Any) -> dict[str, Any]:
    """A contract event (DESIGN 3, fields in order): a temperature of the Kitchen sensor on hub "house"."""
    return {
        "id": id,
        "time": time,
        "hub": "house",
        "hub_type": "hubitat",
        "kind": "device",
        "device_id": device_id,
        "device": "Kitchen sensor",
        "room": "Kitchen",
        "attribute": "temperature",
        "value": value,
        "previous": previous,
        "unit": "°C",
        "source": "eventsocket",
        "description": None,
    }


def sim_hub(url: str, token: str, **keys: Any) -> dict[str, Any]:
    """Config of hub "home" on a simulator at ``url`` (app 12, eventsocket, 60 s polls, no detail spacing).

    ``keys`` add keys or override these.
    """
    hub: dict[str, Any] = {
        "name": "home",
        "type": "hubitat",
        "url": url,
        "app_id": 12,
        "access_token": token,
        "eventsocket": True,
        "poll_interval": "60s",
        "detail_spacing": "0s",
    }
    return {**hub, **keys}


@contextlib.asynccontextmanager
async def running(runtime: Runtime, what: str = "the runtime is ready") -> AsyncIterator[Runtime]:
    """``runtime.run`` in a task for the block, which starts once it is ready (or ended); stopped after (15 s)."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await wait_until(lambda: runtime.ready.is_set() or task.done(), what)
        yield runtime
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def matches(ev: dict[str, Any], **want: Any) -> bool:
    return all(ev.get(k) == v for k, v in want.items())


class BridgeUnderTest:
    """The real bridge (a Runtime loaded from YAML in ``directory``) with one hub and a file sink there.

    Each hub family's tests subclass it with their hub's config; this holds what they all do: write and load the
    config, run the runtime until it is ready, keep the committed events, read what the file sink wrote.
    """

    hub_name = "hub"

    def __init__(
        self, directory: Path, hub: dict[str, Any], *, listen: str = "127.0.0.1:0", top: dict[str, Any] | None = None
    ) -> None:
        import yaml

        from bridge.config import load_config

        self.dir = directory
        self.sink_path = directory / "events.jsonl"
        hub = {k: v for k, v in hub.items() if v is not None}  # None: leave the key out
        config = {
            "state_dir": str(directory / "state"),
            "listen": listen,
            "hubs": [hub],
            "sinks": [
                {
                    "name": "archive",
                    "type": "file",
                    "path": str(self.sink_path),
                    "fsync": False,
                    "batch": {"max_wait": "20ms"},
                }
            ],
            **(top or {}),
        }
        self.config_path = directory / "hubbridge.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.cfg = load_config(self.config_path, env={})
        self.events: list[dict[str, Any]] = []
        self.runtime = Runtime(self.cfg, on_events=self._on_events)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _on_events(self, events: list[Event]) -> None:
        self.events.extend(ev.to_dict() for ev in events)

    async def start(self, timeout: float = 15.0) -> Any:
        self._task = asyncio.create_task(self.runtime.run(self._stop), name="bridge-under-test")
        ready = asyncio.create_task(self.runtime.ready.wait())
        async with asyncio.timeout(timeout):
            await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            ready.cancel()
            self._task.result()  # raises what went wrong
            raise AssertionError("the runtime returned before it was ready")
        return self

    async def stop(self, timeout: float = 25.0) -> None:
        if self._task is None:
            return
        self._stop.set()
        async with asyncio.timeout(timeout):
            await self._task
        self._task = None

    def find(self, **want: Any) -> list[dict[str, Any]]:
        return [ev for ev in self.events if matches(ev, **want)]

    def written(self) -> list[dict[str, Any]]:
        import json

        if not self.sink_path.exists():
            return []
        # Only complete lines: the sink may be in the middle of writing a batch.
        lines = self.sink_path.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in lines if line]

    def reconcile(self) -> None:
        self.runtime.runners[self.hub_name].reconcile("test")
