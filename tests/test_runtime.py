"""The supervisor's lifecycle: crashed components are replaced and shown on /healthz; SIGTERM drains and exits 0.

The crash-loop test registers a test-only sink type in ``bridge.sinks.SINKS`` (registration by type is the one
place the runtime looks sinks up) whose ``start`` fails for its first instances, the way a sink that cannot open
its destination would, and runs the real :class:`bridge.runtime.Runtime` with it. The drain test runs the real
command as a subprocess against the Hubitat simulator.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp
import pytest
import structlog

from bridge.config import load_config
from bridge.delivery import SinkStatus
from bridge.errors import JournalError, SinkError
from bridge.journal import Record
from bridge.options import BatchOptions, RetryOptions, SinkConfigBase
from bridge.runtime import Runtime, supervise
from bridge.sim.hubitat import HubitatSim
from bridge.sinks import SINKS
from bridge.sinks.base import Delivered, Outcome, Sink
from tests.helpers import sim_hub, switch, wait_until
from tests.test_cli import bridges, write_config

__all__ = ["bridges"]  # the fixture, shared with tests/test_cli.py


@pytest.fixture(autouse=True)
def _quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crashed components come back after tens of milliseconds here, not after a second or more."""
    monkeypatch.setattr("bridge.runtime.RESTART_INITIAL", 0.05)
    monkeypatch.setattr("bridge.runtime.RESTART_FLOOR", 0.01)


# ------------------------------------------------------------------------------------------------ crash loop


class FlakyConfig(SinkConfigBase):
    type: Literal["flaky"]
    # The first this many instances fail to start.
    failures: int = 3
    batch: BatchOptions = BatchOptions(max_wait=0.0)
    retry: RetryOptions = RetryOptions()


class FlakySink(Sink):
    """A sink whose first ``failures`` instances cannot open their destination (``start`` raises SinkError)."""

    type_name = "flaky"
    Config = FlakyConfig
    instances: ClassVar[list[FlakySink]] = []

    def __init__(self, config: Any) -> None:
        super().__init__(config.name)
        self.config: FlakyConfig = config
        self.started = False
        self.sent: list[Record] = []
        FlakySink.instances.append(self)

    async def start(self) -> None:
        if len(FlakySink.instances) <= self.config.failures:
            raise SinkError(f"sink {self.name}: cannot open the destination (attempt {len(FlakySink.instances)})")
        self.started = True

    async def send(self, batch: Sequence[Record]) -> Outcome:
        self.sent.extend(batch)
        return Delivered()


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[FlakySink]:
    monkeypatch.setitem(SINKS, FlakySink.type_name, FlakySink)
    monkeypatch.setattr(FlakySink, "instances", [])
    return FlakySink


async def healthz(http: aiohttp.ClientSession, runtime: Runtime) -> tuple[int, dict[str, Any]]:
    assert runtime.server is not None
    async with http.get(f"http://127.0.0.1:{runtime.server.port}/healthz") as resp:
        return resp.status, await resp.json()


async def test_crashed_sink_is_replaced_by_a_fresh_one_until_it_starts(
    tmp_path: Path, flaky: type[FlakySink], http: aiohttp.ClientSession
) -> None:
    """A sink that fails to start three times is rebuilt each time; the fourth delivers and /healthz is ok again."""
    cfg = load_config(write_config(tmp_path), env={})
    # The config model only knows the sink types registered when it was built: put the test's sink in directly.
    cfg = cfg.model_copy(update={"sinks": [FlakyConfig(name="flaky", type="flaky", failures=3)]})
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(lambda: runtime.ready.is_set() or task.done(), "the runtime is ready")
            status = runtime.sinks["flaky"].status
            await wait_until(lambda: status.state == "ok", "the fourth instance started")
            code, body = await healthz(http, runtime)
            assert code == 200 and body["status"] == "ok", body
            assert body["sinks"]["flaky"]["restarts"] == 3
            assert runtime.pipeline is not None
            (event,) = await runtime.pipeline.ingest("home", "hubitat", [switch("1", "on")])
            await wait_until(lambda: bool(flaky.instances[-1].sent), "the fourth instance delivered")
            assert [r.id for r in flaky.instances[-1].sent] == [event.id]
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    instances = flaky.instances
    assert len(instances) == 4, "one fresh sink per attempt"
    assert [i.started for i in instances] == [False, False, False, True]
    slot = runtime.sinks["flaky"]
    assert slot.delivery is not None and slot.delivery.sink is instances[-1], "the last instance is the one in use"
    failed = [e for e in logs if e["event"] == "component failed; restarting it"]
    assert len(failed) == 1, "one line for a crash loop, not one per crash"
    assert "exc_info" not in failed[0] and failed[0]["log_level"] == "error"
    assert "cannot open the destination" in failed[0]["error"]


