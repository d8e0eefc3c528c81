"""How hard the bridge leans on a hub in a 500 storm, with the production defaults (no shortened floors).

    .venv/bin/python bench/bench_storm.py              # --seconds 60 --rounds 3

A real Runtime polls the Hubitat simulator (LAN, eventsocket off, health on at its 30 s floor); once it settled,
the simulator answers HTTP 500 to everything (``storm``) for ``--seconds``, then recovers. Prints, per round, the
requests the hub got during the storm (all paths, and device polls alone), the longest and shortest gap between
two device polls, when the ``kind: hub`` ``degraded`` event came, and how long after the storm ``online`` came.
Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bridge.config import load_config
from bridge.events import Event
from bridge.logs import setup_logging
from bridge.runtime import Runtime
from bridge.sim.hubitat import HubitatSim


class TimedSim(HubitatSim):
    """The simulator, remembering when each request came."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[tuple[float, str]] = []

    def note(self) -> None:
        while len(self.arrivals) < len(self.requests):
            self.arrivals.append((time.monotonic(), self.requests[len(self.arrivals)][1]))


async def one_round(seconds: float, directory: Path) -> dict[str, Any]:
    sim = TimedSim()
    await sim.start()
    config = {
        "state_dir": str(directory / "state"),
        "listen": "127.0.0.1:0",
        "log": {"level": "error"},
        "hubs": [
            {
                "name": "house",
                "type": "hubitat",
                "url": sim.url,
                "app_id": sim.app_id,
                "access_token": sim.access_token,
                "eventsocket": False,
                "poll_interval": "10s",  # the floor: the busiest a polling-only hub gets
                "health": True,
                "health_interval": "30s",
            }
        ],
        "sinks": [{"name": "archive", "type": "file", "path": str(directory / "events.jsonl"), "fsync": False}],
    }
    path = directory / "hubbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    events: list[Event] = []
    runtime = Runtime(load_config(path, env={}), on_events=events.extend)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    marks: dict[str, float] = {}

    async def watch() -> None:
        while True:
            sim.note()
            for ev in events:
                if ev.kind == "hub" and ev.attribute == "hub_status":
                    marks.setdefault(str(ev.value), time.monotonic())
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        await runtime.ready.wait()
        await asyncio.sleep(3.0)
        begin = time.monotonic()
        sim.storm = True
        await asyncio.sleep(seconds)
        sim.storm = False
        end = time.monotonic()
        while "online" not in marks and time.monotonic() - end < 600:
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        stop.set()
        await task
        await sim.stop()
    during = [(t, p) for t, p in sim.arrivals if begin <= t < end]
    polls = [t for t, p in during if p.endswith("/devices/all")]
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    return {
        "requests": len(during),
        "polls": len(polls),
        "storm_answers": sim.storm_answers,
        "min_gap": min(gaps) if gaps else None,
        "max_gap": max(gaps) if gaps else None,
        "degraded_after": marks.get("degraded", float("nan")) - begin,
        "online_after_storm": marks.get("online", float("nan")) - end,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_logging("error", "console")  # the storm's warnings are the point of the storm, not of this report
    results = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            r = await one_round(args.seconds, Path(tmp))
        results.append(r)
        print(
            f"round {n + 1}: {r['requests']} requests in a {args.seconds:g} s storm ({r['polls']} device polls, "
            f"gaps {r['min_gap']:.1f}-{r['max_gap']:.1f} s); degraded {r['degraded_after']:.1f} s in, "
            f"online {r['online_after_storm']:.1f} s after it ended"
        )
    per_min = statistics.median(r["requests"] for r in results) * 60 / args.seconds
    print(f"median: {per_min:.1f} requests a minute during the storm (poll_interval 10s, health_interval 30s)")


if __name__ == "__main__":
    asyncio.run(main())
