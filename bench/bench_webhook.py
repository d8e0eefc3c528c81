"""Throughput of the webhook sink against the webhook receiver simulator: requests/s, events/s, CPU per event.

    .venv/bin/python bench/bench_webhook.py            # --single 5000 --batch-events 50000 --max-events 100

Set-up: the receiver (bridge.sim.webhook.WebhookSim, checking every Standard Webhooks signature) runs in a child
process pinned to the last CPU, the bridge side in this process pinned to CPU 0, so the receiver's work is not
billed to the sink. Events are committed to a Journal first (not timed); then one Delivery loop, wired as
bridge.runtime wires it (filters included, none configured), drives WebhookSink: read from SQLite, encode, sign,
POST over kept-alive connections, classify, commit the cursor. The clock stops when the cursor covers every event;
a run counts only if the receiver accepted every event, each signature verified.

Modes: ``single`` (the default: one event per request, max_in_flight 4) and ``batch`` (batch: true, a JSON array
of max_events per request). CPU per event is this process's user+system time (the journal's thread included)
over the events delivered. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hec_child import last_cpu, pin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECRET = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc4"


def _child(conn: Connection, cpus: set[int]) -> None:
    pin(cpus)

    async def serve() -> None:
        from bridge.sim.webhook import WebhookSim

        sim = WebhookSim(secrets=[SECRET], require_signature=True, record_bodies=False)
        await sim.start()
        conn.send(sim.url)
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stats":
                bad = sum(1 for q in sim.received if q.verified is not True)
                conn.send((sim.count, sim.event_count, bad))
                sim.received.clear()
                sim.count = sim.event_count = 0
            elif cmd == "stop":
                await sim.stop()
                return

    asyncio.run(serve())


def make_events(n: int, offset: int) -> list[tuple[str, str, int]]:
    """A realistic mix over 200 devices: numeric sensors and switches (~330 B per event)."""
    from bridge.events import Event

    out = []
    for i in range(offset, offset + n):
        dev = i % 200
        numeric = dev % 3 != 0
        ev = Event(
            id=f"{i:032x}",
            time=1_764_000_000.0 + i / 10,
            hub=f"hub{dev % 3}",
            hub_type="hubitat",
            kind="device",
            device_id=str(dev),
            device=f"Device {dev}",
            room="Living room",
            attribute="temperature" if numeric else "switch",
            value=20.0 + (i % 50) / 10 if numeric else ("on" if i % 2 else "off"),
            previous=None,
            unit="°C" if numeric else None,
            source="eventsocket",
            description=None,
        )
        body = ev.to_json()
        out.append((ev.id, body, len(body.encode())))
    return out


async def run_mode(url: str, conn: Connection, mode: str, n: int, max_events: int, tmp: Path) -> dict[str, Any]:
    from bridge.delivery import Delivery
    from bridge.filters import FilterEngine
    from bridge.journal import Journal
    from bridge.sinks import build_sink
    from bridge.sinks.webhook import WebhookSinkConfig

    cfg = WebhookSinkConfig.model_validate(
        {
            "name": "relay",
            "type": "webhook",
            "url": url,
            "secret": SECRET,
            "batch": mode == "batch",
            "max_events": max_events,
            "max_wait": "0s",
        }
    )
    journal = Journal(tmp / f"{mode}.sqlite3", synchronous="normal")
    await journal.open()
    committer = asyncio.create_task(journal.run())
    await journal.register_sinks(["relay"])
    for start in range(0, n, 5000):
        await journal.append(make_events(min(5000, n - start), start), [])
    sink, options = build_sink(cfg)
    async with sink:
        delivery = Delivery(sink, journal, options, filters=FilterEngine(cfg.filters))
        cpu0, t0 = time.process_time(), time.perf_counter()
        task = asyncio.create_task(delivery.run())
        while journal.cursor("relay") < journal.head:
            await asyncio.sleep(0.002)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    committer.cancel()
    await asyncio.gather(committer, return_exceptions=True)
    await journal.close()
    conn.send("stats")
    requests, events, bad = conn.recv()
    assert events == n and bad == 0, f"receiver accepted {events}/{n} events, {bad} bad signatures"
    return {
        "mode": mode,
        "events": n,
        "requests": requests,
        "seconds": wall,
        "requests_per_s": requests / wall,
        "events_per_s": n / wall,
        "cpu_us_per_event": cpu / n * 1e6,
        "max_in_flight": options.max_in_flight,
        "events_per_request": n / requests,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--single", type=int, default=5000, help="events in single mode")
    p.add_argument("--batch-events", type=int, default=50000, help="events in batch mode")
    p.add_argument("--max-events", type=int, default=100, help="events per request in batch mode")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, {last_cpu()}), daemon=True)
    proc.start()
    pin({0})
    url = parent.recv()
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode, n in (("single", args.single), ("batch", args.batch_events)):
                results.append(asyncio.run(run_mode(url, parent, mode, n, args.max_events, Path(tmp))))
    finally:
        parent.send("stop")
        proc.join(10)
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['mode']:<6} {r['events']:>6} events in {r['requests']:>6} requests "
                f"({r['events_per_request']:.0f}/request, max_in_flight {r['max_in_flight']}): "
                f"{r['requests_per_s']:8.0f} requests/s  {r['events_per_s']:8.0f} events/s  "
                f"{r['cpu_us_per_event']:6.1f} us CPU/event (sink side)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
