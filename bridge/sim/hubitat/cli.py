"""Command line of ``python -m bridge.sim.hubitat``: a demo hub on loopback with random device activity."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bridge.sim.hubitat.simulator import HubitatSim


async def _run_cli(args: argparse.Namespace) -> None:
    sim = HubitatSim(app_id=args.app_id, access_token=args.token, seed=args.seed)
    sim.duplicate_frame_rate = args.duplicate_rate
    sim.split_frame_rate = args.split_rate
    sim.ping_interval = args.ping_interval
    await sim.start(args.host, args.port)
    try:
        base = f"{sim.url}/apps/api/{sim.app_id}"
        print(f"Hubitat simulator listening on {sim.url}")
        print(f"  Maker API:   {base}/devices/all?access_token={sim.access_token}")
        print(f"  eventsocket: ws://{args.host}:{sim.port}/eventsocket")
        print(f"  cloud relay: {sim.cloud_url}/apps/{sim.app_id}/devices/all?access_token={sim.access_token}")
        print(f"  devices:     {', '.join(sim.devices())}")
        print("Changing a few attributes every", args.interval, "s; Ctrl-C to stop.")
        await sim.random_activity(args.interval)
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.sim.hubitat", description="Run a simulated Hubitat Elevation hub on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--app-id", type=int, default=12)
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between random changes")
    parser.add_argument("--duplicate-rate", type=float, default=0.0)
    parser.add_argument("--split-rate", type=float, default=0.0)
    parser.add_argument("--ping-interval", type=float, default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_cli(args))
