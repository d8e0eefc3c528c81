"""Benchmark: eventsocket -> diff -> journal -> file sink, and one diff pass over 100 000 attributes.

Run:  python bench/bench_pipeline.py [--events 50000] [--dual]

``--dual``: the hub also has POST-URL on (``webhook_secret`` + ``advertise_url``), so every event arrives twice,
once per channel, and the bridge matches the copies (and keeps the journal's durable record of recent values that
lets it match them across a restart). The POSTs lag behind the eventsocket; the figure waits for both. Keep
``--events`` at most 256 per attribute (the simulator has 15 numeric ones: 3840): the matcher remembers 256 values
per attribute, and a POST more than that behind its eventsocket copy is taken as a change (the bench counts those).

Everything runs in ONE process on one event loop: the Hubitat simulator that produces the frames, the bridge
(eventsocket reader, typing, diff, SQLite journal with synchronous=FULL, delivery loop, file sink with fsync per
batch). So the figure is a floor for the bridge alone on one core. Targets (issue "Foundation"):
>= 10 000 events/s end to end, a diff pass < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
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
{dual}sinks:
  - name: archive
    type: file
    path: {dir}/events.jsonl
"""


DUAL = """\
    webhook_secret: bench-secret
    advertise_url: http://127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def end_to_end(n_events: int, dual: bool = False) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="hubbridge-bench-") as tmp:
        async with HubitatSim(access_token="bench-token") as sim:
            cfg_path = Path(tmp) / "bench.yaml"
            port = free_port()
            text = CONFIG.format(dir=tmp, url=sim.url, dual=DUAL.format(port=port) if dual else "")
            if dual:
                text = text.replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}")
            cfg_path.write_text(text, encoding="utf-8")
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
            await _wait(lambda: delivery.lag == 0 and (not dual or sim.posted_url is not None))
            keys = [k for k, v in sim.state().items() if isinstance(v, int) and not isinstance(v, bool)]
            base_head = runtime.journal.head
            changes = [(keys[i % len(keys)][0], keys[i % len(keys)][1], 10_000_000 + i) for i in range(n_events)]
            t0, c0 = time.perf_counter(), time.process_time()
            await sim.push_burst(changes, timeout=600)
            await _wait(lambda: runtime.journal.head - base_head >= n_events and delivery.lag == 0)
            if dual:
                await sim.wait_posts_idle(timeout=600)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            await _wait(lambda: delivery.lag == 0)
            got = runtime.journal.head - base_head
            stop.set()
            await task
            lines = (Path(tmp) / "events.jsonl").read_text().count("\n")
            assert got >= n_events, f"journal got {got} of {n_events} changes"
            assert dual or got == n_events, f"journal got {got} of {n_events} changes"
            if dual:
                bad = sum(1 for _, status in sim.post_results if status != 200)
                assert not bad, f"{bad} POSTs were not answered 200"
            assert lines >= n_events, f"file has {lines} lines"
            return wall, cpu, got - n_events


async def _wait(cond: object) -> None:
    assert callable(cond)
    while not cond():
        await asyncio.sleep(0.005)


async def ingest_cost(n: int = 50_000, batch: int = 200, rounds: int = 3) -> tuple[float, float]:
    """CPU microseconds per change of Pipeline.ingest + commit, without and with ``remember`` (the recent table)."""
    from bridge.journal import Journal
    from bridge.pipeline import Pipeline

    out: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for remember in (False, True):
            with tempfile.TemporaryDirectory(prefix="hubbridge-bench-") as tmp:
                journal = Journal(Path(tmp) / "journal.sqlite3")
                await journal.open()
                committer = asyncio.create_task(journal.run())
                pipeline = await Pipeline.open(journal)
                c0 = time.process_time()
                for start in range(0, n, batch):
                    readings = [
                        Reading("device", str(i % 50), "level", i, "eventsocket", device="d")
                        for i in range(start, start + batch)
                    ]
                    await pipeline.ingest("bench", "hubitat", readings, remember=remember)
                out[remember].append((time.process_time() - c0) / n * 1e6)
                committer.cancel()
                await journal.close()
    return statistics.median(out[False]), statistics.median(out[True])


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
    parser.add_argument("--dual", action="store_true", help="POST-URL on too: every event arrives on both channels")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, pid {os.getpid()}")
    wall, cpu, unmatched = asyncio.run(end_to_end(args.events, args.dual))
    print(
        f"{'eventsocket + POST-URL' if args.dual else 'eventsocket'} -> journal (sqlite WAL, synchronous=FULL) "
        "-> file sink (fsync per batch): "
        f"{args.events} events in {wall:.2f} s = {args.events / wall:,.0f} events/s "
        f"(process CPU {cpu:.2f} s = {args.events / cpu:,.0f} events per CPU-second, simulator included)"
        + (f"; POST copies taken as changes: {unmatched}" if args.dual else "")
    )
    plain, remember = asyncio.run(ingest_cost())
    print(
        f"Pipeline.ingest + commit, 50 000 changes in batches of 200: {plain:.1f} us CPU per change, "
        f"{remember:.1f} us with the recent-values record (remember=True; median of 3)"
    )
    unchanged, changed = diff_pass()
    print(
        f"diff pass over 100 000 attributes: {unchanged * 1000:.1f} ms CPU unchanged, "
        f"{changed * 1000:.1f} ms CPU with 1% changed (median of 7)"
    )


if __name__ == "__main__":
    main()
