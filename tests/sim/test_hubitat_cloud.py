"""The Hubitat simulator's cloud relay, health formats and 500 storm, checked on the wire (client side)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bridge.sim.hubitat import HubitatSim, fixture_json, fixture_text
from tests.sim.hubitat_helpers import TOKEN, get


async def test_the_relay_serves_maker_api_under_the_hub_uid_and_nothing_else(http: aiohttp.ClientSession) -> None:
    """/api/<hubUID>/apps/<id>/... answers as Maker API on the LAN does; eventsocket and admin pages are 404s."""
    async with HubitatSim(hub_uid="abcd-1234") as sim:
        _, lan, _ = await get(http, sim, "devices")
        async with http.get(f"{sim.cloud_url}/apps/{sim.app_id}/devices", params={"access_token": TOKEN}) as resp:
            assert resp.status == 200 and await resp.text() == lan
        async with http.get(f"{sim.cloud_url}/apps/{sim.app_id}/devices", params={"access_token": "x"}) as resp:
            assert resp.status == 401 and "invalid_token" in await resp.text()  # the hub's own answer, passed on
        for path in ("/eventsocket", "/hub2/hubData", "/hub/advanced/freeOSMemory"):
            async with http.get(f"{sim.cloud_url}{path}") as resp:
                assert resp.status == 404, path
        async with http.get(f"{sim.url}/api/other-hub/apps/{sim.app_id}/devices") as resp:
            assert resp.status == 404 and json.loads(await resp.text()) == {"error": "hub not found"}
        assert sim.relay_requests == 6


@pytest.mark.parametrize(("fault", "status"), [("hub_offline", 503), ("timeout", 504), ("rate_limit", 429)])
async def test_relay_faults_answer_from_the_relay(http: aiohttp.ClientSession, fault: str, status: int) -> None:
    """Each relay fault is the relay's own JSON answer (a 429 with Retry-After); the LAN path is unaffected."""
    async with HubitatSim() as sim:
        sim.relay_fault = fault
        sim.relay_retry_after = 7
        async with http.get(f"{sim.cloud_url}/apps/{sim.app_id}/devices/all", params={"access_token": TOKEN}) as r:
            assert r.status == status and "error" in json.loads(await r.text())
            assert r.headers.get("Retry-After") == ("7" if status == 429 else None)
        assert (await get(http, sim, "devices/all"))[0] == 200


async def test_health_formats_on_the_wire(http: aiohttp.ClientSession) -> None:
    """Plain numbers, the CSV in both shapes, hubData with baseModel and alerts, 404s and the login redirect."""
    async with HubitatSim() as sim:

        async def text(path: str) -> tuple[int, str]:
            async with http.get(f"{sim.url}{path}", allow_redirects=False) as resp:
                return resp.status, await resp.text()

        assert await text("/hub/advanced/freeOSMemoryLast") == (200, fixture_text("freeOSMemoryLast_c8pro.csv"))
        assert await text("/hub/advanced/databaseSize") == (200, "6")
        assert await text("/hub/advanced/internalTempCelsius") == (200, "38.2")
        sim.set_health(free_os=312044, cpu=0.61, total_java=98304, free_java=20480)
        status, csv = await text("/hub/advanced/freeOSMemoryLast")
        assert status == 200
        assert csv.splitlines()[0] == "Date/time,Free OS,5m CPU avg,Total Java,Free Java"  # the C-4's 5 columns
        assert csv.splitlines()[1].endswith(",312044,0.61,98304,20480")
        assert await text("/hub/advanced/freeOSMemory") == (200, "312044")
        sim.hub_data_base_model = {"zigbeeStatus": "enabled"}
        sim.hub_alerts = {"hubLowMemory": True}
        data = json.loads((await text("/hub2/hubData"))[1])
        assert data["baseModel"] == {"zigbeeStatus": "enabled"} and data["alerts"]["hubLowMemory"] is True
        assert set(data["alerts"]) == set(fixture_json("hubData.json")["alerts"])
        sim.missing_endpoints = {"/hub2/hubData"}
        assert (await text("/hub2/hubData"))[0] == 404
        sim.hub_security = True
        async with http.get(f"{sim.url}/hub/advanced/databaseSize", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"].endswith("/login")


async def test_a_500_storm_hits_every_path_but_the_eventsocket(http: aiohttp.ClientSession) -> None:
    """storm = True: Maker API (LAN and relay) and admin pages get the hub's HTML 500 page, counted."""
    async with HubitatSim() as sim:
        sim.storm = True
        assert (await get(http, sim, "devices/all"))[0] == 500
        async with http.get(f"{sim.cloud_url}/apps/{sim.app_id}/devices/all", params={"access_token": TOKEN}) as r:
            assert r.status == 500 and "HTTP ERROR 500" in await r.text()
        async with http.get(f"{sim.url}/hub2/hubData") as resp:
            assert resp.status == 500
        async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
            assert not ws.closed
        assert sim.storm_answers == 3
        sim.storm = False
        assert (await get(http, sim, "devices/all"))[0] == 200
