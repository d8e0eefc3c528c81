"""Integration tests of the Hubitat source: the real bridge Runtime against HubitatSim over loopback sockets.

Every test starts a simulated hub (bridge.sim.hubitat) and the real ``bridge.runtime.Runtime`` with a config loaded
by ``bridge.config.load_config`` from a YAML file, then asserts on what the file sink wrote, on the journal and on
the simulator's observation counters. Waits are bounded with ``asyncio.timeout``; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from aiohttp import web

from bridge.config import load_config
from bridge.events import FIELDS, Event
from bridge.runtime import Runtime
from bridge.sim.hubitat import HubitatSim, fixture_json
from bridge.sources.runner import HubRunner, HubStatus
from tests.helpers import BridgeUnderTest, matches, wait_until

TOKEN = "sim-token-7f3a9c1e"
HUB = "house"
SECRET = "hook/Secret+5d2b="  # base64-style: "/" and "+" must survive the round trip through the hub
WAIT = 15.0  # upper bound for any single wait; tests normally take a small fraction of it

# sim, bridges and logs: conftest.py
pytestmark = pytest.mark.usefixtures("quick_retries")


# ------------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TimedList(list[tuple[str, str]]):
    """Drop-in for ``sim.requests`` that also remembers when each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: tuple[str, str]) -> None:
        self.times.append(time.monotonic())
        super().append(item)


class TrackingSim(HubitatSim):
    """HubitatSim that also counts overlapping ``/devices/<id>`` detail requests (holding each a little)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detail_active = 0
        self.detail_overlaps = 0
        self.detail_hold = 0.0
        self.requests = TimedList()

    async def _handle_maker(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")  # "", apps, api, <app>, devices, <id>
        if len(parts) != 6 or parts[4] != "devices" or parts[5] in ("all", "*", ""):
            return await super()._handle_maker(request)
        if self.detail_active:
            self.detail_overlaps += 1
        self.detail_active += 1
        try:
            if self.detail_hold:
                await asyncio.sleep(self.detail_hold)
            return await super()._handle_maker(request)
        finally:
            self.detail_active -= 1

    def count_prefix(self, path_prefix: str) -> int:
        return sum(1 for _, p in self.requests if p.startswith(path_prefix))

    def count(self, path_suffix: str) -> int:
        return sum(1 for _, p in self.requests if p.endswith(path_suffix))

    def times_of(self, path_suffix: str) -> list[float]:
        return [t for t, (_, p) in zip(self.requests.times, self.requests, strict=True) if p.endswith(path_suffix)]


class Bridge(BridgeUnderTest):
    """One bridge process (Runtime) configured from YAML in ``directory``, writing to a file sink there."""

    hub_name = HUB

    def __init__(
        self,
        directory: Path,
        sim: HubitatSim,
        *,
        listen: str = "127.0.0.1:0",
        top: dict[str, Any] | None = None,
        **hub: Any,
    ) -> None:
        self.sim = sim
        hub_cfg: dict[str, Any] = {
            "name": HUB,
            "type": "hubitat",
            "url": sim.url,
            "app_id": sim.app_id,
            "access_token": sim.access_token,
            "eventsocket": True,
            "poll_interval": "60s",  # only start/reconnect/systemStart reconciliations run during a test
            "request_timeout": "2s",
            "backoff_max": "1s",
            "detail_spacing": "5ms",
            "eventsocket_timeout": "3s",
        }
        hub_cfg.update(hub)
        super().__init__(directory, hub_cfg, listen=listen, top=top)

    @property
    def runner(self) -> HubRunner:
        """The hub's runner of the moment (a fresh one after a crash)."""
        return self.runtime.runners[HUB]

    @property
    def status(self) -> HubStatus:
        return self.runtime.hubs[HUB].status

    @property
    def polls(self) -> int:
        return self.status.polls

    @property
    def connected(self) -> bool:
        src = self.runtime.hubs[HUB].runner
        return src is not None and src.source is not None and src.source.stream_live

    @property
    def port(self) -> int:
        assert self.runtime.server is not None
        return self.runtime.server.port

    def post_url(self, secret: str = SECRET, hub: str = HUB) -> str:
        return f"http://127.0.0.1:{self.port}/hubitat/{hub}/{quote(secret, safe='')}"

    async def wait_event(self, what: str = "", **want: Any) -> dict[str, Any]:
        await wait_until(lambda: bool(self.find(**want)), what=what or f"an event {want}")
        return self.find(**want)[0]

    async def wait_written(self, **want: Any) -> dict[str, Any]:
        def found() -> bool:
            return any(matches(ev, **want) for ev in self.written())

        await wait_until(found, what=f"the file sink to write {want}")
        return next(ev for ev in self.written() if matches(ev, **want))

    async def settled(self) -> None:
        """Wait until the start-up reconciliation is over: online, socket up (if any), no poll running/queued."""

        def idle() -> bool:
            runner = self.runtime.hubs[HUB].runner
            return (
                runner is not None
                and self.status.polls >= 1
                and self.status.state == "ok"
                and (self.connected or not self.cfg.hubs[0].eventsocket)  # type: ignore[attr-defined]
                and not runner.polling
                and not runner._reconcile.is_set()
                and runner._idle.is_set()
            )

        await wait_until(idle, what="the bridge to finish its start-up reconciliation")

    async def next_poll(self) -> None:
        """Request a reconciliation poll and wait until one more poll completed."""
        before = self.polls
        self.reconcile()
        await wait_until(lambda: self.polls > before, what="a reconciliation poll")


async def start_bridge(bridges: list[Bridge], tmp_path: Path, sim: HubitatSim, **hub: Any) -> Bridge:
    listen = hub.pop("listen", "127.0.0.1:0")
    top = hub.pop("top", None)
    b = Bridge(tmp_path, sim, listen=listen, top=top, **hub)
    bridges.append(b)
    await b.start()
    return b


async def start_posting_bridge(bridges: list[Bridge], tmp_path: Path, sim: HubitatSim, **hub: Any) -> Bridge:
    """A bridge that registers itself as the hub's POST-URL (on a port chosen here) and has settled."""
    port = free_port()
    b = await start_bridge(
        bridges,
        tmp_path,
        sim,
        listen=f"127.0.0.1:{port}",
        webhook_secret=SECRET,
        advertise_url=f"http://127.0.0.1:{port}",
        **hub,
    )
    await b.settled()
    await wait_until(lambda: sim.posted_url is not None, what="the bridge to register its POST-URL")
    return b


def log_lines(logs: list[dict[str, Any]], level: str | None = None, contains: str = "") -> list[dict[str, Any]]:
    out = []
    for entry in logs:
        if level is not None and entry.get("log_level") != level:
            continue
        if contains and contains not in json.dumps(entry, default=str):
            continue
        out.append(entry)
    return out


def inject_frame(sim: HubitatSim, frame: str) -> None:
    """Send one raw text frame on every open eventsocket (through the sim's ordered per-socket queue)."""
    sockets = list(sim._sockets)
    assert sockets, "no eventsocket is connected"
    for sock in sockets:
        sock.enqueue(frame)


