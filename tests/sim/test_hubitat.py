"""Wire-format tests for the Hubitat hub simulator (bridge.sim.hubitat), over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import WSMsgType

from bridge.sim.hubitat import HubitatSim, fixture_text, main
from tests.helpers import wait_until
from tests.sim.hubitat_helpers import TOKEN, GatedHub, Receiver, api, get, next_text_is, recv_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sim() -> AsyncIterator[HubitatSim]:
    async with HubitatSim() as hub:
        yield hub


def skeleton(frame: str) -> str:
    """Frame layout with string literals -> S and integers -> N, to compare spacing with the capture."""
    return re.sub(r"\d+", "N", re.sub(r'"(?:[^"\\]|\\.)*"', "S", frame))


# ----------------------------------------------------------------------------------------------------------------
# Maker API
# ----------------------------------------------------------------------------------------------------------------


async def test_json_is_served_as_text_html_with_hub_headers(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """Maker API JSON comes as chunked text/html with a HUBSESSION cookie, a 1970 Expires and no Server header."""
    status, text, resp = await get(http, sim, "devices")
    assert status == 200
    assert resp.headers["Content-Type"] == "text/html;charset=utf-8"
    assert "Server" not in resp.headers
    assert resp.headers["Expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert "HUBSESSION=" in resp.headers["Set-Cookie"]
    with pytest.raises(aiohttp.ContentTypeError):
        await resp.json()  # a naive client trusting Content-Type breaks, as on a real hub
    devices = json.loads(text)
    assert [d["id"] for d in devices] == sim.devices()
    assert all(isinstance(d["id"], str) and set(d) == {"id", "name", "label", "type"} for d in devices)
    sim.html_content_type = False
    _, _, resp = await get(http, sim, "devices")
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_devices_all_is_all_strings_with_junk_keys_like_fixture(
    sim: HubitatSim, http: aiohttp.ClientSession
) -> None:
    """/devices/all maps hold only strings plus junk dataType/values keys; fixture devices come back verbatim."""
    items = await api(http, sim, "devices/all")
    by_id = {item["id"]: item for item in items}
    for item in items:
        attrs = item["attributes"]
        assert attrs["values"] is None and isinstance(attrs["dataType"], str)
        assert all(v is None or isinstance(v, str) for v in attrs.values())
        assert all(set(c) == {"command"} for c in item["commands"])
        assert all(isinstance(c, str) for c in item["capabilities"])
        assert "room" in item and "date" in item
    # The two fixture devices come back exactly as captured, including the junk-key position.
    for expected in json.loads(fixture_text("devices_all.json")):
        got = by_id[expected["id"]]
        assert got == expected
        assert list(got["attributes"]) == list(expected["attributes"])
    assert by_id["999"]["attributes"]["temperature"] == "19.5"
    assert by_id["32"]["attributes"]["temperature"] == "63.99"
    assert list(by_id["176"]["attributes"]).count("switch") == 1  # a JSON map cannot repeat a key


async def test_device_detail_typed_values_and_duplicates(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """/devices/<id> has typed currentValue, DECIMAL as strings, and keeps duplicate attributes and commands."""
    detail = await api(http, sim, "devices/130")
    expected = json.loads(fixture_text("device_switch_130.json"))
    assert detail.pop("room") == "Kitchen"
    assert detail == expected
    for dev_id, expected in json.loads(fixture_text("device_details.json")).items():
        got = await api(http, sim, f"devices/{dev_id}")
        for key in ("id", "label", "name", "attributes", "capabilities", "commands"):
            assert got[key] == expected[key], key
    outlet = await api(http, sim, "devices/176")
    assert [a["name"] for a in outlet["attributes"]] == ["power", "switch", "switch"]
    assert outlet["commands"].count("on") == 2
    leak = {a["name"]: a["currentValue"] for a in (await api(http, sim, "devices/32"))["attributes"]}
    assert leak == {"battery": 66, "temperature": 63.99, "water": "dry"}
    motion = {a["name"]: a for a in (await api(http, sim, "devices/22"))["attributes"]}
    assert motion["fadingTime"] == {"name": "fadingTime", "currentValue": "5", "dataType": "DECIMAL"}
    assert motion["illuminance"]["currentValue"] == 11
    lock = {a["name"]: a["currentValue"] for a in (await api(http, sim, "devices/93"))["attributes"]}
    assert lock["codeLength"] is None and lock["maxCodes"] == 255 and isinstance(lock["lockCodes"], str)
    thermostat = {a["name"]: a["currentValue"] for a in (await api(http, sim, "devices/412"))["attributes"]}
    assert thermostat["humidity"] == 41 and thermostat["thermostatFanMode"] == "fanAuto"
    assert sim.value("412", "humidity") == 41 and sim.value("22", "detectionDelay") == "0.1"
    listed = await api(http, sim, "devices/*")
    assert [a["name"] for a in listed[2]["attributes"]] == ["power", "switch", "switch"]


async def test_other_device_endpoints(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """attribute, commands, capabilities and events sub-resources, 404/400 for unknown ones, prettyPrint."""
    assert await api(http, sim, "devices/130/attribute/switch") == {"id": "130", "attribute": "switch", "value": "off"}
    commands = await api(http, sim, "devices/2178/commands")
    assert {"command": "setLevel", "type": ["NUMBER", "NUMBER"]} in commands
    assert [c["command"] for c in commands].count("on") == 1
    caps = await api(http, sim, "devices/412/capabilities")
    humidity = next(
        a for c in caps[0]["capabilities"] if isinstance(c, dict) for a in c["attributes"] if a["name"] == "humidity"
    )
    assert humidity == {"name": "humidity", "currentValue": "41", "dataType": "NUMBER", "values": None}
    sim.set_attribute("32", "temperature", 64.0)
    sim.set_attribute("32", "water", "wet")
    events = await api(http, sim, "devices/32/events")
    assert [(e["name"], e["value"]) for e in events] == [("water", "wet"), ("temperature", "64.0")]
    assert events[0]["device_id"] == "32" and events[0]["source"] == "DEVICE"
    assert len(await api(http, sim, "devices/32/events?num=1")) == 1
    assert (await get(http, sim, "devices/4242"))[0] == 404
    assert (await get(http, sim, "devices/130/explode"))[0] == 400
    pretty = (await get(http, sim, "devices/130?prettyPrint=true"))[1]
    assert "\n" in pretty and json.loads(pretty)["id"] == "130"


async def test_bad_token_gets_xml_401(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """A wrong or missing token gets the XML 401, an app id the hub does not have a bare 404; Bearer works."""
    body = fixture_text("error_invalid_token.xml").strip()
    for token in ("wrong", None):
        status, text, _ = await get(http, sim, "devices/all", token=token)
        assert (status, text) == (401, body)
    async with http.get(
        f"{sim.url}/apps/api/{sim.app_id}/devices", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as resp:
        assert resp.status == 200
    async with http.get(f"{sim.url}/apps/api/99/devices", params={"access_token": TOKEN}) as resp:
        assert resp.status == 404  # no Maker API instance 99 on this hub
    sim.token_valid = False
    assert (await get(http, sim, "devices"))[:2] == (401, body)
    assert not any(TOKEN in path or "access_token" in path for _, path in sim.requests)
    assert sim.requests[0] == ("GET", "/apps/api/12/devices/all")


async def test_faults_starting_up_html_error_malformed(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """starting_up refuses everything with the boot page, html_error serves an error page, malformed_json cuts."""
    sim.starting_up = True
    status, text, resp = await get(http, sim, "devices/all")
    assert status == 503 and "Your hub is starting up" in text
    async with http.get(f"{sim.url}/hubStatus") as hub_status:
        assert json.loads(await hub_status.text())["status"] == "starting"
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(f"{sim.url}/eventsocket")
    sim.starting_up = False
    async with http.get(f"{sim.url}/hubStatus") as hub_status:
        assert json.loads(await hub_status.text())["status"] == "running"
    sim.html_error = 500
    status, text, resp = await get(http, sim, "devices")
    assert status == 500 and text.startswith("<!DOCTYPE html>") and resp.content_type == "text/html"
    sim.html_error = None
    sim.malformed_json = True
    status, text, _ = await get(http, sim, "devices/all")
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert (await get(http, sim, "devices"))[0] == 200  # only devices/all is garbled


async def test_commands_answer_old_state_then_change_and_push(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """A command answers with the pre-command device JSON, then changes state and pushes the events."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        detail = await api(http, sim, "devices/176/on")
        assert detail["id"] == "176"
        assert [a["currentValue"] for a in detail["attributes"] if a["name"] == "switch"] == ["off", "off"]
        frame = json.loads(await recv_text(ws))
        assert (frame["deviceId"], frame["name"], frame["value"], frame["type"]) == (176, "switch", "on", "digital")
        assert sim.value("176", "switch") == "on"
        await api(http, sim, "devices/2178/setLevel/30,2")  # comma-separated arguments
        await wait_until(lambda: sim.value("2178", "switch") == "on", "setLevel switched the bulb on")
        assert sim.value("2178", "level") == 30
        await api(http, sim, "devices/93/unlock")
        await api(http, sim, "devices/999/setHeatingSetpoint/21.5")
        await api(http, sim, "devices/412/setThermostatMode/heat")
        await api(http, sim, "devices/412/setHeatingSetpoint/70")
        await wait_until(lambda: sim.value("412", "thermostatSetpoint") == 70, "the thermostat followed setpoint")
        assert sim.value("93", "lock") == "unlocked"
        assert sim.value("999", "thermostatSetpoint") == 21.5
        assert sim.value("412", "heatingSetpoint") == 70
        await api(http, sim, "devices/130/push/3")
        await api(http, sim, "devices/130/push/3")  # same button twice: two events (forced state change)
        names = [json.loads(await recv_text(ws))["name"] for _ in range(9)]
        assert names[-2:] == ["pushed", "pushed"]


