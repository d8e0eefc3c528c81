"""``python -m bridge.sim.webhook [--port N] [--secret whsec_...] [--quiet]``: a receiver until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from bridge.sim.webhook.simulator import WebhookSim


async def _serve(args: argparse.Namespace) -> None:
    sim = WebhookSim(secrets=args.secret or (), require_signature=bool(args.secret), record_bodies=False)

    def show(events: list[dict[str, Any]]) -> None:
        for ev in events:
            sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    if not args.quiet:
        sim.on_delivered = show
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await sim.start(args.host, args.port)
    print(f"webhook receiver listening on {sim.url}" + (" (signatures checked)" if args.secret else ""), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bridge.sim.webhook", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--secret", action="append", help="whsec_... secret to verify signatures with (repeatable)")
    p.add_argument("--quiet", action="store_true", help="do not print received events")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
