"""The bridge's own HTTP listener: ``/healthz`` and inbound hub webhooks (Hubitat POST-URL)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from bridge.sources.hubitat import HubitatSource

log = structlog.get_logger("bridge.server")

# Maker API sends one event per POST; anything this large is not from a hub.
MAX_BODY = 256 * 1024


class Server:
    def __init__(self, host: str, port: int, health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.host, self.port = host, port
        self.health = health
        self.hubitat: dict[str, HubitatSource] = {}
        self._runner: web.AppRunner | None = None
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/hubitat/{hub}/{secret}", self._hubitat_post)
        self.app = app

    async def start(self) -> None:
        # No access log: the POST-URL path carries the webhook secret. A short shutdown timeout: on stop, a POST
        # in flight gets a few seconds to commit, not a minute (set on the runner: aiohttp deprecates it on sites).
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        log.info("listening", address=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = self.health()
        return web.json_response(body, status=200 if ok else 503, dumps=lambda o: json.dumps(o, indent=1))

    async def _hubitat_post(self, request: web.Request) -> web.Response:
        source = self.hubitat.get(request.match_info["hub"])
        secret = source.cfg.webhook_secret if source else None
        # Constant-time compare, and the same 404 for a wrong hub or a wrong secret: nothing to probe.
        if (
            source is None
            or secret is None
            or not hmac.compare_digest(request.match_info["secret"].encode(), secret.get().encode())
        ):
            log.warning("rejected a POST with an unknown hub or secret", peer=request.remote)
            return web.Response(status=404, text="not found")
        body = await request.read()
        status, text = await source.handle_post(body)
        return web.Response(status=status, text=text)
