"""Command line of ``python -m bridge.sim.hec``: serve until Ctrl-C, printing one line per indexed event."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from bridge.sim.hec.protocol import DEFAULT_TOKEN
from bridge.sim.hec.simulator import HecSim


def _print_envelope(env: dict[str, Any]) -> None:
    meta = " ".join(f"{k}={env[k]}" for k in ("time", "host", "source", "sourcetype") if k in env)
    line = f"[{env.get('index')}] {meta} event={json.dumps(env.get('event'), ensure_ascii=False)}"
    if "fields" in env:
        line += f" fields={json.dumps(env['fields'], ensure_ascii=False)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    tokens: list[str] = args.token or [DEFAULT_TOKEN]
    ack_tokens: list[str] = args.ack_token or []
    sim = HecSim(
        tokens=tokens,
        ack_tokens=ack_tokens,
        default_index=args.index,
        allowed_indexes=args.allowed_index,
        max_content_length=args.max_content_length,
    )
    sim.record_bodies = False  # a long-running demo should not grow without bound
    if not args.quiet:
        sim.on_index = _print_envelope
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on some platforms
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    await sim.start(args.host, args.port)
    try:
        # Never print token values (operations rule); say how many there are.
        sys.stdout.write(
            f"HEC simulator listening on {sim.url}/services/collector/event "
            f"({len(tokens)} token(s), {len(ack_tokens)} with ack, index {args.index}); Ctrl-C to stop\n"
        )
        sys.stdout.flush()
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.sim.hec", description="Run the Splunk HEC simulator until Ctrl-C."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="8088 is Splunk's default HEC port (§1.1)")
    parser.add_argument("--token", action="append", help=f"accepted token (repeatable; default {DEFAULT_TOKEN})")
    parser.add_argument("--ack-token", action="append", help="token with indexer acknowledgement (repeatable)")
    parser.add_argument("--index", default="main", help="default index")
    parser.add_argument("--allowed-index", action="append", help="allowed index (repeatable; default: any)")
    parser.add_argument("--max-content-length", type=int, default=1_000_000)
    parser.add_argument("--quiet", action="store_true", help="do not print indexed events")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        asyncio.run(_serve(args))
    return 0
