"""Throughput of the splunk_hec sink against hass-splunk, side by side, against the HEC simulator.

    .venv/bin/pip install -e '.[bench]'        # hass-splunk, the HEC client Home Assistant uses
    .venv/bin/python bench/bench_hec.py        # --events 200000 --batch 500 --rounds 3

Set-up, the same for both clients:

* The simulator (bridge.sim.hec.HecSim) runs in a child process pinned to CPU 1, the client in this process
  pinned to CPU 0, so "one core" is one core and the server's work is not billed to the client. The child
  runs with the cyclic GC off: HecSim keeps every envelope it indexed, and a GC walking hundreds of
  thousands of dicts again and again would make the server slow down the more it holds.
* The same number of events, the same batch size (events per request), the same envelope content.
* The clock stops when the simulator has indexed the last event (it reports the moment itself; the two
  processes share CLOCK_MONOTONIC). A run counts only if every event was indexed exactly once.

(a) ours: the real path. Events are committed to a Journal first (not timed), then one Delivery loop, wired
    as bridge.runtime wires it, drives SplunkHecSink with gzip on: read from SQLite, build envelopes, gzip,
    POST, classify, commit the cursor per batch. Also shown: when the cursor had covered every event (the
    delivery loop settles its last in-flight batch on a poll of up to one second when no new events come).
(b) hass-splunk: the same Event objects become the same envelope dicts (time, host, source, sourcetype,
    index, fields, event), queued with ``queue(payload, send=False)`` a batch at a time, then ``send()``
    posts them as one request. hass-splunk has no gzip and keeps nothing durable, so it does less work.

Prints events/s for both, the ratio, and client CPU per event. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hec_child import HecChild, pin

TOKEN = "bench-token"
BENCH_FIELDS = ("hub", "hub_type", "kind", "device_id", "attribute")


# ---------------------------------------------------------------------- events


def make_events(n: int, offset: int = 0) -> list[Any]:
    """A realistic mix: numeric sensors, switches and contacts over 200 devices in 3 hubs (~330 B each)."""
    from bridge.events import Event

    attrs: list[tuple[str, Any, str | None]] = [
        ("temperature", lambda i: round(18 + (i % 70) / 10, 1), "°C"),
        ("power", lambda i: float(i % 3000), "W"),
        ("switch", lambda i: "on" if i % 2 else "off", None),
        ("contact", lambda i: "open" if i % 3 else "closed", None),
        ("humidity", lambda i: 40 + i % 30, "%"),
    ]
    out = []
    t0 = 1_760_000_000.0
    for k in range(offset, offset + n):
        dev = k % 200
        name, fn, unit = attrs[k % len(attrs)]
        out.append(
            Event(
                id=f"{k:032x}",
                time=t0 + k * 0.001,
                hub=("house", "cabin", "garage")[dev % 3],
                hub_type="hubitat",
                kind="device",
                device_id=str(dev),
                device=f"Device {dev}",
                room=("Kitchen", "Hall", "Bedroom", "Garage")[dev % 4],
                attribute=name,
                value=fn(k),
                previous=fn(k - 1),
                unit=unit,
                source="eventsocket",
                description=None,
            )
        )
    return out


# ---------------------------------------------------------------------- (a) ours


async def run_ours(sim: HecChild, events: list[Any], batch: int, state_dir: Path) -> tuple[float, float, float]:
    """(seconds until indexed, seconds until the cursor covered all, client CPU seconds)."""
    from bridge.delivery import Delivery
    from bridge.journal import Encoded, Journal
    from bridge.sinks import build_sink
    from bridge.sinks.splunk_hec import SplunkHecSinkConfig

    journal = Journal(state_dir / "journal.db")  # product defaults: synchronous=full
    await journal.open()
    committer = asyncio.create_task(journal.run())
    await journal.register_sinks(["splunk"])
    for i in range(0, len(events), 5000):
        # As the pipeline hands events to the journal: encoded, with their size in bytes.
        chunk: list[Encoded] = [(e.id, b, len(b.encode())) for e in events[i : i + 5000] for b in [e.to_json()]]
        await journal.append(chunk, [])
    config = SplunkHecSinkConfig.model_validate(
        {
            "name": "splunk",
            "type": "splunk_hec",
            "url": sim.url,
            "token": TOKEN,
            "index": "smarthome",
            "gzip": True,
            "batch": {"max_events": batch, "max_bytes": "50MiB", "max_wait": "0s"},
        }
    )
    sink, opts = build_sink(config)
    await sink.start()
    # Exactly as bridge.runtime wires a sink to its loop.
    delivery = Delivery(sink, journal, opts)
    head = journal.head
    sim.start_wait(len(events))
    gc.collect()
    cpu0, t0 = time.process_time(), time.monotonic()
    task = asyncio.create_task(delivery.run())
    while journal.cursor("splunk") < head:
        await asyncio.sleep(0.002)
    settled, cpu = time.monotonic() - t0, time.process_time() - cpu0
    _, indexed_at, _, _ = sim.waited()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sink.close()
    committer.cancel()
    await asyncio.gather(committer, return_exceptions=True)
    await journal.close()
    return indexed_at - t0, settled, cpu


# ---------------------------------------------------------------------- (b) hass-splunk


async def run_hass(sim: HecChild, events: list[Any], batch: int) -> tuple[float, float]:
    """(seconds until indexed, client CPU seconds)."""
    import aiohttp
    from hass_splunk import hass_splunk

    async with aiohttp.ClientSession() as session:
        client = hass_splunk(session=session, token=TOKEN, host="127.0.0.1", port=sim.port, use_ssl=False)
        sim.start_wait(len(events))
        gc.collect()
        cpu0, t0 = time.process_time(), time.monotonic()
        for i in range(0, len(events), batch):
            for ev in events[i : i + batch]:
                # The envelope our sink sends; hass-splunk json.dumps it in queue().
                payload = {
                    "time": ev.time,
                    "host": ev.hub,
                    "source": f"hubbridge:{ev.hub}",
                    "sourcetype": "hubbridge:event",
                    "index": "smarthome",
                    "fields": {f: getattr(ev, f) for f in BENCH_FIELDS if getattr(ev, f) is not None},
                    "event": ev.to_dict(),
                }
                await client.queue(payload, send=False)
            await client.send()
        cpu = time.process_time() - cpu0
        _, indexed_at, _, _ = sim.waited()
        return indexed_at - t0, cpu


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="splunk_hec sink vs hass-splunk against HecSim")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="events per request, for both clients")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each; the median counts")
    args = parser.parse_args(argv)
    n = args.events

    sim = HecChild(TOKEN, {1})
    pin({0})
    ours: list[float] = []
    ours_settled: list[float] = []
    hass: list[float] = []
    ours_cpu: list[float] = []
    hass_cpu: list[float] = []
    try:
        # A warm-up round, not counted: the first runs pay for imports and for the simulator's memory growth to
        # hold n envelopes (it keeps them all), which would otherwise count against whichever client runs first.
        warm = make_events(n, offset=10**9)
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run_ours(sim, warm, args.batch, Path(tmp)))
        sim.clear()
        asyncio.run(run_hass(sim, warm, args.batch))
        sim.clear()
        del warm
        for rnd in range(args.rounds):
            events = make_events(n, offset=rnd * n)
            for who in ("ours", "hass-splunk"):
                sim.clear()
                if who == "ours":
                    with tempfile.TemporaryDirectory() as tmp:
                        elapsed, settled, cpu = asyncio.run(run_ours(sim, events, args.batch, Path(tmp)))
                    ours.append(n / elapsed)
                    ours_settled.append(n / settled)
                    ours_cpu.append(cpu)
                    extra = f", cursor done after {settled:.2f} s"
                else:
                    elapsed, cpu = asyncio.run(run_hass(sim, events, args.batch))
                    hass.append(n / elapsed)
                    hass_cpu.append(cpu)
                    extra = ""
                indexed, unique, posts = sim.count()
                ok = indexed == unique == n
                print(
                    f"round {rnd + 1} {who:<12} {n / elapsed:>9,.0f} events/s  ({elapsed:.2f} s to index all, "
                    f"{cpu:.2f} s client CPU, {posts} requests{extra}, "
                    f"{'every event indexed once' if ok else f'INDEXED {indexed}, UNIQUE {unique}'})",
                    flush=True,
                )
                if not ok:
                    return 1
    finally:
        sim.stop()

    o, h = statistics.median(ours), statistics.median(hass)
    print()
    print(f"{n} events per run, {args.batch} events per request for both, gzip on for ours; median of {args.rounds}")
    print(
        f"ours (splunk_hec sink, Journal + Delivery): {o:>9,.0f} events/s   client CPU "
        f"{statistics.median(ours_cpu) / n * 1e6:.1f} us/event   (cursor settled: "
        f"{statistics.median(ours_settled):,.0f} events/s)"
    )
    print(
        f"hass-splunk (Home Assistant's client):      {h:>9,.0f} events/s   client CPU "
        f"{statistics.median(hass_cpu) / n * 1e6:.1f} us/event"
    )
    print(f"ratio ours / hass-splunk: {o / h:.2f}x   (targets: ours >= 20,000 events/s and >= 2x hass-splunk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
