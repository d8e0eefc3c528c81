"""Serving a simulator's aiohttp app on a real loopback (or any) socket."""

from __future__ import annotations

from typing import Any, NamedTuple

from aiohttp import web


class Served(NamedTuple):
    """A started app: its runner (``cleanup()`` stops it) and where it listens (``port`` is the bound one)."""

    runner: web.AppRunner
    host: str
    port: int


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0, **runner_options: Any) -> Served:
    """Start ``app`` on ``host``/``port`` (0 picks a free port) with ``web.AppRunner(app, **runner_options)``.

    A bind that fails (a busy port, say) cleans the runner up before the error propagates, so nothing is left set up.
    """
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return Served(runner, host, int(runner.addresses[0][1]))
