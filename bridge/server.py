"""The bridge's own HTTP listener: ``/healthz`` and the routes sources mount (Hubitat POST-URL...).

It never learns what a route is for: sources declare routes (``bridge.sources.base.Route``) and the runtime mounts
them. Anyone who can reach the port can send anything, so nothing a client sends can write a traceback into the
log: malformed HTTP (negative Content-Length, huge headers, NUL in the path), broken gzip bodies and handler errors
each give one short line, rate-limited per kind of problem.
"""

from __future__ import annotations

import errno
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from bridge.backoff import RateLimitedLog
from bridge.errors import ListenError
from bridge.events import shorten

log = structlog.get_logger("bridge.server")

# Maker API sends one event per POST; anything this large is not from a hub.
MAX_BODY = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The body of every 404, the listener's and a source's alike (a wrong webhook secret): nothing to tell them apart.
NOT_FOUND = "not found"


# What a client's bytes can make go wrong in a handler: answered 400 with one line, never a traceback. A broken
# gzip or chunked body, a client gone mid-body, a body that is not the text or JSON it claims to be.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    HttpProcessingError,
    RequestPayloadError,
    ConnectionResetError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)

# Where aiohttp's messages start echoing the client's bytes (b'...', bytearray(b'...'), '...'): cut there, so no
# line carries what a client sent (a request line can carry a webhook secret, quoted so no redaction finds it).
_STATUS = re.compile(r"^\d{3}, message:\s*")
_ECHO = re.compile(r"""\s*(?::\s*)?(?:bytearray\(|b['"]|['"]|<).*""", re.DOTALL)


def describe(exc: BaseException | None, fallback: str = "error") -> str:
    """A short, single-line description of what was wrong with a request, with none of the client's bytes."""
    if exc is None:
        return fallback
    text = str(exc.message if isinstance(exc, HttpProcessingError) else exc)
    text = _STATUS.sub("", text.strip()).split("\n", 1)[0]  # "400, message:\n  what" -> "what"
    text = _ECHO.sub("", text).rstrip(" :.,")
    return shorten(text, 120) or type(exc).__name__


class _RequestLog:
    """aiohttp's request-handler logger: what it would log with a traceback becomes one rate-limited line.

    aiohttp logs a malformed request (negative Content-Length, oversized headers, NUL in the path, a broken gzip
    body...) with ``exception()``, and a request line that is not HTTP at all (TLS to a plain port, a scanner) with
    ``debug()``; both become the same short line, at most one per kind of problem per minute, with the peer.
    """

    def __init__(self, rate: RateLimitedLog) -> None:
        self._rate = rate  # shared with the route guard: one line per kind of problem, whoever notices it

    def _rejected(self, msg: str, args: tuple[Any, ...], exc_info: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        what = type(exc).__name__ if exc is not None else "error"
        fields: dict[str, Any] = {"problem": what, "error": describe(exc, fallback=shorten(msg, 80))}
        if "from %s" in msg and args:
            fields["peer"] = str(args[0])
        self._rate.warning(("http", what), "rejected a malformed request", **fields)

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **_: Any) -> None:
        self._rejected(msg, args, exc_info)

    def error(self, msg: str, *args: Any, exc_info: Any = None, **_: Any) -> None:
        self._rejected(msg, args, exc_info)

    def debug(self, msg: str = "", *args: Any, exc_info: Any = None, **_: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):  # not HTTP at all: aiohttp only says so at debug level
            self._rejected(msg, args, exc_info)

    def info(self, *args: Any, **kwargs: Any) -> None:
        pass

    def warning(self, msg: str, *args: Any, **_: Any) -> None:
        self._rate.warning(("http", "warning"), "HTTP listener warning", detail=shorten(msg, 120))

    def isEnabledFor(self, level: int) -> bool:
        return False


class Server:
    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.health = health
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self._rate = RateLimitedLog(log, window=60.0)
        # Each route is wrapped in the guard when it is mounted, not by a middleware: a middleware chain costs every
        # request more than the guard itself.
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/healthz", self._guarded(self._healthz))
        if metrics is not None:
            app.router.add_get("/metrics", self._guarded(self._metrics))
        self.app = app
        # Routes mounted after start (a hub a reload added): aiohttp's router is frozen by then, so the catch-all
        # route looks them up.
        self._late: list[tuple[str, re.Pattern[str], Handler]] = []
        self._mounted: set[tuple[str, str]] = set()

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Mount a source's route (once per method and path; a second mount of the same one is ignored)."""
        if (method, path) in self._mounted:
            return
        self._mounted.add((method, path))
        if self._runner is None:
            self.app.router.add_route(method, path, self._guarded(handler))
            return
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[A-Za-z_]+\})", path)
        )
        self._late.append((method, re.compile(f"^{pattern}$"), handler))

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            return await self._guard(request, handler)

        return guarded

    async def start(self) -> None:
        # Last, so it only answers what no route took: every unknown path, and every other method on a known one,
        # gets the very 404 a wrong webhook secret gets, so no answer tells which hub names exist.
        self.app.router.add_route("*", "/{path:.*}", self._not_found)
        # No access log: the POST-URL path carries the webhook secret. A short shutdown timeout: on stop, a POST in
        # flight gets a few seconds to commit, not a minute (set on the runner: aiohttp deprecates it on sites).
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0, logger=_RequestLog(self._rate)
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

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except CLIENT_ERRORS as exc:
            # What the client sent is broken (a gzip body that is not gzip...): its fault, one line, 400.
            self._rate.warning(
                ("http", type(exc).__name__),
                "rejected a malformed request",
                problem=type(exc).__name__,
                error=describe(exc),
                path=_route_of(request),
                peer=request.remote,
            )
            return web.Response(status=400, text="bad request")
        except Exception as exc:
            # A bug in a handler: logged (once a minute at most, with its traceback, so it can be fixed), 500.
            if self._rate.allow(("handler", type(exc).__name__)) is not None:
                log.exception("request handler failed", path=_route_of(request))
            return web.Response(status=500, text="internal error")

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        for method, pattern, handler in self._late:
            m = pattern.match(request.path)
            if m is not None and method == request.method:
                request.match_info.update(m.groupdict())
                return await self._guard(request, handler)
        return web.Response(status=404, text=NOT_FOUND)

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self.metrics is not None
        # Prometheus text format 0.0.4 (prometheus-client renders it).
        return web.Response(body=self.metrics(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = self.health()
        return web.json_response(body, status=200 if ok else 503, dumps=lambda o: json.dumps(o, indent=1))


def _route_of(request: web.Request) -> str:
    """The route a request matched, as declared (``/hubitat/home/{secret}``): its path may carry a secret."""
    info = request.match_info.route.resource
    return shorten(info.canonical if info is not None else "(no route)", 80)


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
