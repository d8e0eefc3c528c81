"""The health endpoint (§1.1): ``/services/collector/health`` with its switchable unhealthy states."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bridge.sim.hec.auth import AuthError
from bridge.sim.hec.core import HecCore
from bridge.sim.hec.protocol import HEALTH_STATES
from bridge.sim.hec.records import RequestRecord


class HealthMixin(HecCore):
    """Health reporting for :class:`~bridge.sim.hec.HecSim`."""

    def __init__(self, *, health_endpoint: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: False: a HEC (or a proxy in front of one) without the health endpoint; ``/services/collector/health``
        #: and ``/health/1.0`` answer ``no_endpoint_reply`` (a plain 404 "Not Found" unless changed). Settable at
        #: any time.
        self.health_endpoint = health_endpoint
        self._health_status = "ok"

    @property
    def health_status(self) -> str:
        """One of ``HEALTH_STATES``: "ok" (200/17) or an unhealthy state (503/18, 19 or 20)."""
        return self._health_status

    @health_status.setter
    def health_status(self, value: str) -> None:
        if value not in HEALTH_STATES:
            raise ValueError(f"health_status must be one of {sorted(HEALTH_STATES)}, not {value!r}")
        self._health_status = value

    async def _handle_health(self, request: web.Request) -> web.Response:
        if not self.health_endpoint:
            return self._no_such_endpoint(request)
        rec = self._record(request, self._channel_of(request))
        resp = self._process_health(request, rec)
        if self.response_delay > 0:
            await asyncio.sleep(self.response_delay)
        return resp

    def _process_health(self, request: web.Request, rec: RequestRecord) -> web.Response:
        # §3.2 codes 21/22 are the health check's own token results [INF]: a token is optional here,
        # but one that is sent is checked (Vector's sink health check maps 400 to "Invalid HEC token").
        if "Authorization" in request.headers or "token" in request.query:
            try:
                self._authenticate(request)
            except AuthError as exc:
                # disabled -> 22; query-string auth not allowed stays 16; missing/malformed/unknown -> 21.
                return self._reply(rec, {1: 22, 16: 16}.get(exc.code, 21))
        # An outage means the queues are full, which is what health reports (18) [INF]; its 503 matches
        # the 503/9 the data endpoints give meanwhile.
        code = 18 if self.outage else HEALTH_STATES[self._health_status]
        return self._reply(rec, code)