async def test_crashing_sink_shows_degraded_while_it_keeps_crashing(
    tmp_path: Path, flaky: type[FlakySink], http: aiohttp.ClientSession
) -> None:
    """A sink that never starts stays "degraded" (503) on /healthz, its restart count going up with each crash."""
    cfg = load_config(write_config(tmp_path), env={})
    cfg = cfg.model_copy(update={"sinks": [FlakyConfig(name="flaky", type="flaky", failures=1_000_000)]})
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await wait_until(lambda: runtime.ready.is_set() or task.done(), "the runtime is ready")
        status = runtime.sinks["flaky"].status
        await wait_until(lambda: status.restarts >= 2, "the sink crashed twice")
        code, body = await healthz(http, runtime)
        assert code == 503 and body["status"] == "degraded", body
        first = body["sinks"]["flaky"]["restarts"]
        assert body["sinks"]["flaky"]["state"] == "restarting" and first >= 2
        assert "restart(s) in the last" in body["sinks"]["flaky"]["detail"]
        await wait_until(lambda: status.restarts > first + 1, "the sink crashed again")
        code, body = await healthz(http, runtime)
        assert code == 503 and body["sinks"]["flaky"]["restarts"] > first
        assert len(flaky.instances) == status.restarts or len(flaky.instances) == status.restarts + 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_error_inside_a_components_task_group_is_one_line() -> None:
    """A BridgeError that surfaces through a component's TaskGroup is one line naming it, not an ExceptionGroup."""
    status = SinkStatus()
    calls = 0

    async def fail() -> None:
        raise JournalError("cannot record delivery progress of sink s (journal.sqlite3): disk I/O error")

    async def run_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # as a delivery loop or a hub runner: its tasks run in a TaskGroup
            async with asyncio.TaskGroup() as tg:
                tg.create_task(fail())
                await asyncio.sleep(10)

    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(supervise("sink:s", run_once, status), 5)
    assert calls == 2 and status.restarts == 1
    assert "cannot record delivery progress" in status.detail and "ExceptionGroup" not in status.detail
    lines = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert len(lines) == 1, lines
    assert "exc_info" not in lines[0] and "disk I/O error" in lines[0]["error"]


# ------------------------------------------------------------------------------------------------ stop

TOKEN = "drain-test-token"
SECRET = "drain-test-secret"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_drains_what_is_journalled_and_exits_0(tmp_path: Path, bridges: Any, sig: int) -> None:
    """SIGTERM (or Ctrl-C) right after an event was accepted delivers it before the bridge exits 0."""
    async with HubitatSim(access_token=TOKEN) as sim, aiohttp.ClientSession() as http:
        hub = sim_hub(sim.url, TOKEN, app_id=sim.app_id, eventsocket=False, webhook_secret=SECRET)
        events = tmp_path / "events.jsonl"
        # The sink gathers events for half a second before it writes: a stop meanwhile must still deliver them.
        sink = {"name": "archive", "type": "file", "path": str(events), "fsync": False, "batch": {"max_wait": "500ms"}}
        b = await bridges(write_config(tmp_path, hubs=[hub], sinks=[sink]))
        port = await b.running()
        await b.wait_for(lambda: bool(b.entries("hub online")), "the hub is online")

        def written() -> list[dict[str, Any]]:
            text = events.read_text(encoding="utf-8") if events.exists() else ""
            return [json.loads(line) for line in text.splitlines()]

        await b.wait_for(lambda: bool(written()), "the start-up poll is written")
        value = "on" if sim.state()[("176", "switch")] == "off" else "off"  # a change, so an event
        body = {"content": {"name": "switch", "value": value, "displayName": "Loft Fan", "deviceId": "176"}}
        async with http.post(f"http://127.0.0.1:{port}/hubitat/home/{SECRET}", json=body) as resp:
            assert resp.status == 200, await resp.text()  # committed to the journal
        assert not [e for e in written() if e["source"] == "webhook"], "the sink had not written it yet"
        assert await b.stop(sig) == 0, b.stderr
    assert [e for e in written() if e["source"] == "webhook" and e["value"] == value], "the event was drained"
    assert "Traceback" not in b.stderr
    assert b.entries("stopped")
