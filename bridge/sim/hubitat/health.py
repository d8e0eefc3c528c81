"""Hub-root admin endpoints (hubStatus, hubData, eventsJson, advanced, reboot) and the simulated reboot itself."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from bridge.sim.hubitat.eventsocket import EventSocketMixin
from bridge.sim.hubitat.fixtures import fixture_json, fixture_text
from bridge.sim.hubitat.responses import TEXT_HTML, body, not_found, starting_up_page


class HubHealthMixin(EventSocketMixin):
    """Health endpoints and boot cycle of :class:`~bridge.sim.hubitat.HubitatSim` (ref §4); no token involved."""

    async def reboot(self, *, downtime: float = 0.5, dead_sockets: bool = False) -> None:
        """Simulate a hub reboot: sockets die, the hub answers "starting up" for ``downtime``, then systemStart.

        ``dead_sockets=True`` reproduces ref §2.3: the old connections stay open but never carry another frame
        or pong (no close frame); otherwise they are dropped abruptly.
        """
        if dead_sockets:
            self._kill_eventsockets()
        else:
            await self.drop_eventsockets()
        self.starting_up = True
        await asyncio.sleep(downtime)
        self.starting_up = False
        self.system_start()

    async def _handle_hub_status(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            payload = {
                "serverInitPercentage": "Initializing Hub: 42%",
                "serverInitDetails": "starting apps",
                "status": "starting",
            }
        else:
            payload = fixture_json("hub_status.json")
        return body(json.dumps(payload, separators=(",", ":")), TEXT_HTML)

    async def _handle_hub_data(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return starting_up_page(self.starting_up_status)
        data = fixture_json("hubData.json")
        data["version"] = self.firmware
        return body(json.dumps(data, separators=(",", ":")), TEXT_HTML)

    async def _handle_hub_events(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return starting_up_page(self.starting_up_status)
        data = fixture_json("hub_eventsJson.json")
        for row in data:
            row["value"] = self.firmware
            row["descriptionText"] = f"System startup with build: {self.firmware}"
        return body(json.dumps(data, separators=(",", ":")), TEXT_HTML)

    async def _handle_hub_advanced(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return starting_up_page(self.starting_up_status)
        plain = {
            "freeOSMemory": "914716",
            "internalTempCelsius": "38.2",
            "databaseSize": "6",
            "freeOSMemoryLast": fixture_text("freeOSMemoryLast_c8pro.csv"),
        }
        text = plain.get(request.match_info["name"])
        return not_found() if text is None else body(text, TEXT_HTML)

    async def _handle_hub_reboot(self, request: web.Request) -> web.StreamResponse:
        # POST only; answers 200, then the hub goes down and comes back with systemStart (ref §4).
        self._spawn(self.reboot())
        return body("", TEXT_HTML)

    async def _handle_hub_reboot_get(self, request: web.Request) -> web.StreamResponse:
        return not_found()  # ref §4: GET /hub/reboot is a 404, not a 405
