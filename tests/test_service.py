"""The bridge under a service manager: systemd's notification socket is a real datagram socket here.

What an operator notices: systemd learns when the bridge is ready and what it is doing (STATUS), its watchdog is
fed while Splunk is down (a known wait: nothing to restart), and stops being fed when the pipeline is wedged (a
batch on its way that never finishes), so systemd restarts a bridge that silently stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bridge.service import Rate, Stalls
from bridge.sim.hec import HecSim
from bridge.sim.hubitat import HubitatSim
from tests.test_cli import bridges, write_config

__all__ = ["bridges"]

TOKEN = "service-test-token"
HEC_TOKEN = "service-hec-token"


def test_rate_is_events_per_minute_over_the_last_minute() -> None:
    """The STATUS line's ev/min: 30 events over 30 s is 60 ev/min; older samples fall out of the window."""
    rate = Rate(window=60.0)
    assert rate.add(0, now=0.0) == 0.0
    assert rate.add(30, now=30.0) == 60.0
    assert rate.add(30, now=200.0) < 1.0


async def test_watchdog_fed_through_an_outage_and_not_when_wedged(tmp_path: Path, bridges: Any) -> None:
    """READY and STATUS arrive; WATCHDOG=1 keeps coming while Splunk is down; it stops while a batch is stuck."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    messages: list[str] = []

    async def receive() -> None:
        loop = asyncio.get_running_loop()
        while True:
            messages.append((await loop.sock_recv(sock, 65536)).decode())

    reader = asyncio.create_task(receive())
    try:
        async with HubitatSim(access_token=TOKEN) as sim, HecSim(tokens=(HEC_TOKEN,)) as hec:
            hub = {
                "name": "home",
                "type": "hubitat",
                "url": sim.url,
                "app_id": sim.app_id,
                "access_token": TOKEN,
                "eventsocket": True,
                "poll_interval": "60s",
                "detail_spacing": "0s",
            }
            sink = {
                "name": "splunk",
                "type": "splunk_hec",
                "url": hec.url,
                "token": HEC_TOKEN,
                "gzip": False,
                "batch": {"max_wait": 0},
                "retry": {"initial": "100ms", "max": "200ms"},
            }
            cfg = write_config(tmp_path, hubs=[hub], sinks=[sink], stall_timeout="1s", shutdown_timeout="1s")
            env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}
            b = await bridges(cfg, env=env)

            def count(prefix: str, since: int = 0) -> int:
                return sum(1 for m in messages[since:] for line in m.split("\n") if line.startswith(prefix))

            await b.wait_for(lambda: count("READY=1") == 1, "READY=1")
            ready = next(m for m in messages if "READY=1" in m)
            assert "STATUS=1 hub, 1 sink, " in ready and f"MAINPID={b.pid}" in ready, ready
            assert "starting" not in ready, "READY once the hub and the sink are past starting"
            await b.wait_for(lambda: count("WATCHDOG=1") >= 3, "the watchdog is fed")
            await b.wait_for(lambda: bool(b.entries("sink ready")), "Splunk is up")

            # Splunk down: the sink retries (a known wait), the watchdog keeps being fed well past stall_timeout.
            hec.outage = True
            key = next(k for k, v in sim.state().items() if isinstance(v, int) and not isinstance(v, bool))
            sim.set_attribute(key[0], key[1], 777001)
            await b.wait_for(lambda: bool(b.entries("sink delivery failed; will retry")), "the sink retries")
            mark = len(messages)
            await b.wait_for(lambda: count("WATCHDOG=1", mark) >= 40, "fed for 2 s (2 x stall_timeout)")
            assert any("sink splunk retrying" in m for m in messages[mark:]), messages[mark:]
            hec.outage = False
            await b.wait_for(lambda: bool(b.entries("sink delivering again")), "Splunk is back")

            # Wedged: Splunk takes the next batch and never answers (within the test).
            hec.response_delay = 600.0
            sim.set_attribute(key[0], key[1], 777002)
            wedged = "the pipeline is wedged: no longer feeding systemd's watchdog, which will restart the bridge"
            await b.wait_for(lambda: bool(b.entries(wedged)), "the watchdog gives up")
            assert any("sink splunk" in w for w in b.entries(wedged)[0]["wedged"]), b.entries(wedged)
            first = next(i for i, m in enumerate(messages) if "STATUS=wedged" in m)
            await b.wait_for(lambda: count("STATUS=wedged", first) >= 5, "five more ticks pass")
            assert count("WATCHDOG=1", first) == 0, "the watchdog was fed while wedged"
            assert await b.stop(signal.SIGTERM) == 0, b.stderr
            assert count("STOPPING=1", first) == 1
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        sock.close()


def test_a_hub_poll_stuck_is_wedged_and_a_hub_backing_off_is_not() -> None:
    """An offline hub waits out its backoff (fed); a poll on its way longer than stall_timeout is wedged."""
    hub = SimpleNamespace(status=SimpleNamespace(state="offline", poll_started=None))
    rt: Any = SimpleNamespace(hubs={"home": hub}, sinks={}, journal=SimpleNamespace(commit_started=None))
    stalls = Stalls(10.0)
    assert stalls.wedged(rt, now=1000.0) == []
    hub.status.state, hub.status.poll_started = "ok", 995.0
    assert stalls.wedged(rt, now=1000.0) == []
    assert stalls.wedged(rt, now=1006.0) == ["hub home: a poll has been on its way for 11s"]
    rt.journal.commit_started = 990.0
    assert "journal: a commit has been on the disk for 16s" in stalls.wedged(rt, now=1006.0)


def test_an_idle_sink_that_gets_work_is_not_stale() -> None:
    """A sink idle for hours then given an event is not wedged at once: its stall clock starts with the work."""

    status = SimpleNamespace(state="ok", progress=0.0, in_flight=0)
    sink = SimpleNamespace(status=status, lag=0)
    rt: Any = SimpleNamespace(hubs={}, sinks={"s": sink}, journal=SimpleNamespace(commit_started=None))
    stalls = Stalls(10.0)
    assert stalls.wedged(rt, now=10_000.0) == []
    rt.sinks["s"].lag = 1
    assert stalls.wedged(rt, now=10_001.0) == [], "work arrived just now"
    assert stalls.wedged(rt, now=10_012.0) != [], "no attempt finished for 11 s"
