"""Throughput and CPU per event of the MQTT and NATS JetStream sinks, and edge -> JetStream -> central -> HEC.

    .venv/bin/python bench/bench_scale.py              # --events 20000

Needs Debian's ``mosquitto`` and ``nats-server`` (``.ci/run`` installs them); each runs as a child process on a
loopback port with its data in a temporary directory.

(a) mqtt: N events committed to a journal first (not timed), then the real delivery loop drives the MQTT sink
    (QoS 1, one PUBACK per event, up to 100 in flight) to Mosquitto until the cursor covers every event. No
    subscriber is connected (a subscriber's cost is the broker's, not the bridge's). Run twice: with Mosquitto's
    default config, whose PUBACKs wait for Nagle's algorithm, and with ``set_tcp_nodelay true``.
(b) nats: the same with the NATS sink to a single nats-server, file storage (each publish acked once stored).
(c) end to end: an edge bridge (this process: journal -> NATS sink) publishes N events to JetStream while a central
    bridge (a real ``hubbridge run`` child process: JetStream source -> journal -> splunk_hec sink) forwards them
    to the HEC simulator (its own child process). The clock runs from the first publish until the simulator has
    indexed the last event; the run counts only if every event id arrived.

CPU per event is user+system time, all threads, of each process over the timed span. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hec_child import TICK, HecChild, cpu_ticks, last_cpu

from bridge.delivery import Delivery
from bridge.events import Event, encode_event
from bridge.journal import Journal
from bridge.sinks import build_sink
from tests.brokers import Mosquitto, NatsServer, free_port

TOKEN = "bench-token"


def make_events(n: int) -> list[tuple[str, str, int]]:
    """``n`` encoded events, a mix of sensors and switches over 200 devices (about 300 bytes each)."""
    out = []
    t0 = 1_760_000_000.0
    for i in range(n):
        attr, value, unit = [
            ("temperature", round(18 + (i % 70) / 10, 1), "°C"),
            ("switch", "on" if i % 2 else "off", None),
            ("power", float(i % 3000), "W"),
        ][i % 3]
        ev = Event(
            id=f"{i:032x}",
            time=t0 + i * 0.01,
            hub=f"house-{i % 3}",
            hub_type="hubitat",
            kind="device",
            device_id=str(i % 200),
            device=f"Device {i % 200}",
            room="Living room",
            attribute=attr,
            value=value,
            previous=None,
            unit=unit,
            source="eventsocket",
            description=None,
        )
        body, size = encode_event(ev)
        out.append((ev.id, body, size))
    return out


async def journal_with(path: Path, n: int, sink: str) -> Journal:
    journal = Journal(path, synchronous="normal")
    await journal.open()
    await journal.register_sinks([sink])
    task = asyncio.create_task(journal.run())
    events = make_events(n)
    for i in range(0, n, 2000):
        await journal.append(events[i : i + 2000], [])
    journal._bench_task = task  # type: ignore[attr-defined]
    return journal


async def close_journal(journal: Journal) -> None:
    journal._bench_task.cancel()  # type: ignore[attr-defined]
    with contextlib.suppress(asyncio.CancelledError):
        await journal._bench_task  # type: ignore[attr-defined]
    await journal.close()


async def drive(config: dict[str, Any], journal: Journal, broker_pid: int) -> dict[str, float]:
    """Run the delivery loop of the sink ``config`` until the journal is delivered; figures of that span."""
    sink, options = build_sink(build_config(config))
    async with sink:
        assert (await sink.health()).ok
        delivery = Delivery(sink, journal, options)
        n = journal.head
        b0, c0, t0 = cpu_ticks(broker_pid), time.process_time(), time.monotonic()
        task = asyncio.create_task(delivery.run())
        while journal.cursor(sink.name) < n:
            await asyncio.sleep(0.002)
        t1, c1, b1 = time.monotonic(), time.process_time(), cpu_ticks(broker_pid)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "events/s": n / (t1 - t0),
        "bridge CPU µs/event": (c1 - c0) / n * 1e6,
        "broker CPU µs/event": (b1 - b0) * TICK / n * 1e6,
    }


async def bench_mqtt(tmp: Path, n: int, extra: str = "") -> dict[str, float]:
    broker = Mosquitto(tmp / f"mosquitto{len(extra)}", extra=extra)
    await broker.start()
    try:
        journal = await journal_with(tmp / f"mqtt{len(extra)}" / "journal.sqlite3", n, "bus")
        try:
            assert broker.proc is not None
            return await drive({"name": "bus", "type": "mqtt", "url": broker.url}, journal, broker.proc.pid)
        finally:
            await close_journal(journal)
    finally:
        await broker.stop()


async def bench_nats(tmp: Path, n: int) -> dict[str, float]:
    server = NatsServer(tmp / "nats-a")
    await server.start()
    try:
        journal = await journal_with(tmp / "nats" / "journal.sqlite3", n, "stream")
        try:
            assert server.proc is not None
            config = {"name": "stream", "type": "nats", "url": server.url, "stream": "HUBBRIDGE"}
            return await drive(config, journal, server.proc.pid)
        finally:
            await close_journal(journal)
    finally:
        await server.stop()


async def bench_end_to_end(tmp: Path, n: int) -> dict[str, float]:
    import aiohttp

    server = NatsServer(tmp / "nats-e2e")
    await server.start()
    hec = HecChild(TOKEN, {last_cpu()})
    port = free_port()
    central_cfg = tmp / "central.yaml"
    central_cfg.write_text(
        f"""\
