"""Hubitat's cloud relay in front of the simulated hub: ``/api/<hubUID>/apps/<appId>/...`` (ref §1.1, §3).

The relay forwards Maker API and nothing else: no ``/eventsocket``, no hub-root admin pages (each a 404 from the
relay). Its own errors are not documented; the simulator answers them as the bridge expects them [INF]:

* ``relay_fault = "hub_offline"``: HTTP 503 ``{"error":"hub is offline"}`` (the hub is not connected to the cloud);
* ``relay_fault = "timeout"``: HTTP 504 ``{"error":"timed out waiting for the hub"}``;
* ``relay_fault = "rate_limit"``: HTTP 429 ``{"error":"too many requests"}`` with ``Retry-After: <relay_retry_after>``;
* a hub UID the relay does not know: HTTP 404 ``{"error":"hub not found"}``.

Behind the relay the hub answers as on the LAN (its 401 XML, its 500 pages, "starting up"): the same handler.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from aiohttp import web

from bridge.sim.hubitat.maker import MakerApiMixin
from bridge.sim.hubitat.responses import APPLICATION_JSON, body

RELAY_FAULTS: Final = ("hub_offline", "timeout", "rate_limit")
_RELAY_ANSWERS: Final = {
    "hub_offline": (503, "hub is offline"),
    "timeout": (504, "timed out waiting for the hub"),
    "rate_limit": (429, "too many requests"),
}


def relay_error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    """An answer of the relay itself (JSON, not the hub's HTML or its headers' quirks)."""
    resp = body(json.dumps({"error": message}), APPLICATION_JSON, status)
    if retry_after is not None:
        resp.headers["Retry-After"] = f"{retry_after:g}"
    return resp


class CloudRelayMixin(MakerApiMixin):
    """The cloud relay routes of :class:`~bridge.sim.hubitat.HubitatSim` and their faults."""

    def __init__(self, *, hub_uid: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The hub's UID (hubData's hubId): the path segment after /api/ on the relay.
        self.hub_uid: str = hub_uid or str(uuid.UUID(int=0x6875_6262_7269_6467_6500_0000_0000_0001))
        # --- faults -------------------------------------------------------------------------------------------
        self.relay_fault: str | None = None  # one of RELAY_FAULTS: the relay answers itself, the hub sees nothing
        self.relay_retry_after: float = 1.0  # the rate limit's Retry-After, seconds
        # --- observation --------------------------------------------------------------------------------------
        self.relay_requests: int = 0  # requests that came in through the relay (any path under /api/)

    def add_relay_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{hub_uid}/apps/{app_id}", self._handle_relay)
        app.router.add_route("*", "/api/{hub_uid}/apps/{app_id}/{tail:.*}", self._handle_relay)
        app.router.add_route("*", "/api/{hub_uid}/{rest:.*}", self._handle_relay_other)

    @property
    def cloud_url(self) -> str:
        """The cloud form of this hub's address, as a bridge config gives it (``url``)."""
        return f"{getattr(self, 'url', '')}/api/{self.hub_uid}"

    async def _handle_relay(self, request: web.Request) -> web.StreamResponse:
        self.relay_requests += 1
        if request.match_info["hub_uid"] != self.hub_uid:
            return relay_error(404, "hub not found")
        if self.relay_fault is not None:
            status, message = _RELAY_ANSWERS[self.relay_fault]
            return relay_error(status, message, self.relay_retry_after if status == 429 else None)
        return await self._handle_maker(request)

    async def _handle_relay_other(self, request: web.Request) -> web.StreamResponse:
        # /eventsocket, /hub/advanced/..., /hub2/hubData: the relay carries none of them.
        self.relay_requests += 1
        return relay_error(404, "not found")