def posturl_fixtures() -> dict[str, Any]:
    """The verbatim POST-URL bodies of hubitatmaker's tests/events.json (shared/fixtures/hubitat, packaged copy)."""
    data: dict[str, Any] = fixture_json("postURL_events.json")
    return data


# ------------------------------------------------------------------------------------------------ polling


async def test_poll_types_values_by_device_detail(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """/devices/all gives strings; the bridge types them per /devices/<id> dataType, and writes the contract."""
    assert sim.html_content_type, "Maker API JSON is served as text/html here, as a real hub does"
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False)
    await b.settled()
    # Every real attribute of every device, once (duplicates in /devices/<id> collapse), plus hub_status; but not
    # lockCodes, whose values are the users' PINs (forwarded only with sensitive_attributes: []).
    expected = {key for key in sim.state() if key[1] != "lockCodes"}
    await wait_until(
        lambda: {(e["device_id"], e["attribute"]) for e in b.written() if e["kind"] == "device"} == expected,
        what="the file sink to hold one event per hub attribute",
    )
    written = b.written()
    device_events = [e for e in written if e["kind"] == "device"]
    assert len(device_events) == len(expected), "one event per attribute, none twice"

    def value(device_id: str, attribute: str) -> Any:
        (ev,) = [e for e in device_events if e["device_id"] == device_id and e["attribute"] == attribute]
        assert ev["source"] == "reconcile" and ev["previous"] is None and ev["hub"] == HUB
        return ev["value"]

    # NUMBER: "29.0" -> 29.0, "73" -> 73 (hubitat2prom AllDeviceDetails.json shapes).
    assert value("1360", "temperature") == 29.0 and isinstance(value("1360", "temperature"), float)
    assert value("1360", "battery") == 73 and isinstance(value("1360", "battery"), int)
    assert value("130", "numberOfButtons") == 10
    assert value("32", "temperature") == 63.99
    # ENUM / STRING stay strings; an off-enum value ("fanAuto" is not in thermostatFanMode values) is kept.
    assert value("130", "switch") == "off"
    assert value("130", "syncStatus") == "1 Pending Changes"
    assert value("412", "thermostatFanMode") == "fanAuto"
    assert value("2178", "colorName") == "Red"
    assert value("412", "supportedThermostatModes") == ["auto", "cool", "emergency heat", "heat", "off"]
    # DECIMAL arrives as a string even in /devices/<id>; it is still a number.
    assert value("22", "fadingTime") == 5
    assert value("22", "detectionDelay") == 0.1
    # Null values are JSON null, not the string "None"/"null".
    assert value("130", "held") is None
    assert value("2178", "RGB") is None
    # The junk keys of /devices/all never become attributes.
    assert not [e for e in written if e["attribute"] in ("dataType", "values")]
    # Duplicate attributes in /devices/<id> (176 and 2178 list `switch` twice) give one event each.
    assert len([e for e in device_events if e["device_id"] == "176" and e["attribute"] == "switch"]) == 1
    assert len([e for e in device_events if e["device_id"] == "2178" and e["attribute"] == "switch"]) == 1
    # Contract: exactly the 14 fields, in order; ids are strings; labels and rooms come along.
    for ev in written:
        assert list(ev) == list(FIELDS) and len(ev) == 14, ev
        assert ev["hub_type"] == "hubitat"
        assert ev["device_id"] is None or isinstance(ev["device_id"], str)
    hygro = next(e for e in device_events if e["device_id"] == "1360")
    assert hygro["device"] == "Hygrometer - Living Room" and hygro["room"] == "Living Room"
    assert {(e["kind"], e["attribute"], e["value"]) for e in written if e["kind"] != "device"} >= {
        ("bridge", "hub_status", "online"),
        ("location", "mode", "Day"),
        ("location", "hsmStatus", "armedAway"),
    }
    # The same data is in the journal, with the same ids (the file sink writes journal records verbatim).
    assert [e["id"] for e in written] == [e["id"] for e in b.events]


async def test_unchanged_values_are_not_emitted_again_and_changes_keep_types(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """A re-poll of an unchanged hub yields nothing; a change names the previous value with its type."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False)
    await b.settled()
    before = len(b.events)
    await b.next_poll()
    assert len(b.events) == before, "a re-poll of an unchanged hub yields nothing"
    sim.set_attribute("1360", "temperature", 30.5, push=False)
    sim.set_attribute("130", "switch", "on", push=False)
    await b.next_poll()
    temp = await b.wait_written(device_id="1360", attribute="temperature", value=30.5)
    # Without a stream the poll is the source (only the first poll after start is a reconciliation).
    assert temp["previous"] == 29.0 and temp["source"] == "poll"
    switch = await b.wait_written(device_id="130", attribute="switch", value="on")
    assert switch["previous"] == "off"
    assert len(b.events) == before + 2


async def test_attribute_new_on_a_known_device_is_typed_too(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """A driver update adds an attribute: its values are typed like the others, on the push and the poll path."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.set_attribute("1360", "illuminance", 120)  # pushed over the eventsocket
    ev = await b.wait_written(device_id="1360", attribute="illuminance")
    assert ev["value"] == 120 and ev["source"] == "eventsocket"
    sim.set_attribute("130", "level", 55, push=False)  # only a poll sees it
    await b.next_poll()
    ev = await b.wait_written(device_id="130", attribute="level")
    assert ev["value"] == 55
    # Typed the same way from the start, so a later poll finds nothing changed.
    before = len(b.events)
    await b.next_poll()
    assert len(b.events) == before


@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_hub_kindness_detail_fetches_serial_and_polls_never_overlap(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], max_concurrency: int
) -> None:
    """Requests in flight stay within max_concurrency, polls never overlap, details are fetched once, one at a time."""
    sim.detail_hold = 0.02  # each detail request stays open a moment, so an overlap would be seen
    sim.response_delay = 0.01
    b = await start_bridge(bridges, tmp_path, sim, max_concurrency=max_concurrency)
    # Pushes for devices whose types are not learned yet, while the start-up poll is still learning the others:
    # the push path and the poll path both want details at once.
    await wait_until(lambda: b.connected, what="the eventsocket")
    for device_id, attribute, value in [("2178", "level", 90), ("412", "temperature", 75.0), ("22", "illuminance", 15)]:
        sim.set_attribute(device_id, attribute, value)
    await b.settled()
    # Stir: pushes while reconciliations are requested over and over.
    for i in range(5):
        sim.set_attribute("1360", "temperature", 20.0 + i)
        sim.set_attribute("130", "switch", "on" if i % 2 else "off")
        b.reconcile()
        await asyncio.sleep(0)
    await b.next_poll()
    await b.wait_event(device_id="1360", attribute="temperature", value=24.0)
    await b.wait_event(device_id="412", attribute="temperature", value=75.0)
    assert sim.max_in_flight <= max_concurrency
    assert sim.overlapping_polls == 0
    assert sim.detail_overlaps == 0
    details = [p for _, p in sim.requests if p.count("/") == 5 and p.split("/")[4] == "devices"]
    details = [p for p in details if p.split("/")[5] not in ("all", "*")]
    # One detail per device, learned once and remembered (not re-fetched on every poll).
    assert sorted(details) == sorted(f"/apps/api/{sim.app_id}/devices/{d}" for d in sim.devices())
    assert sim.count("/devices/all") >= 2


