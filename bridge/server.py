"""The bridge's own HTTP listener: ``/healthz`` and the routes sources mount (Hubitat POST-URL...).

It never learns what a route is for: sources declare routes (``bridge.sources.base.Route``) and the runtime mounts
them. Anyone who can reach the port can send anything, so nothing a client sends can write a traceback into the
log: malformed HTTP (negative Content-Length, huge headers, NUL in the path), broken gzip bodies and handler errors
each give one short line, rate-limited per kind of problem.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from bridge.backoff import RateLimitedLog
from bridge.errors import ListenError
from bridge.events import shorten

log = structlog.get_logger("bridge.server")

# Maker API sends one event per POST; anything this large is not from a hub.
MAX_BODY = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RequestLog:
    """What aiohttp's request handler would log with a traceback, as one rate-limited line instead."""

    def __init__(self) -> None:
        self._rate = RateLimitedLog(log, window=60.0)

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **_: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        what = type(exc).__name__ if exc is not None else "error"
        self._rate.warning(
            ("http", what),
            "rejected a malformed request",
            error=shorten(f"{what}: {exc}" if exc is not None else msg % args, 200),
        )

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def isEnabledFor(self, level: int) -> bool:
        return False


class Server:
    def __init__(self, host: str, port: int, health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.host, self.port = host, port
        self.health = health
        self._runner: web.AppRunner | None = None
        self._rate = RateLimitedLog(log, window=60.0)
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_get("/healthz", self._healthz)
        self.app = app

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Mount a source's route (before :meth:`start`)."""
        self.app.router.add_route(method, path, handler)

    async def start(self) -> None:
        # No access log: the POST-URL path carries the webhook secret. A short shutdown timeout: on stop, a POST in
        # flight gets a few seconds to commit, not a minute (set on the runner: aiohttp deprecates it on sites).
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0, logger=_RequestLog()
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ListenError(_listen_problem(self.host, self.port, exc)) from None
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        log.info("listening", address=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            # A bug in a handler: logged (once a minute at most, with its traceback), answered 500.
            if self._rate.allow(("handler", type(exc).__name__)) is not None:
                log.exception("request handler failed", path=shorten(request.path, 80))
            return web.Response(status=500, text="internal error")

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = self.health()
        return web.json_response(body, status=200 if ok else 503, dumps=lambda o: json.dumps(o, indent=1))


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the address is already in use (another hubbridge, or another program); "
            "stop it or change listen"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host} is not an address of this machine; change listen"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); change listen"
    return f"cannot listen on {where}: {exc.strerror or exc}; change listen"
