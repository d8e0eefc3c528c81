"""Command line: ``hubbridge run | check | demo | spool | auth homey``.

Exit codes: 0 fine, 1 the bridge could not run (the machine is not as the config needs it: state_dir, listen port,
journal), 2 the config is invalid. Every foreseeable problem is one line on stderr saying what and how to fix it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from bridge import __version__
from bridge.config import BridgeConfig, load_config
from bridge.errors import BridgeError, ConfigError, StateDirError, StateDirLocked
from bridge.journal.lock import unusable_state_dir
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

    spool = sub.add_parser("spool", help="inspect the journal")
    spool_sub = spool.add_subparsers(dest="spool_command", required=True)
    dl = spool_sub.add_parser("dead-letters", help="list events a sink could never deliver, newest first")
    dl.add_argument("-c", "--config", required=True, help="config file (YAML)")
    dl.add_argument("--sink", default=None, help="only this sink")
    dl.add_argument("--json", action="store_true", help="one JSON object per line")
    dl.add_argument("--limit", type=int, default=1000)
    drop = spool_sub.add_parser(
        "drop-sink", help="forget a removed sink's place in the journal, and with it the events it had not delivered"
    )
    drop.add_argument("-c", "--config", required=True, help="config file (YAML)")
    drop.add_argument("sink", help="the name of a sink that is no longer in the config")

    from bridge.sources.homey import login as homey_login

    homey_login.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "run":
            return _run(args.config)
        if args.command == "demo":
            from bridge.demo import run_demo

            code: int = run_demo(duration=args.duration, directory=args.dir)
            return code
        if args.command == "spool" and args.spool_command == "dead-letters":
            return _dead_letters(args.config, args.sink, args.json, args.limit)
        if args.command == "spool" and args.spool_command == "drop-sink":
            return _drop_sink(args.config, args.sink)
        if args.command == "auth" and args.auth_command == "homey":
            from bridge.sources.homey import login as homey_login

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


def _check(path: str) -> int:
    cfg = load_config(path)
    print(
        f"{path}: OK ({len(cfg.hubs)} hub(s): {', '.join(h.name for h in cfg.hubs) or '-'}; "
        f"{len(cfg.sinks)} sink(s): {', '.join(s.name for s in cfg.sinks)})"
    )
    return EXIT_OK


def _run(path: str) -> int:
    cfg = load_config(path)
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


def _journal_path(cfg: BridgeConfig, nothing: str) -> Path | None:
    """The journal's path; None (and a line saying why) when there is no journal yet."""
    state = cfg.state_dir
    db = state / "journal.sqlite3"
    try:
        if not state.exists():
            print(
                f"state_dir {state} does not exist: the bridge has not run with this config yet; {nothing}",
                file=sys.stderr,
            )
            return None
        if not state.is_dir():
            raise StateDirError(f"state_dir {state} is a file, not a directory; point state_dir at a directory")
        if not db.exists():
            print(f"no journal at {db}: the bridge has not run with this state_dir yet; {nothing}", file=sys.stderr)
            return None
    except OSError as exc:
        raise unusable_state_dir(state, exc) from None
    return db


def _dead_letters(path: str, sink: str | None, as_json: bool, limit: int) -> int:
    db = _journal_path(load_config(path), "nothing was dead-lettered")
    if db is None:
        return EXIT_OK

    async def _list() -> int:
        from bridge.journal import Journal

        journal = Journal(db, inspect=True)
        await journal.open()
        try:
            rows = await journal.dead_letters(sink, limit)
        finally:
            await journal.close()
        for row in rows:
            if as_json:
                print(
                    json.dumps(
                        {"sink": row.sink, "time": row.time, "reason": row.reason, "event": json.loads(row.body)}
                    )
                )
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.time))
                print(f"{when}  sink={row.sink}  id={row.id}  reason={row.reason}\n    {row.body}")
        if not as_json:
            print(
                f"{len(rows)} dead-lettered event(s)" + (f" for sink {sink}" if sink else "") + ", newest first",
                file=sys.stderr,
            )
        return EXIT_OK

    return asyncio.run(_list())


def _drop_sink(path: str, sink: str) -> int:
    cfg = load_config(path)
    if any(s.name == sink for s in cfg.sinks):
        print(f"hubbridge: sink {sink!r} is still in {path}; remove it from the config first", file=sys.stderr)
        return EXIT_CONFIG
    db = _journal_path(cfg, "nothing to drop")
    if db is None:
        return EXIT_OK

    async def _drop() -> int:
        from bridge.journal import Journal, StateDirLock

        lock = StateDirLock(cfg.state_dir)
        try:
            lock.acquire()
        except StateDirLocked as exc:
            raise StateDirLocked(f"{exc}: stop the bridge before dropping a sink") from None
        journal = Journal(db)
        await journal.open()
        try:
            dropped = await journal.drop_sink(sink)
        finally:
            await journal.close()
            lock.release()
        if dropped < 0:
            print(f"the journal has no place for a sink {sink!r}; nothing to drop", file=sys.stderr)
        else:
            print(f"dropped sink {sink!r}: {dropped} undelivered event(s) will not be delivered to it", file=sys.stderr)
        return EXIT_OK

    return asyncio.run(_drop())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