state_dir: {tmp}/central
listen: 127.0.0.1:{port}
log: {{level: warning, format: json}}
journal: {{synchronous: normal}}
hubs:
  - name: edge-events
    type: nats
    url: {server.url}
    stream: HUBBRIDGE
    durable: central
    fetch: 500
sinks:
  - name: splunk
    type: splunk_hec
    url: {hec.url}
    token: {TOKEN}
    gzip: true
""",
        encoding="utf-8",
    )
    journal = await journal_with(tmp / "edge" / "journal.sqlite3", n, "stream")
    central: asyncio.subprocess.Process | None = None
    try:
        sink, options = build_sink(
            build_config({"name": "stream", "type": "nats", "url": server.url, "stream": "HUBBRIDGE"})
        )
        async with sink:
            assert (await sink.health()).ok  # creates the stream before the central bridge binds to it
            log = open(tmp / "central.log", "wb")  # noqa: SIM115, ASYNC230
            central = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(central_cfg), stdout=log, stderr=log
            )
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            body = await resp.json()
                        if body["hubs"]["edge-events"]["streams"].get("jetstream", {}).get("up"):
                            break
                    except (aiohttp.ClientError, KeyError, ValueError):
                        pass
                    await asyncio.sleep(0.05)
            while hec.count()[0] < 1:  # the central bridge's own hub_status event
                await asyncio.sleep(0.05)
            hec.clear()
            assert server.proc is not None
            hec.start_wait(n, central.pid)
            b0, e0, k0, t0 = cpu_ticks(server.proc.pid), time.process_time(), cpu_ticks(central.pid), time.monotonic()
            delivery = Delivery(sink, journal, options)
            task = asyncio.create_task(delivery.run())
            ok, at, k1, hec_cpu = await asyncio.get_running_loop().run_in_executor(None, hec.waited)
            e1, b1 = time.process_time(), cpu_ticks(server.proc.pid)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        _, unique, _ = hec.count()
        if not ok or unique != n:
            print(f"  end to end: only {unique} of {n} distinct events arrived", file=sys.stderr)
        return {
            "events/s": n / (at - t0),
            "edge CPU µs/event": (e1 - e0) / n * 1e6,
            "central CPU µs/event": (k1 - k0) * TICK / n * 1e6,
            "nats-server CPU µs/event": (b1 - b0) * TICK / n * 1e6,
            "HEC simulator CPU µs/event": hec_cpu / n * 1e6,
        }
    finally:
        if central is not None and central.returncode is None:
            central.terminate()
            await central.wait()
        hec.stop()
        await close_journal(journal)
        await server.stop()


def build_config(config: dict[str, Any]) -> Any:
    from bridge.sinks import SINKS

    return SINKS[config["type"]].Config.model_validate(config)


def show(name: str, figures: dict[str, float]) -> None:
    print(f"{name}:")
    for key, value in figures.items():
        print(f"  {key:28} {value:10.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--only", choices=["mqtt", "nats", "e2e"], default=None)
    args = parser.parse_args()
    print(f"{args.events} events, {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.only in (None, "mqtt"):
            show("MQTT sink -> Mosquitto (QoS 1), its default config", await bench_mqtt(tmp, args.events))
            figures = await bench_mqtt(tmp, args.events, "set_tcp_nodelay true\n")
            show("MQTT sink -> Mosquitto (QoS 1), set_tcp_nodelay true", figures)
        if args.only in (None, "nats"):
            show("NATS sink -> JetStream (file storage, R1)", await bench_nats(tmp, args.events))
        if args.only in (None, "e2e"):
            show("edge -> JetStream -> central -> HEC simulator", await bench_end_to_end(tmp, args.events))


if __name__ == "__main__":
    asyncio.run(main())