async def test_request_timeout_gives_clear_error_and_recovery(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """A hub slower than request_timeout goes offline with one clear line and comes back with the missed change."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False, request_timeout="1s")
    await b.settled()
    sim.response_delay = 1.5  # longer than request_timeout: every request must give up on its own
    sim.set_attribute("130", "switch", "on", push=False)
    b.reconcile()
    offline = await b.wait_event(kind="bridge", attribute="hub_status", value="offline")
    assert "within 1s" in offline["description"]
    assert offline["device_id"] is None
    failed = log_lines(logs, "warning", "hub poll failed")
    assert len(failed) == 1 and "within 1s" in failed[0]["error"]
    attempts = sim.count("/devices/all")
    # Polls never overlap: the second request after this point means the first retry has failed and was handled.
    await wait_until(lambda: sim.count("/devices/all") >= attempts + 2, what="a failed retry while the hub is slow")
    assert len(log_lines(logs, "warning", "hub poll failed")) == 1, "one line per outage, not one per retry"
    sim.response_delay = 0.0
    online = await b.wait_event(kind="bridge", attribute="hub_status", value="online", previous="offline")
    assert online["source"] == "poll"
    ev = await b.wait_written(device_id="130", attribute="switch", value="on")
    assert ev["previous"] == "off"
    assert not log_lines(logs, "error")


async def test_invalid_token_one_error_line_backoff_and_recovery(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """A refused token gives one error line, spaced retries, one offline event, and recovers without a restart."""
    sim.token_valid = False
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False)
    await wait_until(lambda: sim.count("/devices/all") >= 3, what="several attempts with an invalid token")
    errors = log_lines(logs, "error")
    assert len(errors) == 1, errors
    text = errors[0]["event"]
    assert "401" in text and "invalid_token" in text and "access_token" in text and "\n" not in text
    assert errors[0]["hub"] == HUB
    # Backoff: attempts are spaced, not a hot loop (spacing only grows on a slow machine).
    times = sim.times_of("/devices/all")
    assert all(later - earlier >= 0.1 for earlier, later in itertools.pairwise(times)), times
    offline = b.find(kind="bridge", attribute="hub_status", value="offline")
    assert len(offline) == 1
    assert not b.find(kind="device"), "nothing is read with a refused token"
    # The token is rotated in Maker API and becomes valid again: events flow without a restart.
    sim.token_valid = True
    await b.wait_event(kind="bridge", attribute="hub_status", value="online")
    await b.wait_written(device_id="1360", attribute="temperature", value=29.0)
    assert len(log_lines(logs, "error")) == 1
    # The token never reaches a log line (checked on the raw event dicts, before any redaction).
    assert logs and not [e for e in logs if TOKEN in json.dumps(e, default=str)]


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ("html_error", "HTTP 500"),
        ("malformed_json", "malformed JSON"),
        ("html_200", "an HTML page"),
        ("starting_up", "starting up"),
    ],
)
async def test_hub_faults_offline_then_online(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]], fault: str, expect: str
) -> None:
    """HTTP 500s, malformed JSON, HTML pages and a booting hub each give one line and recover with the missed change."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    if fault == "html_error":
        sim.html_error = 500
    elif fault == "html_200":
        sim.html_error = 200  # an HTML page with a 200 status: a captive portal or a hub UI page
    elif fault == "malformed_json":
        sim.malformed_json = True
    else:
        sim.starting_up = True
    sim.set_attribute("1360", "humidity", 44, push=False)  # a change the bridge can only learn by polling
    b.reconcile()
    offline = await b.wait_event(kind="bridge", attribute="hub_status", value="offline")
    assert expect in offline["description"]
    attempts = sim.count("/devices/all")
    # Polls never overlap: the second request after this point means the first retry has failed and was handled.
    await wait_until(lambda: sim.count("/devices/all") >= attempts + 2, what="a failed retry while the hub is faulty")
    failed = log_lines(logs, "warning", "hub poll failed")
    assert len(failed) == 1, failed
    assert expect in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert len(failed[0]["error"]) < 300, "a one-line summary, not a whole HTML page"
    assert not log_lines(logs, "error")
    sim.html_error, sim.malformed_json, sim.starting_up = None, False, False
    await b.wait_event(kind="bridge", attribute="hub_status", value="online", previous="offline")
    ev = await b.wait_written(device_id="1360", attribute="humidity", value=44)
    assert ev["previous"] == 18 and ev["source"] == "reconcile"
    # The bridge's view; a run of 500s is also the hub's own kind: hub degraded/online (test_storm.py).
    statuses = [e["value"] for e in b.written() if e["attribute"] == "hub_status" and e["kind"] == "bridge"]
    assert statuses == ["online", "offline", "online"]


# ------------------------------------------------------------------------------------------------ eventsocket


async def test_eventsocket_change_arrives_normalised(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """An eventsocket frame becomes a typed contract event with label, room, unit and description, without a poll."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    polls = b.polls
    sim.set_attribute("176", "switch", "on")
    sim.set_attribute("1360", "temperature", 31.5)
    ev = await b.wait_written(device_id="176", attribute="switch", value="on")
    assert ev["source"] == "eventsocket"
    assert ev["device_id"] == "176"  # an int on the wire
    assert ev["previous"] == "off"
    assert ev["unit"] is None  # "null" on the wire
    assert ev["description"] == "Loft Fan is on"
    assert ev["device"] == "Loft Fan" and ev["room"] == "Loft"
    assert list(ev) == list(FIELDS)
    temp = await b.wait_written(device_id="1360", attribute="temperature", value=31.5)
    assert temp["source"] == "eventsocket" and temp["previous"] == 29.0 and isinstance(temp["value"], float)
    assert temp["unit"] == "°C"
    assert b.polls == polls, "a push needs no poll"


async def test_eventsocket_null_strings_become_null(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """The eventsocket's "null" strings become JSON nulls."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    # A capture-shaped frame (helog README) for a device the hub has: "null" strings and an integer deviceId.
    inject_frame(
        sim,
        '{ "source":"DEVICE","name":"temperature","displayName" : "Hygrometer - Living Room", "value" : "20", '
        '"type" : "null", "unit":"null","deviceId":1360,"hubId":0,"installedAppId":0,"descriptionText" : "null"}',
    )
    ev = await b.wait_written(device_id="1360", attribute="temperature", value=20)
    assert ev["source"] == "eventsocket"
    assert ev["unit"] is None and ev["description"] is None and ev["previous"] == 29.0
    # A value of "null" is a null value, not the text "null".
    inject_frame(
        sim,
        '{ "source":"DEVICE","name":"syncStatus","displayName" : "Switch - Kitchen", "value" : "null", '
        '"type" : "null", "unit":"null","deviceId":130,"hubId":0,"installedAppId":0,"descriptionText" : "null"}',
    )
    ev = await b.wait_written(device_id="130", attribute="syncStatus", source="eventsocket")
    assert ev["value"] is None and ev["previous"] == "1 Pending Changes"


async def test_eventsocket_split_frames_are_reassembled(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """Frames split in two arrive as exactly one event each, in order."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.split_frame_rate = 1.0  # every frame arrives in two parts, cut at a random place
    values = [20.5 + i for i in range(30)]
    await sim.push_burst(("1360", "temperature", v) for v in values)
    await b.wait_event(device_id="1360", attribute="temperature", value=values[-1])
    got = [e["value"] for e in b.find(device_id="1360", attribute="temperature") if e["source"] == "eventsocket"]
    assert got == values, "every split frame became exactly one event, in order"
    assert not log_lines(logs, "warning", "malformed")


async def test_eventsocket_duplicate_frames_yield_one_event(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """Frames the hub sends twice become one event each (a button press included)."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.duplicate_frame_rate = 1.0  # every frame is sent twice
    await sim.push_burst([("176", "switch", "on"), ("176", "switch", "off"), ("176", "power", 12)])
    sim.set_attribute("130", "pushed", 3, is_state_change=True)  # a momentary button press
    await sim.wait_eventsockets_idle()
    await b.wait_written(device_id="130", attribute="pushed", value=3)
    await b.wait_written(device_id="176", attribute="power", value=12)
    switch = [(e["previous"], e["value"]) for e in b.find(device_id="176", attribute="switch")]
    assert switch == [(None, "off"), ("off", "on"), ("on", "off")]
    assert len(b.find(device_id="176", attribute="power", value=12)) == 1
    assert len(b.find(device_id="130", attribute="pushed", value=3)) == 1
    ids = [e["id"] for e in b.written()]
    assert len(ids) == len(set(ids))


async def test_eventsocket_app_frames_are_ignored(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """APP frames (app state) are not events."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    before = len(b.events)
    # An APP-sourced frame (helog capture) on the socket the bridge is connected to, then a device change.
    app_frame = (
        '{ "source":"APP","name":"eventWithDescription","displayName" : "null", "value" : "5", "type" : "null", '
        '"unit":"jiffy","deviceId":0,"hubId":0,"installedAppId":93,"descriptionText" : "This is an event"}'
    )
    inject_frame(sim, app_frame)
    sim.set_attribute("6", "contact", "closed")
    await b.wait_event(device_id="6", attribute="contact", value="closed")
    new = b.events[before:]
    assert [(e["device_id"], e["attribute"]) for e in new] == [("6", "contact")]


async def test_silent_socket_is_detected_and_reconciled(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """A socket that goes silent is declared dead, replaced, and the change it swallowed comes by reconciliation."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket_timeout="3s")
    await b.settled()
    connections = sim.eventsocket_connections
    sim.silent = True  # the hub rebooted without a FIN: the socket stays open and says nothing, not even pong
    sim.set_attribute("6", "contact", "closed")  # swallowed by the dead socket
    await wait_until(lambda: sim.eventsocket_connections > connections, what="the bridge to reconnect")
    sim.silent = False  # the hub is back to normal: the new socket answers pings and carries events
    down = log_lines(logs, "warning", "eventsocket down")
    assert down and "dead socket" in down[0]["reason"]
    # The reconciliation poll after the reconnect brings the change the dead socket swallowed.
    ev = await b.wait_written(device_id="6", attribute="contact", value="closed")
    assert ev["source"] == "reconcile" and ev["previous"] == "open"
    await b.settled()
    sim.set_attribute("6", "contact", "open")
    ev = await b.wait_written(device_id="6", attribute="contact", value="open", previous="closed")
    assert ev["source"] == "eventsocket", "the new socket carries events"


async def test_dropped_socket_reconnects_with_backoff_and_reconciles(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """Every reconnect after a drop runs a reconciliation poll that brings what the socket missed."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    for round_ in range(2):
        connections = sim.eventsocket_connections
        polls = b.polls
        value = 50 + round_
        sim.set_attribute("176", "power", value, push=False)  # missed: the socket never carried it
        await sim.drop_eventsockets()
        await wait_until(lambda c=connections: sim.eventsocket_connections > c, what="a reconnect")
        ev = await b.wait_written(device_id="176", attribute="power", value=value)
        assert ev["source"] == "reconcile"
        assert b.polls > polls, "every reconnect runs a reconciliation poll"
    down = log_lines(logs, "warning", "eventsocket down")
    assert len(down) >= 2 and all(d["retry_in"] > 0 for d in down)
    assert not log_lines(logs, "error")


async def test_restart_reconciles_only_what_changed(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """A restart emits only what changed while the bridge was down, as source reconcile."""
    first = await start_bridge(bridges, tmp_path, sim)
    await first.settled()
    await first.wait_written(device_id="412", attribute="temperature", value=74.0)
    await first.stop()
    written = len(first.written())
    assert written == len(first.events)
    # While the bridge is down: one change nobody hears about.
    sim.set_attribute("412", "temperature", 71.5, push=False)
    second = await start_bridge(bridges, tmp_path, sim)
    await second.settled()
    ev = await second.wait_written(device_id="412", attribute="temperature", value=71.5)
    assert ev["source"] == "reconcile" and ev["previous"] == 74.0
    await second.next_poll()
    await second.stop()
    after = first.written()[written:]
    assert [(e["device_id"], e["attribute"], e["value"]) for e in after] == [("412", "temperature", 71.5)], after
    assert second.events == after
    # New ids never collide with the ones written by the first run.
    ids = [e["id"] for e in first.written()]
    assert len(ids) == len(set(ids))


async def test_location_and_hub_events(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """Mode, HSM status and alerts are location events; systemStart is a hub event and brings a reconciliation."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.set_mode("Evening")
    mode = await b.wait_written(kind="location", attribute="mode", value="Evening")
    assert mode["device_id"] is None and mode["previous"] == "Day" and mode["source"] == "eventsocket"
    assert mode["description"] == "Home is now in Evening mode"
    sim.set_hsm("disarmed")
    hsm = await b.wait_written(kind="location", attribute="hsmStatus", value="disarmed")
    assert hsm["device_id"] is None and hsm["previous"] == "armedAway"
    sim.hsm_alert("intrusion")
    alert = await b.wait_written(kind="location", attribute="hsmAlert", value="intrusion")
    assert alert["device_id"] is None and alert["device"] is None
    # A reboot: a change made while the hub was down only shows up through the poll systemStart triggers.
    polls = b.polls
    sim.set_attribute("32", "water", "wet", push=False)
    sim.system_start()
    start = await b.wait_written(kind="hub", attribute="systemStart")
    assert start["value"] == sim.firmware and start["device_id"] is None and start["source"] == "eventsocket"
    wet = await b.wait_written(device_id="32", attribute="water", value="wet")
    assert wet["source"] == "reconcile" and wet["previous"] == "dry"
    assert b.polls > polls
    for ev in b.written():
        assert list(ev) == list(FIELDS)


# ------------------------------------------------------------------------------------------------ POST-URL


async def test_post_url_intake_commits_before_200(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession
) -> None:
    # A slow group commit: a 200 sent before the commit would arrive well before the event is in the journal.
    """A POST-URL request is answered 200 only once its event is committed (and a repeated POST adds nothing)."""
    b = await start_bridge(
        bridges, tmp_path, sim, eventsocket=False, webhook_secret=SECRET, top={"journal": {"commit_window": "300ms"}}
    )
    await b.settled()
    fixtures = posturl_fixtures()
    journal = b.runtime.journal
    for key, want in [
        ("device", {"kind": "device", "device_id": "176", "attribute": "switch", "value": "on", "previous": "off"}),
        ("mode", {"kind": "location", "device_id": None, "attribute": "mode", "value": "Evening"}),
        ("hsmAllDisarmed", {"kind": "location", "attribute": "hsmStatus", "value": "allDisarmed"}),
    ]:
        head = journal.head
        seen = len(b.events)
        async with http.post(b.post_url(), json=fixtures[key]) as resp:
            # The moment the 200 arrives the event is committed: in the journal and given to listeners.
            head_at_response = journal.head
            delivered_to_listeners = b.events[seen:]
            committed = [r.event() for r in await journal.read(head, 100, 1 << 20)]
            assert resp.status == 200, await resp.text()
        assert head_at_response == head + 1
        assert [matches(e, **want) for e in committed] == [True], (key, committed)
        assert committed[0]["source"] == "webhook"
        assert delivered_to_listeners == committed
        assert committed[0]["description"] == fixtures[key]["content"]["descriptionText"]
    ev = await b.wait_written(device_id="176", attribute="switch", value="on")
    assert ev["device"] == "Loft Fan" and ev["source"] == "webhook" and ev["room"] == "Loft"
    # The same POST again (Maker API has no dedupe either): 200, no second event.
    head = journal.head
    async with http.post(b.post_url(), json=fixtures["device"]) as resp:
        assert resp.status == 200
    assert journal.head == head
    # A NUMBER attribute arrives as a string and is typed like every other path.
    body = {"content": {"name": "power", "value": "7.5", "displayName": "Loft Fan", "deviceId": "176", "unit": "W"}}
    async with http.post(b.post_url(), json=body) as resp:
        assert resp.status == 200
    power = b.find(device_id="176", attribute="power")[-1]
    assert power["value"] == 7.5 and power["previous"] == 0 and power["unit"] == "W"


async def test_post_url_rejects_wrong_secret_and_bad_bodies(
    tmp_path: Path,
    sim: TrackingSim,
    bridges: list[Bridge],
    http: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    """Wrong secrets and unknown hubs get the very same 404 (nothing tells which hub names exist), bad bodies a 400
    with one line; nothing is recorded and no secret logged."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False, webhook_secret=SECRET)
    await b.settled()
    head = b.runtime.journal.head
    body = posturl_fixtures()["device"]
    answers = set()
    for url in (b.post_url(secret="wrong"), b.post_url(hub="nohub"), b.post_url(secret=SECRET + "x")):
        async with http.post(url, json=body) as resp:
            answers.add((resp.status, resp.content_type, await resp.text()))
    # Another method on the hub's path must not give it away either (a 405 would say the route exists).
    async with http.get(b.post_url(secret="wrong")) as resp:
        answers.add((resp.status, resp.content_type, await resp.text()))
    assert answers == {(404, "text/plain", "not found")}
    before = len(logs)
    async with http.post(b.post_url(), data=b"<html>not json</html>", headers={"Content-Type": "text/html"}) as resp:
        assert resp.status == 400
    lines = [e for e in logs[before:] if "not JSON" in e.get("reason", "")]
    assert len(lines) == 1 and lines[0]["log_level"] == "warning"
    assert "\n" not in json.dumps(lines[0])
    async with http.post(b.post_url(), json={"no": "content"}) as resp:
        assert resp.status == 400
    assert b.runtime.journal.head == head, "nothing rejected was recorded"
    assert not [e for e in logs if SECRET in json.dumps(e, default=str)], "the webhook secret is never logged"


async def test_sim_post_delivery_end_to_end(tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]) -> None:
    """The hub's own POSTs (after the bridge registered its POST-URL) are answered 200 and recorded."""
    port = free_port()
    advertise = f"http://127.0.0.1:{port}"
    b = await start_bridge(
        bridges,
        tmp_path,
        sim,
        listen=f"127.0.0.1:{port}",
        eventsocket=False,
        webhook_secret=SECRET,
        advertise_url=advertise,
    )
    await b.settled()
    await wait_until(lambda: sim.posted_url is not None, what="the bridge to register its POST-URL")
    assert sim.posted_url == f"{advertise}/hubitat/{HUB}/{quote(SECRET, safe='')}"
    sim.set_attribute("6", "contact", "closed")
    sim.set_attribute("1360", "humidity", 55)
    sim.set_mode("Night")
    await sim.wait_posts_idle()
    assert [status for _, status in sim.post_results] == [200, 200, 200]
    contact = await b.wait_written(device_id="6", attribute="contact", value="closed")
    assert contact["source"] == "webhook" and contact["previous"] == "open"
    humidity = await b.wait_written(device_id="1360", attribute="humidity", value=55)
    assert humidity["source"] == "webhook" and humidity["unit"] == "%"
    mode = await b.wait_written(kind="location", attribute="mode", value="Night")
    assert mode["source"] == "webhook" and mode["device_id"] is None
    # A reboot announced by POST (no eventsocket here) also triggers the reconciliation poll.
    polls = b.polls
    sim.set_attribute("32", "water", "wet", push=False)
    sim.system_start()
    await sim.wait_posts_idle()
    start = await b.wait_written(kind="hub", attribute="systemStart")
    assert start["source"] == "webhook" and start["value"] == sim.firmware
    wet = await b.wait_written(device_id="32", attribute="water", value="wet")
    assert wet["source"] == "poll" and b.polls > polls
    assert all(status == 200 for _, status in sim.post_results)


async def test_post_url_registration_retries_and_never_logs_the_secret(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """Registering the POST-URL retries until the hub takes it, and never logs the secret."""
    port = free_port()
    sim.token_valid = False  # Maker API refuses at first: the registration must retry, not give up
    b = await start_bridge(
        bridges,
        tmp_path,
        sim,
        listen=f"127.0.0.1:{port}",
        eventsocket=False,
        webhook_secret=SECRET,
        advertise_url=f"http://127.0.0.1:{port}",
    )
    await wait_until(lambda: sim.count_prefix(f"/apps/api/{sim.app_id}/postURL/") >= 2, what="registration retries")
    retries = log_lines(logs, "warning", "cannot register the POST-URL")
    assert retries and "401" in retries[0]["error"]
    sim.token_valid = True
    await wait_until(lambda: sim.posted_url is not None, what="the registration")
    await b.settled()
    sim.set_attribute("176", "switch", "on")
    await sim.wait_posts_idle()
    assert [status for _, status in sim.post_results] == [200]
    await b.wait_written(device_id="176", attribute="switch", value="on", source="webhook")
    secrets = (SECRET, quote(SECRET, safe=""), quote(quote(SECRET, safe=""), safe=""), TOKEN)
    leaked = [e for e in logs if any(x in json.dumps(e, default=str) for x in secrets)]
    assert not leaked, leaked


async def test_same_change_via_socket_duplicate_post_and_poll_is_one_event(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """One change seen over the eventsocket, POST-URL and a poll is one event."""
    b = await start_posting_bridge(bridges, tmp_path, sim)
    sim.duplicate_frame_rate = 1.0
    sim.set_attribute("2178", "level", 40)
    sim.set_attribute("130", "pushed", 4, is_state_change=True)
    await sim.wait_eventsockets_idle()
    await sim.wait_posts_idle()
    assert [status for _, status in sim.post_results] == [200, 200]
    await b.next_poll()
    await b.wait_written(device_id="130", attribute="pushed", value=4)
    level = [e for e in b.written() if e["device_id"] == "2178" and e["attribute"] == "level"]
    assert [(e["previous"], e["value"]) for e in level] == [(None, 100), (100, 40)]
    assert level[1]["source"] in ("eventsocket", "webhook")
    pushed = [e for e in b.written() if e["device_id"] == "130" and e["attribute"] == "pushed"]
    assert [e["value"] for e in pushed] == [1, 4]


async def test_webhook_change_while_socket_is_dead_is_not_taken_for_a_copy(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """Both push channels on; the socket repeats frames, then dies silently. Every POST is still recorded."""
    # The dead socket is not noticed during this test: only POST-URL works.
    b = await start_posting_bridge(bridges, tmp_path, sim, eventsocket_timeout="60s")
    sim.duplicate_frame_rate = 1.0
    sim.set_attribute("176", "switch", "on")
    await sim.wait_eventsockets_idle()
    await sim.wait_posts_idle()
    sim.silent = True
    sim.set_attribute("176", "switch", "off")
    sim.set_attribute("176", "switch", "on")
    await sim.wait_posts_idle()
    assert [status for _, status in sim.post_results] == [200, 200, 200]
    # Each 200 means "committed", so the hub's last state is already in the journal.
    switch = [(e["previous"], e["value"]) for e in b.find(device_id="176", attribute="switch")]
    assert switch == [(None, "off"), ("off", "on"), ("on", "off"), ("off", "on")]


# ------------------------------------------------------------------------------------------------ options, limits


async def test_location_events_off_ignores_them_on_every_path(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession
) -> None:
    """location_events: false keeps mode and HSM out on the eventsocket, POST-URL and poll paths."""
    b = await start_bridge(bridges, tmp_path, sim, webhook_secret=SECRET, location_events=False)
    await b.settled()
    sim.set_mode("Evening")
    sim.set_attribute("176", "switch", "on")
    await b.wait_written(device_id="176", attribute="switch", value="on")
    async with http.post(b.post_url(), json=posturl_fixtures()["hsmArmedAway"]) as resp:
        assert resp.status == 200  # answered, so the hub does not log failures, but not recorded
    await b.next_poll()
    assert not b.find(kind="location"), "location events were switched off"
    assert not [r for r in sim.requests if r[1].endswith(("/modes", "/hsm"))], "modes and HSM are not polled"
    # Hub events are not location events: a reboot is still reported.
    sim.system_start()
    await b.wait_written(kind="hub", attribute="systemStart")


async def test_push_before_types_are_known_keeps_numbers_stable(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    # The hub refuses Maker API (so no dataType can be learned) while the eventsocket still streams.
    """A number pushed before its type is known stays the same number once the type is learned."""
    sim.token_valid = False
    b = await start_bridge(bridges, tmp_path, sim)
    await wait_until(lambda: b.connected, what="the eventsocket to connect")
    sim.set_attribute("1360", "temperature", 30.5)
    ev = await b.wait_written(device_id="1360", attribute="temperature")
    assert ev["value"] == 30.5, "a numeric text is a number even before its dataType is known"
    # Once the token works again the poll learns the real types: no spurious "30.5" -> 30.5 change.
    sim.token_valid = True
    await b.next_poll()
    await b.settled()
    assert [e["value"] for e in b.find(device_id="1360", attribute="temperature")] == [30.5]


async def test_oversized_post_is_refused_and_the_bridge_keeps_going(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession
) -> None:
    """A POST over the body limit gets 413 and the next POST is answered as usual."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False, webhook_secret=SECRET)
    await b.settled()
    huge = {"content": {"name": "switch", "value": "x" * (2 * 1024 * 1024), "deviceId": "176"}}
    async with http.post(b.post_url(), json=huge) as resp:
        assert resp.status == 413
    async with http.post(b.post_url(), json=posturl_fixtures()["device"]) as resp:
        assert resp.status == 200
    await b.wait_written(device_id="176", attribute="switch", value="on", source="webhook")


# -------------------------------------------------------------------------------- defects of the first release


def devices_all_with(sim: HubitatSim, device_id: str, attribute: str, text: str) -> str:
    """The hub's own /devices/all answer with one attribute's value replaced by ``text`` (raw JSON text)."""
    import urllib.request

    url = f"{sim.url}/apps/api/{sim.app_id}/devices/all?access_token={sim.access_token}"
    with urllib.request.urlopen(url) as resp:  # loopback: the simulator
        devices = json.loads(resp.read())
    for item in devices:
        if item["id"] == device_id:
            item["attributes"][attribute] = "@@"
    return json.dumps(devices).replace('"@@"', text)


async def test_a_nan_in_one_value_stops_neither_the_hub_nor_another_hubs_commits(tmp_path: Path) -> None:
    """A JSON_OBJECT holding NaN is stored as text; the hub keeps polling and another hub's events still commit."""
    async with HubitatSim(access_token=TOKEN) as bad, HubitatSim(access_token=TOKEN) as good:
        bad.set_attribute("93", "lockCodes", '{"1":{"code":"0000","name":"AJ"}}', push=False)
        body = await asyncio.to_thread(devices_all_with, bad, "412", "supportedThermostatModes", '"[NaN, Infinity]"')
        bad.raw_responses["devices/all"] = (200, body)
        hub = {"type": "hubitat", "app_id": 12, "access_token": TOKEN, "eventsocket": True, "backoff_max": "1s"}
        config = {
            "state_dir": str(tmp_path / "state"),
            "listen": "127.0.0.1:0",
            "hubs": [{"name": "bad", "url": bad.url, **hub}, {"name": "good", "url": good.url, **hub}],
            "sinks": [{"name": "archive", "type": "file", "path": str(tmp_path / "e.jsonl"), "fsync": False}],
        }
        path = tmp_path / "hubbridge.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        events: list[Event] = []
        runtime = Runtime(load_config(path, env={}), on_events=events.extend)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            polled = lambda: len(runtime.hubs) == 2 and all(s.status.polls >= 1 for s in runtime.hubs.values())  # noqa: E731
            await wait_until(polled, what="both hubs polled")
            modes = [e for e in events if e.hub == "bad" and e.attribute == "supportedThermostatModes"]
            assert [m.value for m in modes] == [["NaN", "Infinity"]], [  # never float NaN: the hub's words
                (e.device_id, e.attribute, e.value) for e in events if e.hub == "bad"
            ]
            good.set_attribute("176", "switch", "on")
            bad.set_attribute("176", "switch", "on")
            await wait_until(
                lambda: (
                    {(e.hub, e.value) for e in events if e.attribute == "switch"} >= {("good", "on"), ("bad", "on")}
                ),
                what="both hubs' pushes",
            )
            assert all(s.status.restarts == 0 and s.status.state == "ok" for s in runtime.hubs.values())
            ok, _ = runtime.health()
            assert ok
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@pytest.mark.parametrize(
    "frame",
    [
        '{"source":"DEVICE","name":"temperature","displayName":"X","value":NaN,"deviceId":1360,"descriptionText":"null","unit":"null"}',
        '{"source":"DEVICE","name":"temperature","displayName":"X","value":Infinity,"deviceId":1360,"unit":"null"}',
        '{"source":"DEVICE","name":"label","displayName":"Lamp \\ud83d","value":"\\ud83d","deviceId":1360}',
        "[" * 1000 + "]" * 1000,
        "{" + '"a":{' * 1000 + "}" * 1001,
        '"',
    ],
    ids=["nan", "infinity", "lone-surrogate", "deep-array", "deep-object", "lone-quote"],
)
async def test_one_bad_eventsocket_frame_stops_nothing(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession, frame: str
) -> None:
    """A frame with NaN, Infinity, half an emoji, 1000-deep nesting or a lone quote: later frames and POSTs land."""
    b = await start_bridge(bridges, tmp_path, sim, webhook_secret=SECRET)
    await b.settled()
    connections = sim.eventsocket_connections
    assert sim.inject_frame(frame) == 1
    sim.set_attribute("176", "switch", "on")  # the next valid frame
    ev = await b.wait_written(device_id="176", attribute="switch", value="on")
    assert ev["source"] == "eventsocket"
    body = {"content": {"name": "power", "value": "9", "displayName": "Loft Fan", "deviceId": "176", "unit": "W"}}
    async with asyncio.timeout(5), http.post(b.post_url(), json=body) as resp:
        assert resp.status == 200
    assert sim.eventsocket_connections == connections, "the reader did not crash and reconnect"
    assert b.status.restarts == 0

    def not_json(constant: str) -> None:
        raise AssertionError(f"{constant} in the event file: not JSON")

    lines = b.sink_path.read_bytes().splitlines()
    assert lines
    for raw in lines:
        json.loads(raw.decode("utf-8"), parse_constant=not_json)  # every line is UTF-8 JSON, without NaN/Infinity


async def test_deep_nesting_in_a_post_or_a_poll_answer_is_one_clear_line(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession, logs: list[dict[str, Any]]
) -> None:
    """JSON nested 1000 deep gives a 400 for a POST and an offline hub for a poll, each with one line, no traceback."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False, webhook_secret=SECRET)
    await b.settled()
    deep = '{"content":' + "[" * 1000 + "]" * 1000 + "}"
    async with http.post(b.post_url(), data=deep, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
    sim.raw_responses["devices/all"] = (200, "[" * 1000 + "]" * 1000)
    b.reconcile()
    offline = await b.wait_event(kind="bridge", attribute="hub_status", value="offline")
    assert "nested too deeply" in offline["description"]
    assert b.status.restarts == 0
    (post,) = [e for e in logs if e["event"] == "POST-URL body ignored"]
    assert post["log_level"] == "warning" and "nested too deeply" in post["reason"]
    (poll,) = log_lines(logs, "warning", "hub poll failed")
    assert "nested too deeply" in poll["error"]
    # log.exception() shows up as exc_info in captured entries: no line carries a traceback.
    assert not [e for e in logs if "exc_info" in e or "exception" in e]


async def test_unknown_devices_never_hold_back_known_ones(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """Events of devices whose types are still being learned (a slow /devices/<id>) do not delay other devices."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.detail_delay = 3600.0  # the detail fetches hang until request_timeout (2 s) gives up on them
    for n in range(2):
        sim.inject_frame(
            f'{{"source":"DEVICE","name":"temperature","displayName":"New {n}","value":"2{n}.5","deviceId":{9000 + n},'
            '"descriptionText":"null","unit":"null","type":"null","data":"null"}'
        )
    sim.set_attribute("176", "switch", "on")  # a known device, right behind them
    await b.wait_written(device_id="176", attribute="switch", value="on")
    # Written while the new devices' events still wait for their details: it did not queue behind them.
    assert not b.find(device_id="9000") and not b.find(device_id="9001")
    # The new devices' events arrive too once the fetch gave up, typed by a guess.
    for n in range(2):
        ev = await b.wait_written(device_id=str(9000 + n), attribute="temperature")
        assert ev["value"] == 20 + n + 0.5


async def test_a_flood_of_unknown_device_ids_has_a_fetch_budget(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """2000 frames with unseen device ids cost the hub a bounded number of detail requests, and each is recorded.

    (That they do not hold back known devices is test_unknown_devices_never_hold_back_known_ones.)
    """
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    before = sim.count_prefix(f"/apps/api/{sim.app_id}/devices/9")
    for n in range(2000):
        sim.inject_frame(
            f'{{"source":"DEVICE","name":"switch","displayName":"D","value":"on","deviceId":{900000 + n}}}'
        )
    sim.set_attribute("176", "switch", "on")
    await b.wait_written(device_id="176", attribute="switch", value="on")
    await wait_until(lambda: len(b.find(attribute="switch", value="on")) >= 2001, what="every flooded event")
    details = sim.count_prefix(f"/apps/api/{sim.app_id}/devices/9") - before
    assert details <= 30, f"{details} detail requests for a flood of unknown ids"


async def test_oversized_values_are_refused_alone_and_memory_stays_bounded(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """Frames of 900 KB (each under the frame limit) are refused one by one; later frames arrive; nothing piles up."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    big = "x" * 900_000
    for n in range(20):
        sim.inject_frame(f'{{"source":"DEVICE","name":"note","displayName":"D","value":"{n}{big}","deviceId":176}}')
    sim.set_attribute("176", "switch", "on")
    await b.wait_written(device_id="176", attribute="switch", value="on")
    assert not b.find(attribute="note")
    refused = [e for e in logs if e.get("log_level") == "error" and "cannot be stored" in e["event"]]
    assert 1 <= len(refused) <= 2, "one line per problem, not one per frame"
    assert all(len(json.dumps(e, default=str)) < 2000 for e in logs), "log lines are bounded"
    assert b.runtime.journal.pending_bytes < 1024**2


async def test_log_lines_are_bounded_and_repeats_rate_limited(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], log_stream: io.StringIO
) -> None:
    """A 200 000-character device id cannot make a 400 KB log line; 500 systemStart frames are not 500 lines.

    Checked on the JSON lines ``hubbridge run`` writes (its real logging set-up), not on captured dicts.
    """
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    huge = "9" * 200_000
    sim.inject_frame(
        '{"source":"DEVICE","name":"switch","displayName":"D","value":['
        + "[" * 40
        + "]" * 40
        + '],"deviceId":'
        + huge
        + "}"
    )
    for _ in range(500):
        sim.inject_frame(
            '{"source":"LOCATION","name":"systemStart","displayName":"Home","value":"2.4.4.156","deviceId":0}'
        )
    sim.set_attribute("176", "switch", "on")
    await b.wait_written(device_id="176", attribute="switch", value="on")
    lines = log_stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    restarted = [e for e in entries if e["event"] == "hub restarted"]
    assert 1 <= len(restarted) <= 2
    refused = [e for e in entries if e["event"].startswith("refused an event")]
    assert refused and "99999" in refused[0]["device_id"], "the huge frame was logged, and cut"
    assert max(len(line) for line in lines) < 4000, "no log line near the size of the frame"


async def test_stop_commits_what_the_eventsocket_queued(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """SIGTERM right after a burst of button presses keeps every press (no reconciliation could bring them back)."""
    b = await start_bridge(bridges, tmp_path, sim)
    await b.settled()
    changes = [("130", "pushed", (n % 9) + 1) for n in range(3000)]
    before, emitted = b.status.pushed, sim.events_emitted
    await sim.push_burst(changes)
    sent = sim.events_emitted - emitted  # the hub skips the first, equal to the current value
    # Stop the moment the bridge has read them all off the socket: most are still queued, not yet committed.
    await wait_until(lambda: b.status.pushed >= before + sent, what="the bridge read every frame")
    await b.stop()
    presses = [e for e in b.written() if e["attribute"] == "pushed" and e["source"] == "eventsocket"]
    # Each frame is a press; only exact repeats within a second would collapse, and consecutive presses differ.
    assert sent >= 2999 and len(presses) == sent


async def test_lock_codes_are_not_forwarded_unless_asked(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession
) -> None:
    """lockCodes (every user's PIN) is left out on every path by default; sensitive_attributes: [] forwards it."""
    b = await start_bridge(bridges, tmp_path, sim, webhook_secret=SECRET)
    await b.settled()
    sim.set_attribute("93", "lockCodes", '{"1":{"code":"1234","name":"AJ"}}')
    body = {"content": {"name": "lockCodes", "value": '{"1":{"code":"4321"}}', "deviceId": "93", "displayName": "L"}}
    async with http.post(b.post_url(), json=body) as resp:
        assert resp.status == 200
    await b.next_poll()
    sim.set_attribute("176", "switch", "on")
    await b.wait_written(device_id="176", attribute="switch", value="on")
    assert not b.find(attribute="lockCodes")
    # Not anywhere in what was written: ids and times are numbers that may contain the digits by chance.
    lines = [json.loads(line) for line in b.sink_path.read_text(encoding="utf-8").splitlines()]
    assert lines and not [ev for ev in lines if "1234" in json.dumps({**ev, "id": None, "time": None})]
    await b.stop()
    bridges.remove(b)
    (tmp_path / "opt-in").mkdir()
    opt_in = await start_bridge(bridges, tmp_path / "opt-in", sim, sensitive_attributes=[])
    await opt_in.settled()
    codes = await opt_in.wait_written(device_id="93", attribute="lockCodes")
    assert codes["value"]["1"]["code"] == "1234"


async def test_a_failed_poll_commit_does_not_turn_a_genuine_post_into_a_copy(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], http: aiohttp.ClientSession
) -> None:
    """A poll whose commit failed leaves no note behind: the same change then POSTed is recorded, and only then 200."""
    b = await start_bridge(bridges, tmp_path, sim, webhook_secret=SECRET)
    await b.settled()
    journal = b.runtime.journal
    await journal._call(lambda: journal.db.execute("PRAGMA query_only=1"))
    sim.set_attribute("6", "contact", "closed", push=False)
    b.reconcile()
    await wait_until(
        lambda: b.status.detail.startswith("journal") or "journal" in b.status.detail, what="the poll commit failed"
    )
    body = {"content": {"name": "contact", "value": "closed", "displayName": "Office Door", "deviceId": "6"}}
    pushed = b.status.pushed
    post = asyncio.ensure_future(http.post(b.post_url(), json=body))
    # The POST is read and queued while nothing can be written; only then does the journal work again.
    await wait_until(lambda: b.status.pushed > pushed, what="the POST to be queued")
    await journal._call(lambda: journal.db.execute("PRAGMA query_only=0"))
    async with asyncio.timeout(20):
        resp = await post
    assert resp.status == 200
    resp.release()

    def committed() -> Any:
        row = journal.db.execute(
            "SELECT value FROM state WHERE hub = ? AND device_id = '6' AND attribute = 'contact'", (HUB,)
        ).fetchone()
        return json.loads(row[0])

    # Answered 200 only once the change is durable (a "copy" of the failed poll would have been answered at once).
    assert await journal._call(committed) == "closed"
    ev = await b.wait_written(device_id="6", attribute="contact", value="closed")
    assert ev["previous"] == "open"
    assert len(b.find(device_id="6", attribute="contact", value="closed")) == 1


async def test_misleading_hub_errors_say_what_is_likely_wrong(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """A wrong app_id says to check app_id; https:// to a plain-HTTP hub says it does not speak TLS."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False, app_id=sim.app_id + 1)
    offline = await b.wait_event(kind="bridge", attribute="hub_status", value="offline")
    assert "no Maker API app" in offline["description"] and "check app_id" in offline["description"]
    await b.stop()
    bridges.remove(b)
    (tmp_path / "tls").mkdir()
    tls = await start_bridge(bridges, tmp_path / "tls", sim, eventsocket=False, url=sim.url.replace("http:", "https:"))
    offline = await tls.wait_event(kind="bridge", attribute="hub_status", value="offline")
    assert "does not speak TLS" in offline["description"] and "http://" in offline["description"]


async def test_a_transient_journal_error_leaves_post_url_acknowledgements_working(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """After the journal failed for a moment, every POST (copies of eventsocket events included) is answered 200."""
    b = await start_posting_bridge(bridges, tmp_path, sim)
    journal = b.runtime.journal
    await journal._call(lambda: journal.db.execute("PRAGMA query_only=1"))
    sim.set_attribute("6", "contact", "closed")  # both channels carry it while the journal cannot write
    await wait_until(lambda: b.status.pushed >= 1, what="the eventsocket copy was read")
    await journal._call(lambda: journal.db.execute("PRAGMA query_only=0"))
    await b.wait_written(device_id="6", attribute="contact", value="closed")
    sim.post_results.clear()
    for n in range(20):
        sim.set_attribute("1360", "humidity", 30 + n)
    await sim.wait_posts_idle(timeout=20)
    assert [status for _, status in sim.post_results] == [200] * 20, "each answered for its own commit, at once"
    await b.wait_written(device_id="1360", attribute="humidity", value=49)
    assert len(b.find(device_id="6", attribute="contact", value="closed")) == 1
    assert b.status.restarts == 0


class MuteSocketSim(TrackingSim):
    """A hub whose /eventsocket accepts the TCP connection and then never answers the upgrade."""

    async def _handle_eventsocket(self, request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_an_eventsocket_handshake_that_never_answers_times_out(tmp_path: Path, bridges: list[Bridge]) -> None:
    """A hub that takes the connection but never completes the WebSocket upgrade costs request_timeout, not 300 s."""
    async with MuteSocketSim(access_token=TOKEN) as mute:
        b = await start_bridge(bridges, tmp_path, mute, request_timeout="1s")
        await wait_until(
            lambda: "within 1s" in b.status.streams.get("eventsocket", {}).get("detail", ""),
            what="the handshake to time out",
        )
        await wait_until(lambda: mute.count("/eventsocket") >= 2, what="a second attempt")
        await b.stop()
