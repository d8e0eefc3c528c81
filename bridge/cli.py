"""Command line: ``hubbridge run | check | demo | splunk-app | spool``.

Exit codes: 0 fine, 1 the bridge could not run (the machine is not as the config needs it: state_dir, listen port,
journal), 2 the config is invalid. Every foreseeable problem is one line on stderr saying what and how to fix it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import structlog

from bridge import __version__, spool_cli
from bridge.config import BridgeConfig, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.logs import setup_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hubbridge", description="Durable bridge from smart-home hubs to Splunk and files."
    )
    p.add_argument("--version", action="version", version=f"hubbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bridge in the foreground until SIGTERM or Ctrl-C")
    run.add_argument("-c", "--config", required=True, help="config file (YAML)")

    check = sub.add_parser("check", help="validate a config file without touching the network")
    check.add_argument("-c", "--config", required=True, help="config file (YAML)")

    demo = sub.add_parser("demo", help="run the real pipeline against built-in hub and Splunk simulators")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--dir", default=None, help="keep state and events here instead of a temporary directory")
    demo.add_argument(
        "--splunk-sample", metavar="FILE", default=None, help="write a day of sample events as HEC envelopes and exit"
    )

    app = sub.add_parser("splunk-app", help="write the Splunk app (dashboards, alerts) as hubbridge-<version>.tgz")
    app.add_argument("--out", default=".", help="directory to write it to (default: the current one)")

    spool_cli.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "run":
            return _run(args.config)
        if args.command == "demo" and args.splunk_sample:
            from bridge.splunk_sample import run_sample

            return run_sample(args.splunk_sample)
        if args.command == "demo":
            from bridge.demo import run_demo

            code: int = run_demo(duration=args.duration, directory=args.dir)
            return code
        if args.command == "splunk-app":
            from bridge.splunk_app import run_splunk_app

            return run_splunk_app(args.out)
        if args.command == "spool":
            return spool_cli.run(args)
    except ConfigError as exc:
        print(f"hubbridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BridgeError as exc:
        print(f"hubbridge: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_ERROR


def _check(path: str) -> int:
    from bridge import shard

    cfg = load_config(path)
    assignment = shard.describe(cfg.hubs, shard.resolve(cfg.shard))
    print(
        f"{path}: OK ({len(cfg.hubs)} hub(s): {', '.join(h.name for h in cfg.hubs) or '-'}; "
        f"{len(cfg.sinks)} sink(s): {', '.join(s.name for s in cfg.sinks)})"
    )
    for line in assignment:
        print(line)
    for hub in cfg.hubs:
        # A hub family may say more (the way in, what it cannot reach): Hubitat's cloud relay form does.
        for note in getattr(hub, "check_notes", list)():
            print(f"  hub {hub.name}: {note}")
    for sink in cfg.sinks:  # valid, but worth knowing (an unsigned webhook...)
        for note in getattr(sink, "check_notes", list)():
            print(f"note: {note}")
    return EXIT_OK


def _run(path: str) -> int:
    from bridge.shard import resolve

    cfg = load_config(path)
    resolve(cfg.shard)  # a bad HUBBRIDGE_SHARD is a config error (exit 2) before anything starts
    setup_logging(cfg.log.level, cfg.log.format)
    return asyncio.run(serve(cfg))


async def serve(cfg: BridgeConfig, stop: asyncio.Event | None = None) -> int:
    """Run the bridge until SIGTERM/SIGINT (or ``stop``). Returns the exit code."""
    from bridge.runtime import Runtime

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    failed: list[BaseException] = []
    try:
        await Runtime(cfg).run(stop)
    except* BridgeError as group:
        failed.extend(group.exceptions)
    for exc in failed:
        structlog.get_logger("bridge").error("bridge stopped on an error", error=str(exc))
    return EXIT_ERROR if failed else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
