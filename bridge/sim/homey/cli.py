"""Command line of ``python -m bridge.sim.homey``: a Homey on loopback with random activity."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bridge.sim.homey.simulator import HomeySim
from bridge.sim.homey.state import default_devices


async def _run_cli(args: argparse.Namespace) -> None:
    sim = HomeySim(devices=default_devices(args.devices, args.seed), seed=args.seed)
    await sim.start(args.host, args.port)
    try:
        print(f"Homey simulator listening on {sim.url} (Homey id {sim.homey_id})")
        print(f"  API key (all scopes): {sim.api_key}")
        print(f"  devices: {len(sim.state.devices)}; Socket.IO at {sim.url}/socket.io/")
        print("Changing a value every", args.interval, "s; Ctrl-C to stop.", flush=True)
        await sim.random_activity(args.interval)
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.sim.homey", description="Run a simulated Homey.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between random changes")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_cli(args))
