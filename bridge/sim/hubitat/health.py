"""Hub-root admin endpoints (hubStatus, hubData, eventsJson, advanced, reboot) and the simulated reboot itself.

The health values (ref §4) are served in the hub's own formats: plain integers and floats, the freeOSMemoryLast CSV
in its C-8 Pro shape (6 columns, the fixture verbatim by default) or its C-4 shape (5 columns, no Direct Java), and
hubData JSON (the fixture, optionally with the deeper ``baseModel``). ``missing_endpoints`` makes paths 404 as on
older firmware; :meth:`set_health` changes the values (a hub whose memory and load move).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from aiohttp import web

from bridge.sim.hubitat.eventsocket import EventSocketMixin
from bridge.sim.hubitat.fixtures import fixture_json, fixture_text
from bridge.sim.hubitat.responses import TEXT_HTML, body, not_found, starting_up_page

_CSV_HEADER: Final = ("Date/time", "Free OS", "5m CPU avg", "Total Java", "Free Java", "Direct Java")


class HubHealthMixin(EventSocketMixin):
    """Health endpoints and boot cycle of :class:`~bridge.sim.hubitat.HubitatSim` (ref §4); no token involved."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # --- health values (ref §4 examples) --------------------------------------------------------------------
        self.free_os_memory: int = 914716  # KB, /hub/advanced/freeOSMemory
        self.internal_temp: float = 38.2  # °C, /hub/advanced/internalTempCelsius (C-8 Pro; C-4 says 63.0)
        self.database_size: int = 6  # MB, /hub/advanced/databaseSize
        #: The body of /hub/advanced/freeOSMemoryLast: the C-8 Pro fixture until set_health() renders a new row.
        self.memory_csv: str = fixture_text("freeOSMemoryLast_c8pro.csv")
        #: Merged into /hub2/hubData as ``baseModel`` (zigbeeStatus, zwaveStatus, cloudDisconnected...) when set.
        self.hub_data_base_model: dict[str, Any] | None = None
        #: Overrides of hubData's ``alerts`` (e.g. {"hubLowMemory": True}).
        self.hub_alerts: dict[str, Any] = {}
        # --- faults ---------------------------------------------------------------------------------------------
        #: Hub-root paths (e.g. "/hub/advanced/freeOSMemoryLast", "/hub2/hubData") that 404 as on older firmware.
        self.missing_endpoints: set[str] = set()
        #: Hub security (a login) on: admin endpoints redirect to /login (ref §4: thebearmay detects it this way).
        self.hub_security: bool = False

    def set_health(
        self,
        *,
        free_os: int,
        cpu: float,
        total_java: int,
        free_java: int,
        direct_java: int | None = None,
        stamp: str = "04-12 03:30:19",
    ) -> None:
        """A new freeOSMemoryLast row (C-8 Pro shape with ``direct_java``, C-4 shape without) and freeOSMemory."""
        header = _CSV_HEADER if direct_java is not None else _CSV_HEADER[:5]
        row = [stamp, str(free_os), f"{cpu:g}", str(total_java), str(free_java)]
        if direct_java is not None:
            row.append(str(direct_java))
        self.memory_csv = ",".join(header) + "\n" + ",".join(row) + "\n"
        self.free_os_memory = free_os

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

    def _login_redirect(self, request: web.Request) -> web.StreamResponse | None:
        if not self.hub_security:
            return None
        return web.Response(status=302, headers={"Location": f"http://{request.host}/login"})

    async def _handle_hub_data(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return starting_up_page(self.starting_up_status)
        if (login := self._login_redirect(request)) is not None:
            return login
        if request.path in self.missing_endpoints:
            return not_found()
        data = fixture_json("hubData.json")
        data["version"] = self.firmware
        data["hubId"] = getattr(self, "hub_uid", data["hubId"])
        data["alerts"].update(self.hub_alerts)
        if self.hub_data_base_model is not None:
            data["baseModel"] = dict(self.hub_data_base_model)
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
        if (login := self._login_redirect(request)) is not None:
            return login
        if request.path in self.missing_endpoints:
            return not_found()
        plain = {
            "freeOSMemory": str(self.free_os_memory),
            "internalTempCelsius": f"{self.internal_temp:.1f}",
            "databaseSize": str(self.database_size),
            "freeOSMemoryLast": self.memory_csv,
        }
        text = plain.get(request.match_info["name"])
        return not_found() if text is None else body(text, TEXT_HTML)

    async def _handle_hub_reboot(self, request: web.Request) -> web.StreamResponse:
        # POST only; answers 200, then the hub goes down and comes back with systemStart (ref §4).
        self._spawn(self.reboot())
        return body("", TEXT_HTML)

    async def _handle_hub_reboot_get(self, request: web.Request) -> web.StreamResponse:
        return not_found()  # ref §4: GET /hub/reboot is a 404, not a 405
