"""Homey source benchmark: CPU per poll of a 300-device Homey, and realtime events/s through to the file sink.

The simulated Homey runs in a child process pinned to another CPU, so its work never counts as the bridge's. The
bridge (the real Runtime, config loaded from YAML, file sink with fsync on) runs here, pinned to one CPU.

    python bench/bench_homey.py [--devices 300] [--polls 20] [--events 20000]

Figures: the bridge's CPU seconds per poll (a first poll that sees every value, polls with nothing changed and
polls with 5% of the values changed), and realtime capability events per second from the first emit to the last
line in the file, with the bridge's CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from hec_child import last_cpu, pin

from bridge.config import load_config
from bridge.runtime import Runtime


def _child(conn: Connection, devices: int, cpus: set[int]) -> None:
    pin(cpus)

    async def serve() -> None:
        from bridge.sim.homey import HomeySim, default_devices

        sim = HomeySim(devices=default_devices(devices, seed=1))
        await sim.start()
        conn.send((sim.url, sim.api_key))
        loop = asyncio.get_running_loop()
        numeric = sim.state.numeric_capabilities()
        counter = 0
        try:
            while True:
                cmd = await loop.run_in_executor(None, conn.recv)
                if cmd[0] == "change":  # a share of the numeric values changes unannounced (a poll finds them)
                    share = cmd[1]
                    for did, cap in numeric[: int(len(numeric) * share)]:
                        counter += 1
                        await sim.state.set_capability(did, cap, 10_000 + counter, push=False)
                    conn.send(True)
                elif cmd[0] == "burst":  # emit n capability events as fast as the server can
                    n = cmd[1]
                    t0, cpu0 = time.monotonic(), time.process_time()
                    # In chunks of distinct capabilities sent together: one awaited emit at a time measures the
                    # server's write latency, not how fast the bridge takes events.
                    chunk = min(200, len(numeric))
                    for start in range(0, n, chunk):
                        sends = []
                        for i in range(start, min(n, start + chunk)):
                            counter += 1
                            did, cap = numeric[i % len(numeric)]
                            sends.append(sim.state.set_capability(did, cap, 10_000 + counter))
                        await asyncio.gather(*sends)
                    conn.send((time.monotonic() - t0, time.process_time() - cpu0))
                elif cmd[0] == "subs":
                    conn.send(len(set(sim.realtime.subscriptions)))
                else:
                    break
        finally:
            await sim.stop()

    asyncio.run(serve())


class Child:
    def __init__(self, devices: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, devices, {last_cpu()}), daemon=True)
        self.proc.start()
        self.url, self.key = self.conn.recv()

    def ask(self, *cmd: Any) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send(("stop",))
        self.proc.join(5)


def _config(directory: Path, child: Child, realtime: bool) -> Any:
    cfg = {
        "state_dir": str(directory / "state"),
        "log": {"level": "warning"},
        "hubs": [
            {
                "name": "cabin",
                "type": "homey",
                "url": child.url,
                "api_key": child.key,
                "realtime": realtime,
                "poll_interval": "1h",
                "reconcile_interval": "1h",
            }
        ],
        "sinks": [{"name": "archive", "type": "file", "path": str(directory / "events.jsonl")}],
    }
    path = directory / "hubbridge.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return load_config(path, env={})


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


async def _until(cond: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.01)


async def bench_polls(child: Child, polls: int) -> None:
    import bridge.sources.runner as runner_mod

    runner_mod.MIN_RECONCILE_GAP = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        runtime = Runtime(_config(directory, child, realtime=False))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        cpu0 = time.process_time()
        await _until(lambda: "cabin" in runtime.hubs and runtime.hubs["cabin"].status.polls >= 1)
        first = time.process_time() - cpu0
        status = runtime.hubs["cabin"].status
        await _until(lambda: _lines(directory / "events.jsonl") > 0)
        events = _lines(directory / "events.jsonl")
        results = {}
        for label, share in (("nothing changed", 0.0), ("5% of values changed", 0.05)):
            spent = 0.0
            for _ in range(polls):
                if share:
                    child.ask("change", share)
                before = status.polls
                c0 = time.process_time()
                runtime.runners["cabin"].reconcile("bench")
                await _until(lambda before=before: status.polls > before)
                spent += time.process_time() - c0
            results[label] = spent / polls
        stop.set()
        await task
    print(f"first poll (every value new, {events} events incl. hub_status): {first * 1000:.1f} ms CPU")
    for label, per in results.items():
        print(f"poll, {label}: {per * 1000:.1f} ms CPU per poll (mean of {polls})")


async def bench_realtime(child: Child, n: int, devices: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        sink = directory / "events.jsonl"
        runtime = Runtime(_config(directory, child, realtime=True))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await _until(lambda: "cabin" in runtime.hubs and runtime.hubs["cabin"].status.polls >= 1)
        # Every device subscribed (plus the three managers) before the burst.
        await _until(lambda: child.ask("subs") >= devices + 3)
        await _until(lambda: _lines(sink) > 0)
        await asyncio.sleep(0.5)
        base = _lines(sink)
        loop = asyncio.get_running_loop()
        c0, t0 = time.process_time(), time.monotonic()
        burst = loop.run_in_executor(None, child.ask, "burst", n)
        await _until(lambda: _lines(sink) >= base + n, timeout=600)
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        emit_wall, emit_cpu = await burst
        stop.set()
        await task
    print(
        f"realtime: {n} capability events to the file sink in {wall:.2f} s = {n / wall:,.0f} events/s; "
        f"bridge CPU {cpu / n * 1e6:.0f} us/event ({cpu / wall * 100:.0f}% of its core); "
        f"the simulator needed {emit_wall:.2f} s ({emit_cpu:.2f} s CPU) to emit them"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    pin({0})
    child = Child(args.devices)
    try:
        print(f"simulated Homey with {args.devices} devices at {child.url}; bridge pinned to CPU 0")
        asyncio.run(bench_polls(child, args.polls))
        asyncio.run(bench_realtime(child, args.events, args.devices))
    finally:
        child.stop()


if __name__ == "__main__":
    main()