async def test_command_latency_defers_the_change(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """With command_latency the answer comes at once and the change lands later; stop() cancels pending ones."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        sim.command_latency = 0.05
        await api(http, sim, "devices/130/on")
        frame = json.loads(await recv_text(ws))
        assert (frame["name"], frame["value"]) == ("switch", "on")
        sim.command_latency = 3600.0
        await api(http, sim, "devices/130/off")
        assert sim.value("130", "switch") == "on"
        await next_text_is(ws, sim)  # nothing pushed yet
    await sim.stop()
    assert sim.value("130", "switch") == "on"  # the pending command died with the hub


async def test_modes_and_hsm(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """/modes has integer ids and one active mode; /modes/<id> and /hsm/<cmd> change them; unknowns are 404."""
    modes = await api(http, sim, "modes")
    assert modes == json.loads(fixture_text("modes.json"))
    assert await api(http, sim, "hsm") == {"hsm": "armedAway"}
    modes = await api(http, sim, "modes/3")
    assert [m["name"] for m in modes if m["active"]] == ["Night"] and sim.mode == "Night"
    sim.set_mode("Away")
    assert [m["id"] for m in await api(http, sim, "modes") if m["active"]] == [4]
    assert await api(http, sim, "hsm/disarm") == {"hsm": "disarmed"}
    sim.set_hsm("armedHome")
    assert await api(http, sim, "hsm") == {"hsm": "armedHome"}
    assert (await get(http, sim, "hsm/selfDestruct"))[0] == 404
    assert (await get(http, sim, "modes/77"))[0] == 404


async def test_state_filtering_and_missed_events(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """Unchanged values are filtered, push=False changes state silently, is_state_change forces an event."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        assert sim.set_attribute("130", "switch", "off") is False  # unchanged: filtered like the hub does
        assert sim.set_attribute("130", "switch", "on", push=False) is True  # missed event
        assert sim.state()[("130", "switch")] == "on"
        await next_text_is(ws, sim)  # neither produced a frame
        assert sim.set_attribute("130", "switch", "on", is_state_change=True) is True
        assert json.loads(await recv_text(ws))["value"] == "on"
        sim.set_attribute("1360", "temperature", "30.5")  # strings are coerced to the NUMBER type
        assert sim.value("1360", "temperature") == 30.5
        frame = json.loads(await recv_text(ws))
        assert (frame["value"], frame["unit"]) == ("30.5", "°C")
    assert sim.events_emitted == 2


# ----------------------------------------------------------------------------------------------------------------
# Eventsocket
# ----------------------------------------------------------------------------------------------------------------


async def test_eventsocket_frame_shape_matches_capture(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """Frames are hand-built like the capture: odd spacing, "null" strings, integer ids, no type on old builds."""
    captured = fixture_text("eventsocket_frames.txt").splitlines()
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        sim.set_attribute("32", "temperature", 20, description=None)
        raw = await recv_text(ws)
        assert raw == (
            '{ "source":"DEVICE","name":"temperature","displayName" : "Basement Leak Detector", "value" : "20", '
            '"type" : "null", "unit":"°F","deviceId":32,"hubId":0,"installedAppId":0,'
            '"descriptionText" : "Basement Leak Detector temperature is 20°F"}'
        )
        assert skeleton(raw) == skeleton(captured[0])
        assert list(json.loads(raw)) == list(json.loads(captured[0]))
        sim.set_attribute("130", "syncStatus", 'quoted "x"', unit=None)
        frame = json.loads(await recv_text(ws))
        assert frame["unit"] == "null" and frame["value"] == 'quoted "x"'
        sim.set_mode("Evening")
        sim.hsm_alert("intrusion")
        sim.system_start()
        mode, alert, start = [json.loads(await recv_text(ws)) for _ in range(3)]
        assert (mode["source"], mode["deviceId"], mode["displayName"]) == ("LOCATION", 0, "Home")
        assert (alert["name"], alert["value"]) == ("hsmAlert", "intrusion")
        assert (start["source"], start["name"], start["value"]) == ("HUB", "systemStart", "2.4.4.156")
        sim.omit_event_type = True  # older firmware (fixture line 4)
        sim.set_attribute("176", "switch", "on")
        raw = await recv_text(ws)
        assert skeleton(raw) == skeleton(captured[3]) and "type" not in json.loads(raw)
    assert sim.eventsocket_connections == 1
    assert ("GET", "/eventsocket") in sim.requests


async def test_split_and_duplicate_frames(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """split_frame_rate cuts one JSON object across two frames; duplicate_frame_rate sends a frame twice."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        sim.split_frame_rate = 1.0
        sim.set_attribute("6", "contact", "closed")
        first, second = await recv_text(ws), await recv_text(ws)
        with pytest.raises(json.JSONDecodeError):
            json.loads(first)
        assert json.loads(first + second)["value"] == "closed"
        sim.split_frame_rate = 0.0
        sim.duplicate_frame_rate = 1.0
        sim.set_attribute("6", "contact", "open")
        one, two = await recv_text(ws), await recv_text(ws)
        assert one == two and json.loads(one)["value"] == "open"
        await next_text_is(ws, sim)  # exactly two copies


async def test_burst_is_ordered_to_every_socket(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """push_burst delivers thousands of frames to every socket, each in publication order."""
    n = 3000
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws1, http.ws_connect(f"{sim.url}/eventsocket") as ws2:
        await sim.push_burst([("1360", "humidity", i) for i in range(1, n + 1)])
        for ws in (ws1, ws2):
            values = [json.loads(await recv_text(ws))["value"] for _ in range(n)]
            assert values == [str(i) for i in range(1, n + 1)]
    assert sim.eventsocket_connections == 2 and sim.events_emitted == n


async def test_pings_are_answered_and_sent(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """The hub answers client pings and, with ping_interval set, pings on its own."""
    async with http.ws_connect(f"{sim.url}/eventsocket", autoping=False) as ws:
        await ws.ping(b"probe")
        assert (await ws.receive(timeout=5)).type is WSMsgType.PONG
        sim.ping_interval = 0.05
        assert (await ws.receive(timeout=5)).type is WSMsgType.PING


async def test_silent_hub_loses_events_for_good(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """Events published while silent are never sent, not even once the hub talks again."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        sim.silent = True
        sim.set_attribute("6", "contact", "closed")
        sim.silent = False
        sim.set_attribute("6", "contact", "open")
        assert json.loads(await recv_text(ws))["value"] == "open"  # the missed "closed" is gone for good


async def test_silent_hub_answers_no_ping_and_keeps_the_socket_open(
    sim: HubitatSim, http: aiohttp.ClientSession
) -> None:
    """A silent hub sends no frame and no pong but keeps the socket open: stop's close frame is the first message."""
    async with http.ws_connect(f"{sim.url}/eventsocket", autoping=False) as ws:
        sim.silent = True
        sim.set_attribute("6", "contact", "closed")
        await ws.ping(b"anyone?")
        assert sim.inject_frame("swallowed") == 1
        assert not ws.closed
        await sim.stop()  # the close frame comes after anything sent before it on this connection
        assert (await ws.receive(timeout=5)).type is WSMsgType.CLOSE


async def test_drop_aborts_sockets_without_close_frame(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """drop_eventsockets cuts the TCP connection and forgets the sockets."""
    ws = await http.ws_connect(f"{sim.url}/eventsocket")
    await sim.drop_eventsockets()
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR, WSMsgType.CLOSE)
    await ws.close()
    assert sim.inject_frame("nobody") == 0


async def test_reboot_with_dead_sockets_leaves_silent_zombies(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """reboot(dead_sockets=True) leaves old sockets open but mute: they never hear the systemStart."""
    async with http.ws_connect(f"{sim.url}/eventsocket", autoping=False) as zombie:
        await sim.reboot(downtime=0.05, dead_sockets=True)
        assert not sim.starting_up and sim.events_emitted == 1  # systemStart was published
        await zombie.ping(b"alive?")
        assert sim.inject_frame("for the living") == 0
        assert not zombie.closed
        await sim.stop()
        assert (await zombie.receive(timeout=5)).type is WSMsgType.CLOSE  # no systemStart, no pong before it


async def test_post_hub_reboot_drops_sockets_and_comes_back(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """POST /hub/reboot answers 200, drops the sockets, boots ("starting up") and publishes systemStart."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        async with http.get(f"{sim.url}/hub/reboot") as resp:
            assert resp.status == 404  # GET is not a reboot
        async with http.post(f"{sim.url}/hub/reboot") as resp:
            assert resp.status == 200
        msg = await ws.receive(timeout=5)
        assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR, WSMsgType.CLOSE)
        await wait_until(lambda: sim.starting_up, "the hub is booting")
        assert (await get(http, sim, "devices"))[0] == 503
        await wait_until(lambda: not sim.starting_up and sim.events_emitted == 1, "the hub is back with systemStart")
    assert sim.eventsocket_connections == 1


async def test_stop_closes_sockets_and_abandons_requests(http: aiohttp.ClientSession) -> None:
    """stop() closes eventsockets with a close frame and does not wait for slow requests in flight."""
    hub = HubitatSim()
    await hub.start()
    ws = await http.ws_connect(f"{hub.url}/eventsocket")
    hub.response_delay = 3600.0
    slow = asyncio.ensure_future(http.get(f"{hub.url}/apps/api/12/devices", params={"access_token": TOKEN}))
    await wait_until(lambda: hub.max_in_flight == 1, "the slow request reached the hub")
    await asyncio.wait_for(hub.stop(), timeout=60)  # far less than the delay: stop did not wait for it
    assert (await ws.receive(timeout=5)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
    await ws.close()
    with pytest.raises(aiohttp.ClientError):
        await slow
    await hub.stop()  # idempotent


# ----------------------------------------------------------------------------------------------------------------
# postURL webhook
# ----------------------------------------------------------------------------------------------------------------


async def test_post_url_registration_and_ordered_bodies(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """GET /postURL/<url> registers; bodies are the fixture's shape, POSTed in order over one connection."""
    async with Receiver() as receiver:
        reply = await api(http, sim, f"postURL/{quote(receiver.url, safe='')}")
        assert reply == {"url": receiver.url} and sim.posted_url == receiver.url
        assert sim.requests[-1] == ("GET", "/apps/api/12/postURL/" + quote(receiver.url, safe=":="))
        for i in range(20):
            sim.set_attribute("176", "power", i + 1)
        sim.set_mode("Evening")
        sim.set_hsm("allDisarmed")
        await sim.wait_posts_idle(5)
        # One at a time: HTTP/1.1 on a single kept-alive connection, answered before the next is sent.
        assert receiver.max_active == 1 and len(set(receiver.peers)) == 1
        assert all(ct == "application/json" for ct in receiver.content_types)
        contents = [b["content"] for b in receiver.bodies]
        assert [c["value"] for c in contents[:20]] == [str(i + 1) for i in range(20)]
        power = contents[0]
        assert power == {
            "name": "power",
            "value": "1",
            "displayName": "Loft Fan",
            "deviceId": "176",
            "descriptionText": "Loft Fan power is 1W",
            "unit": "W",
            "type": None,
            "data": None,
        }
        samples = json.loads(fixture_text("postURL_events.json"))
        assert contents[20] == samples["mode"]["content"]
        assert contents[21] == samples["hsmAllDisarmed"]["content"]
        assert [s for _, s in sim.post_results] == [200] * 22
        assert [b for b, _ in sim.post_results] == receiver.bodies
        sim.post_location_events = False
        sim.set_mode("Night")
        sim.omit_event_type = True  # 2020 builds (postURL_content_2020.json)
        sim.set_attribute("176", "power", 0)
        await sim.wait_posts_idle(5)
        assert len(receiver.bodies) == 23
        assert set(receiver.bodies[-1]["content"]) == set(json.loads(fixture_text("postURL_content_2020.json")))
        assert await api(http, sim, "postURL") == {"url": None}
        sim.set_attribute("176", "power", 5)
        await sim.wait_posts_idle(5)
        assert len(receiver.bodies) == 23


async def test_failed_posts_are_not_retried(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """A POST that fails (no listener, HTTP 500) is recorded once and never sent again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    sim.posted_url = f"http://127.0.0.1:{dead_port}/nobody"
    sim.set_attribute("6", "contact", "closed")
    await sim.wait_posts_idle(5)
    assert [status for _, status in sim.post_results] == [None]
    async with Receiver(status=500) as receiver:
        await api(http, sim, f"postURL/{quote(receiver.url, safe='')}")
        sim.set_attribute("6", "contact", "open")
        sim.set_attribute("6", "tamper", "detected")
        await sim.wait_posts_idle(5)
        # A retry of the first would have been sent before the second (one POST at a time, in order).
        assert [b["content"]["value"] for b in receiver.bodies] == ["open", "detected"]
    assert [status for _, status in sim.post_results] == [None, 500, 500]


async def test_post_drop_rate_loses_posts(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """post_drop_rate=1 loses every POST (recorded with status None) without sending it."""
    async with Receiver() as receiver:
        sim.posted_url = receiver.url
        sim.post_drop_rate = 1.0
        sim.set_attribute("6", "contact", "closed")
        await sim.wait_posts_idle(5)  # the drop is decided when the POST is due
        sim.post_drop_rate = 0.0
        sim.set_attribute("6", "contact", "open")
        await sim.wait_posts_idle(5)
        assert [b["content"]["value"] for b in receiver.bodies] == ["open"]
    assert [status for _, status in sim.post_results] == [None, 200]


# ----------------------------------------------------------------------------------------------------------------
# Observation, options, CLI
# ----------------------------------------------------------------------------------------------------------------


async def test_in_flight_and_overlapping_polls(http: aiohttp.ClientSession) -> None:
    """max_in_flight and overlapping_polls count concurrent requests; over overload_limit the hub answers 500."""
    async with GatedHub() as hub:
        hub.gate.clear()
        calls = [asyncio.ensure_future(get(http, hub, "devices")) for _ in range(5)]
        await wait_until(lambda: hub.held == 5, "five requests are in flight")
        hub.gate.set()
        await asyncio.gather(*calls)
        assert hub.max_in_flight == 5 and hub.overlapping_polls == 0
        hub.gate.clear()
        polls = [asyncio.ensure_future(get(http, hub, "devices/all")) for _ in range(3)]
        await wait_until(lambda: hub.held == 3, "three polls are in flight")
        hub.gate.set()
        await asyncio.gather(*polls)
        assert hub.overlapping_polls == 2
        await get(http, hub, "devices/all")
        assert hub.overlapping_polls == 2
        hub.overload_limit = 2
        hub.gate.clear()
        held = [asyncio.ensure_future(get(http, hub, "devices")) for _ in range(2)]
        await wait_until(lambda: hub.held == 2, "two requests are in flight")
        refused = await asyncio.gather(*(get(http, hub, "devices") for _ in range(2)))
        hub.gate.set()
        assert [s for s, _, _ in refused] == [500, 500]
        assert [s for s, _, _ in await asyncio.gather(*held)] == [200, 200]


async def test_custom_devices_and_hub_endpoints(http: aiohttp.ClientSession) -> None:
    """Constructor options (app id, token, devices, seed), hub-root endpoints and random activity."""
    trv = json.loads(fixture_text("devices_all_trv_item.json"))
    plug = {"id": "7", "label": "Plug", "attributes": [{"name": "switch", "currentValue": "on"}], "commands": ["on"]}
    async with HubitatSim(app_id=5, access_token="t", devices=[trv, plug], seed=3) as hub:
        assert hub.devices() == ["999", "7"]
        async with http.get(f"{hub.url}/apps/api/5/devices/all", params={"access_token": "t"}) as resp:
            items = json.loads(await resp.text())
        assert items[0]["attributes"]["thermostatMode"] == "heat"
        assert items[1]["attributes"] == {"dataType": "ENUM", "values": None, "switch": "on"}
        async with http.get(f"{hub.url}/hub2/hubData") as resp:
            assert json.loads(await resp.text())["version"] == "2.4.4.156"
        async with http.get(f"{hub.url}/hub/advanced/freeOSMemory") as resp:
            assert int(await resp.text()) > 0
        async with http.get(f"{hub.url}/hub/advanced/freeOSMemoryLast") as resp:
            assert await resp.text() == fixture_text("freeOSMemoryLast_c8pro.csv")
        async with http.get(f"{hub.url}/hub/eventsJson") as resp:
            assert json.loads(await resp.text())[0]["value"] == "2.4.4.156"
        task = asyncio.ensure_future(hub.random_activity(0.01))
        await wait_until(lambda: hub.events_emitted > 0, "random activity changed something")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    with pytest.raises(ValueError):
        HubitatSim(devices=[{"id": "abc"}])
    with pytest.raises(ValueError, match="duplicate"):
        HubitatSim(devices=[plug, plug])


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    """main() is the argparse CLI of the demo hub."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--port" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli() -> None:
    """``python -m bridge.sim.hubitat`` reaches the same CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge.sim.hubitat", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "python -m bridge.sim.hubitat" in done.stdout
