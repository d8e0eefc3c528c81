"""``HubitatSim``: the hub assembled from its parts, with the server lifecycle and the request-observing middleware."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.sim.hubitat.cloud import CloudRelayMixin
from bridge.sim.hubitat.health import HubHealthMixin
from bridge.sim.hubitat.responses import error_page, hub_headers

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HubitatSim(HubHealthMixin, CloudRelayMixin):
    """A Hubitat Elevation hub on 127.0.0.1: Maker API, postURL webhook and /eventsocket, and its cloud relay.

    Quirk and fault switches are plain public attributes and may be flipped at any time; observation
    counters are plain attributes too. Each part sets up its own: hub state (``state.py``), eventsocket
    (``eventsocket.py``), postURL sender (``posturl.py``), Maker API (``maker.py``) and, here, the HTTP
    server's ``response_delay``, ``overload_limit`` and request counters. See the package docstring for the
    reference sections reproduced.
    """

    def __init__(
        self,
        *,
        app_id: int = 12,
        access_token: str = "sim-token",
        devices: list[dict[str, Any]] | None = None,
        seed: int = 0,
        hub_uid: str | None = None,
    ) -> None:
        super().__init__(app_id=app_id, access_token=access_token, devices=devices, seed=seed, hub_uid=hub_uid)
        # --- quirks -------------------------------------------------------------------------------------------
        self.overload_limit: int | None = None  # >N concurrent Maker API requests -> HTTP 500 (ref §5.6)
        # --- faults -------------------------------------------------------------------------------------------
        self.response_delay: float = 0.0  # seconds before any HTTP request is handled
        #: A "500 storm" (a hub about to wedge): every HTTP request but /eventsocket gets the hub's HTML 500 page,
        #: Maker API (LAN or through the relay) and admin endpoints alike, until switched off.
        self.storm: bool = False
        self.storm_answers: int = 0  # 500s the storm gave
        # --- observation --------------------------------------------------------------------------------------
        self.requests: list[tuple[str, str]] = []  # (method, path without the query) in arrival order
        self.max_in_flight: int = 0
        self.overlapping_polls: int = 0
        # --- server plumbing ----------------------------------------------------------------------------------
        self.url: str = ""
        self.port: int = 0
        self._in_flight = 0
        self._polls_in_flight = 0
        self._runner: web.AppRunner | None = None

    # ----------------------------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and serve. ``port=0`` picks a free port; read it back from :attr:`port` / :attr:`url`."""
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._observe])
        app.on_response_prepare.append(hub_headers)
        app.router.add_get("/eventsocket", self._handle_eventsocket)
        app.router.add_route("*", "/apps/api/{app_id}", self._handle_maker)
        app.router.add_route("*", "/apps/api/{app_id}/{tail:.*}", self._handle_maker)
        app.router.add_get("/hubStatus", self._handle_hub_status)
        app.router.add_get("/hub2/hubData", self._handle_hub_data)
        app.router.add_get("/hub/eventsJson", self._handle_hub_events)
        app.router.add_get("/hub/advanced/{name}", self._handle_hub_advanced)
        app.router.add_post("/hub/reboot", self._handle_hub_reboot)
        app.router.add_get("/hub/reboot", self._handle_hub_reboot_get, allow_head=False)
        self.add_relay_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.url = f"http://{host}:{self.port}"
        self._start_posts()

    async def stop(self) -> None:
        """Close eventsockets (close frame, then abort), abandon queued POSTs and shut the server down."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._cancel_commands()
        await self._close_eventsockets()
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._stop_posts()
        await runner.cleanup()

    async def __aenter__(self) -> HubitatSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------------------------------
    # Observation middleware
    # ----------------------------------------------------------------------------------------------------------

    @web.middleware
    async def _observe(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]  # never record the query: it holds the access token
        self.requests.append((request.method, path))
        if path == "/eventsocket":
            return await handler(request)
        maker = path.startswith(("/apps/api/", "/api/"))  # on the LAN or through the cloud relay
        is_poll = path.endswith("/devices/all") and maker
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if is_poll:
            if self._polls_in_flight:
                self.overlapping_polls += 1
            self._polls_in_flight += 1
        overloaded = self.overload_limit is not None and self._in_flight > self.overload_limit
        try:
            if self.response_delay > 0:
                await asyncio.sleep(self.response_delay)
            if self.storm and not (path.startswith("/api/") and self.relay_fault is not None):
                self.storm_answers += 1
                return error_page(500)
            if overloaded and maker:
                # Bursts of simultaneous Maker API calls get HTTP 500 (node-red #46, ref §5.6).
                return error_page(500)
            return await handler(request)
        finally:
            self._in_flight -= 1
            if is_poll:
                self._polls_in_flight -= 1
