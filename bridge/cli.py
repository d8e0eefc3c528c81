"""Command line: ``hubbridge run | check | demo | splunk-app | status | top | tap | devices | spool | auth``.

Exit codes: 0 fine, 1 the bridge could not run (the machine is not as the config needs it: state_dir, listen port,
journal), 2 the config is invalid. Every foreseeable problem is one line on stderr saying what and how to fix it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from bridge import __version__, shard, spool_cli
from bridge.commands import add_config, config_path, subcommand
from bridge.config import BridgeConfig, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.logs import setup_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hubbridge",
        description="Durable bridge from smart-home hubs (Hubitat, Homey) to Splunk HEC, webhooks and files.",
        epilog="Every subcommand has its own --help with examples. -c defaults to $HUBBRIDGE_CONFIG, then "
        "/etc/hubbridge/hubbridge.yaml.",
    )
    p.add_argument("--version", action="version", version=f"hubbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = subcommand(
        sub,
        "run",
        "run the bridge in the foreground until SIGTERM or Ctrl-C",
        """Run the bridge: read the hubs, journal every change, deliver it to every sink. SIGHUP re-reads the
        config and restarts only what changed; SIGTERM (or Ctrl-C) stops intake and drains within
        shutdown_timeout. Under systemd (Type=notify) it reports READY, STATUS and feeds the watchdog.""",
        [
            ("hubbridge run -c bridge.yaml", "run with this config, logs on stderr"),
            ("HUBBRIDGE_CONFIG=/srv/hb.yaml hubbridge run", "the config from the environment"),
            ("systemctl reload hubbridge", "under systemd: validate, then SIGHUP"),
        ],
    )
    add_config(run)

    check = subcommand(
        sub,
        "check",
        "validate a config file without touching the network",
        """Load and validate the config as `run` would (every key, every secret file), without touching a hub or
        a sink. Exit 0 when it is valid, 2 with one line per problem (file, line, key path) when it is not.
        --credentials DIR reads ${CREDENTIALS_DIRECTORY}/... secret files from DIR, so a production config
        that names systemd credentials can be checked by hand.""",
        [
            ("hubbridge check -c bridge.yaml", "is this config valid?"),
            (
                "sudo hubbridge check --credentials /etc/hubbridge/credentials",
                "the installed config, its ${CREDENTIALS_DIRECTORY} files read from where systemd loads them",
            ),
        ],
    )
    add_config(check)
    check.add_argument(
        "--credentials",
        metavar="DIR",
        default=None,
        help="take $CREDENTIALS_DIRECTORY to be DIR (systemd sets it only for the service)",
    )

    demo = subcommand(
        sub,
        "demo",
        "run the real pipeline against built-in hub, Splunk and webhook simulators",
        """Start a simulated Hubitat hub, a simulated Homey, a simulated Splunk HEC and a webhook receiver on
        127.0.0.1 and run the real bridge between them, printing every event as it is committed.""",
        [("hubbridge demo", "until Ctrl-C"), ("hubbridge demo --duration 30 --dir ./demo", "30 s, keep the files")],
    )
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--dir", default=None, help="keep state and events here instead of a temporary directory")
    demo.add_argument(
        "--splunk-sample", metavar="FILE", default=None, help="write a day of sample events as HEC envelopes and exit"
    )

    app = subcommand(
        sub,
        "splunk-app",
        "write the Splunk app (dashboards, alerts) as hubbridge-<version>.tgz",
        """Write the hubbridge Splunk app (sourcetypes, index macros, event types, Dashboard Studio dashboards and
        disabled alerts), versioned with this bridge, as hubbridge-<version>.tgz: install it in Splunk with Apps >
        Install app from file (docs/splunk.md).""",
        [("hubbridge splunk-app", "into the current directory"), ("hubbridge splunk-app --out /tmp", "into /tmp")],
    )
    app.add_argument("--out", default=".", help="directory to write it to (default: the current one)")

    status = subcommand(
        sub,
        "status",
        "show the running bridge's health as a table (exit code: 0 ok, 1 degraded, 3 not reachable)",
        """Read /healthz of the bridge the config describes (its listen address) and show each hub and sink
        with its state, backlog and totals. The exit code says the health, for scripts and monitoring: 0 ok,
        1 degraded, 2 invalid config, 3 the bridge is not reachable.""",
        [
            ("hubbridge status", "the installed bridge"),
            ("hubbridge status -c bridge.yaml --json", "the raw /healthz JSON"),
            ("hubbridge status --url http://127.0.0.1:8470", "a bridge at this address, no config needed"),
        ],
    )
    add_config(status)
    status.add_argument("--url", default=None, help="the bridge's base URL instead of the config's listen address")
    status.add_argument("--json", action="store_true", help="print /healthz as JSON")

    top = subcommand(
        sub,
        "top",
        "a live view of hubs, sinks, rates and backlog, refreshed in place",
        """A terminal view of the running bridge, refreshed in place every --interval seconds: each hub's state,
        streams, last event and devices; each sink's state, events per second, backlog, oldest undelivered
        event and events in flight. Ctrl-C to leave.""",
        [("hubbridge top", "the installed bridge"), ("hubbridge top -c bridge.yaml --interval 5", "slower")],
    )
    add_config(top)
    top.add_argument("--url", default=None, help="the bridge's base URL instead of the config's listen address")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    top.add_argument("--once", action="store_true", help="print one frame and exit (for scripts and bug reports)")

    tap = subcommand(
        sub,
        "tap",
        "print events as they are committed to the journal, with a filter",
        """Follow the journal (read-only, beside the running bridge) and print every event committed from now
        on, like the demo does. Filters combine: --hub, --device (id or name), --attribute, --kind. --last N
        starts N events back.""",
        [
            ("hubbridge tap", "everything, as it happens"),
            ("hubbridge tap --device 'Kitchen Motion' --attribute motion", "one device's motion"),
            ("hubbridge tap --hub home --json --last 100", "JSON lines, the last 100 first"),
        ],
    )
    add_config(tap)
    tap.add_argument("--hub", default=None, help="only this hub")
    tap.add_argument("--device", default=None, help="only this device (its id or its name)")
    tap.add_argument("--attribute", default=None, help="only this attribute")
    tap.add_argument("--kind", default=None, help="only this kind (device, location, hub, bridge)")
    tap.add_argument("--last", type=int, default=0, help="start this many events back (default: from now)")
    tap.add_argument("--json", action="store_true", help="print each event as its JSON line")
    tap.add_argument("--count", type=int, default=None, help="stop after this many events")

    devices = subcommand(
        sub,
        "devices",
        "a dry run: the devices and attributes each hub would forward, with an events-per-day estimate",
        """Poll each hub once (read-only, nothing is journalled or delivered), list its devices and their
        attributes, then listen to its push streams for --sample seconds and estimate events per day per
        device from what changed.""",
        [
            ("hubbridge devices -c bridge.yaml", "every hub, a 30 s sample"),
            ("hubbridge devices -c bridge.yaml --hub home --sample 120", "one hub, a longer sample"),
        ],
    )
    add_config(devices)
    devices.add_argument("--hub", default=None, help="only this hub")
    devices.add_argument("--sample", type=float, default=30.0, help="seconds to listen for changes (default 30)")
    devices.add_argument("--json", action="store_true", help="one JSON object per device")

    spool_cli.add_parser(sub)

    from bridge.sources.homey import login as homey_login

    homey_login.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = config_path(getattr(args, "config", None))
    try:
        if args.command == "check":
            return _check(config, args.credentials)
        if args.command == "run":
            return _run(config)
        if args.command == "demo" and args.splunk_sample:
            from bridge.splunk_sample import run_sample

            return run_sample(args.splunk_sample)
        if args.command == "splunk-app":
            from bridge.splunk_app import run_splunk_app

            return run_splunk_app(args.out)
        if args.command == "demo":
            from bridge.demo import run_demo

            code: int = run_demo(duration=args.duration, directory=args.dir)
            return code
        if args.command == "status":
            from bridge.commands.status import status

            return status(config, args.url, args.json)
        if args.command == "top":
            from bridge.commands.top import top

            return top(config, args.url, args.interval, args.once)
        if args.command == "tap":
            from bridge.commands.tap import Filter, tap

            wanted = Filter(args.hub, args.device, args.attribute, args.kind)
            return tap(config, wanted, last=args.last, as_json=args.json, count=args.count)
        if args.command == "devices":
            from bridge.commands.devices import devices

            return devices(config, args.hub, args.sample, args.json)
        if args.command == "spool":
            args.config = config
            return spool_cli.run(args)
        if args.command == "auth" and args.auth_command == "homey":
            from bridge.sources.homey import login as homey_login

            args.config = config
            return homey_login.run(args)
    except ConfigError as exc:
        print(f"hubbridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BridgeError as exc:
        print(f"hubbridge: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_ERROR


def _check(path: str, credentials: str | None = None) -> int:
    env = None
    if credentials is not None:
        if not Path(credentials).is_dir():
            raise ConfigError(path, [f"--credentials {credentials}: not a directory (give where the token files are)"])
        env = {**os.environ, "CREDENTIALS_DIRECTORY": str(Path(credentials).resolve())}
    cfg = load_config(path, env=env)
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
    cfg = load_config(path)
    shard.resolve(cfg.shard)  # a bad HUBBRIDGE_SHARD is a config error (exit 2) before anything starts
    setup_logging(cfg.log.level, cfg.log.format)
    return asyncio.run(serve(cfg))


async def serve(cfg: BridgeConfig, stop: asyncio.Event | None = None) -> int:
    """Run the bridge until SIGTERM/SIGINT (or ``stop``). Returns the exit code."""
    from bridge.runtime import Runtime

    stop = stop or asyncio.Event()
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, reload.set)
    failed: list[BaseException] = []
    try:
        runtime = Runtime(cfg, reload=reload)
        from bridge.service import attach

        attach(runtime)
        await runtime.run(stop)
    except* BridgeError as group:
        failed.extend(group.exceptions)
    for exc in failed:
        structlog.get_logger("bridge").error("bridge stopped on an error", error=str(exc))
    return EXIT_ERROR if failed else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
