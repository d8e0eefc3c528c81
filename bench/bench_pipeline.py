"""Benchmark: eventsocket -> diff -> journal -> file sink, and one diff pass over 100 000 attributes.

Run:  python bench/bench_pipeline.py [--events 50000]

Everything runs in ONE process on one event loop: the Hubitat simulator that produces the frames, the bridge
(eventsocket reader, typing, diff, SQLite journal with synchronous=FULL, delivery loop, file sink with fsync per
batch). So the figure is a floor for the bridge alone on one core. Targets (issue "Foundation"):
>= 10 000 events/s end to end, a diff pass < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.config import load_config
from bridge.diff import Differ, StateRow
from bridge.events import Reading
from bridge.runtime import Runtime
from bridge.sim.hubitat import HubitatSim

CONFIG = """\
state_dir: {dir}/state
listen: 127.0.0.1:0
log: {{level: warning, format: json}}
hubs:
  - name: bench
    type: hubitat
    url: {url}
    app_id: 12
    access_token: bench-token
    eventsocket: true
    poll_interval: 1h
    detail_spacing: 0s
sinks:
  - name: archive
    type: file
    path: {dir}/events.jsonl
"""


async def end_to_end(n_events: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="hubbridge-bench-") as tmp:
        async with HubitatSim(access_token="bench-token") as sim:
            cfg_path = Path(tmp) / "bench.yaml"
            cfg_path.write_text(CONFIG.format(dir=tmp, url=sim.url), encoding="utf-8")
            cfg = load_config(cfg_path)
            from bridge.logs import setup_logging

            setup_logging("warning", "json")
            runtime = Runtime(cfg)
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            await runtime.ready.wait()
            hub = runtime.hubs["bench"]
            while not (hub.status.polls >= 1 and hub.runner and hub.runner.source and hub.runner.source.stream_live):
                await asyncio.sleep(0.05)
            delivery = runtime.sinks["archive"]
            await _wait(lambda: delivery.lag == 0)
            keys = [k for k, v in sim.state().items() if isinstance(v, int) and not isinstance(v, bool)]
            base_head = runtime.journal.head
            changes = [(keys[i % len(keys)][0], keys[i % len(keys)][1], 10_000_000 + i) for i in range(n_events)]
            t0, c0 = time.perf_counter(), time.process_time()
            await sim.push_burst(changes, timeout=600)
            await _wait(lambda: runtime.journal.head - base_head >= n_events and delivery.lag == 0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            got = runtime.journal.head - base_head
            stop.set()
            await task
            lines = (Path(tmp) / "events.jsonl").read_text().count("\n")
            assert got == n_events, f"journal got {got} of {n_events} changes"
            assert lines >= n_events, f"file has {lines} lines"
            return wall, cpu


async def _wait(cond: object) -> None:
    assert callable(cond)
    while not cond():
        await asyncio.sleep(0.005)


def diff_pass(n: int = 100_000, rounds: int = 7) -> tuple[float, float]:
    """CPU seconds of one diff pass over n attributes: all unchanged, and with 1% changed."""
    rows = [StateRow(("hub", "device", str(i // 10), f"attr{i % 10}"), i * 0.5, 1) for i in range(n)]
    same = [Reading("device", str(i // 10), f"attr{i % 10}", i * 0.5, "poll", device="d") for i in range(n)]
    some = [
        Reading("device", str(i // 10), f"attr{i % 10}", i * 0.5 + (1 if i % 100 == 0 else 0), "poll", device="d")
        for i in range(n)
    ]
    unchanged, changed = [], []
    for _ in range(rounds):
        differ = Differ("bench", rows)
        c0 = time.process_time()
        events = differ.diff("hub", "hubitat", same).events
        unchanged.append(time.process_time() - c0)
        assert not events
        differ = Differ("bench", rows)
        c0 = time.process_time()
        events = differ.diff("hub", "hubitat", some).events
        changed.append(time.process_time() - c0)
        assert len(events) == n // 100
    return statistics.median(unchanged), statistics.median(changed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, pid {os.getpid()}")
    wall, cpu = asyncio.run(end_to_end(args.events))
    print(
        f"eventsocket -> journal (sqlite WAL, synchronous=FULL) -> file sink (fsync per batch): "
        f"{args.events} events in {wall:.2f} s = {args.events / wall:,.0f} events/s "
        f"(process CPU {cpu:.2f} s = {args.events / cpu:,.0f} events per CPU-second, simulator included)"
    )
    unchanged, changed = diff_pass()
    print(
        f"diff pass over 100 000 attributes: {unchanged * 1000:.1f} ms CPU unchanged, "
        f"{changed * 1000:.1f} ms CPU with 1% changed (median of 7)"
    )


if __name__ == "__main__":
    main()
