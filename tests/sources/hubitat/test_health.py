"""Hub health as data: the admin endpoints' formats parsed from the fixtures, and health rounds over real sockets.

Parsers are pure and checked against the captured payloads (hubitat.md 4 and shared/fixtures/hubitat); the rounds
run the real Runtime against the simulator, which serves the same formats (see test_hub.py for the harness).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from bridge.sim.hubitat import fixture_json, fixture_text
from bridge.sources.hubitat.health import (
    HealthFormatError,
    parse_float,
    parse_hub_data,
    parse_int,
    parse_memory_csv,
)
from tests.helpers import wait_until
from tests.sources.hubitat.test_hub import Bridge, TrackingSim, log_lines, start_bridge

C8_VALUES = [
    ("free_os_memory", 1209796, "KB"),
    ("cpu_load_5m", 1.2, None),
    ("java_heap_total", 174384, "KB"),
    ("java_heap_free", 5897, "KB"),
    ("java_direct", 22091, "KB"),
]
BASE_MODEL = {"zigbeeStatus": "enabled", "zwaveStatus": "false", "cloudDisconnected": False, "devMode": False}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconciliations back to back and short retries; tests/sources proves the floors themselves."""
    monkeypatch.setattr("bridge.sources.runner.MIN_RECONCILE_GAP", 0.0)
    monkeypatch.setattr("bridge.sources.base.HUB_RETRY_FLOOR", 0.2)


class GatedSim(TrackingSim):
    """TrackingSim whose Maker API requests wait for ``gate`` (open by default): a poll stuck at the hub."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0

    async def _handle_maker(self, request: web.Request) -> web.StreamResponse:
        self.held += 1
        try:
            await self.gate.wait()
        finally:
            self.held -= 1
        return await super()._handle_maker(request)


@pytest.fixture
async def sim() -> AsyncIterator[GatedSim]:
    hub = GatedSim(access_token="health-t0ken")
    await hub.start()
    try:
        yield hub
    finally:
        hub.gate.set()
        await hub.stop()


@pytest.fixture
async def bridges() -> AsyncIterator[list[Bridge]]:
    started: list[Bridge] = []
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


@pytest.fixture
def logs() -> Any:
    with structlog.testing.capture_logs() as entries:
        yield entries


def hub_events(b: Bridge, attribute: str) -> list[dict[str, Any]]:
    return b.find(kind="hub", attribute=attribute)


async def health_round(b: Bridge) -> None:
    """Ask for a health round now and wait until it answered."""
    before = b.status.health_rounds
    b.runner.health_soon("test")
    await wait_until(lambda: b.status.health_rounds > before, what="a health round")


# ------------------------------------------------------------------------------------------------ formats


def test_the_c8_pro_memory_csv_fixture_gives_every_column_typed_with_units() -> None:
    """freeOSMemoryLast on a C-8 Pro: free OS memory, 5-minute load, Java heap total/free and direct, in KB."""
    assert parse_memory_csv(fixture_text("freeOSMemoryLast_c8pro.csv")) == C8_VALUES


def test_the_c4_memory_csv_has_no_direct_java_and_history_takes_the_latest_row() -> None:
    """The C-4's 5-column CSV lacks Direct Java (read by header, not position); the History form's last row wins."""
    c4 = "Date/time,Free OS,5m CPU avg,Total Java,Free Java\n04-12 03:25:19,312044,0.61,98304,20480\n"
    assert parse_memory_csv(c4) == [
        ("free_os_memory", 312044, "KB"),
        ("cpu_load_5m", 0.61, None),
        ("java_heap_total", 98304, "KB"),
        ("java_heap_free", 20480, "KB"),
    ]
    history = fixture_text("freeOSMemoryLast_c8pro.csv") + "\r\n04-12 03:30:19,1200000,2.5,174384,4000,22091\r\n"
    values = dict((a, v) for a, v, _ in parse_memory_csv(history))
    assert values["free_os_memory"] == 1200000 and values["cpu_load_5m"] == 2.5


@pytest.mark.parametrize(
    "bad", ["", "Your hub is starting up", "Date/time,Free OS\n04-12,abc\n", "Date/time,Free OS\n04-12\n", "a,b\n1,2"]
)
def test_a_memory_csv_that_is_not_one_says_so(bad: str) -> None:
    """An answer that is not the CSV (boot page, a cell that is no number, a short row) is refused, not guessed."""
    with pytest.raises(HealthFormatError):
        parse_memory_csv(bad)


def test_plain_integer_and_decimal_answers_of_the_reference() -> None:
    """freeOSMemory ``914716``, databaseSize ``6``, internalTempCelsius ``38.2`` / ``63.0``; NaN and HTML refused."""
    assert parse_int("914716") == 914716 and parse_int("6\n") == 6
    assert parse_float("38.2") == 38.2 and parse_float("63.0") == 63.0
    for bad in ("NaN", "inf", "<html>", ""):
        with pytest.raises(HealthFormatError):
            parse_float(bad)
    for bad in ("6.5", "true", "9" * 40):
        with pytest.raises(HealthFormatError):
            parse_int(bad)


def test_hub_data_alerts_keep_their_types_and_base_model_statuses_are_strings() -> None:
    """Every hubData alert becomes alert.<name> as the hub types it; zigbee/zwave/cloud status come as strings."""
    data = fixture_json("hubData.json")
    values = {a: v for a, v, _ in parse_hub_data(data)}
    assert values["alert.hubLowMemory"] is False and values["alert.zigbeeOffline"] is False
    assert values["alert.spammyDevicesMessage"] is None and values["alert.databaseSize"] == 5
    assert set(values) == {f"alert.{name}" for name in data["alerts"]}
    data["baseModel"] = BASE_MODEL
    data["alerts"]["spammyDevicesMessage"] = "Kitchen Plug sends 120 events/min"
    values = {a: v for a, v, _ in parse_hub_data(data)}
    assert values["zigbee_status"] == "enabled" and values["zwave_status"] == "false"
    assert values["cloud_status"] == "connected"
    assert values["alert.spammyDevicesMessage"] == "Kitchen Plug sends 120 events/min"
    with pytest.raises(HealthFormatError):
        parse_hub_data([1, 2])


# ------------------------------------------------------------------------------------------------ over sockets


async def test_health_rounds_become_typed_hub_events_and_a_missing_endpoint_is_skipped_after_one_line(
    tmp_path: Path, sim: GatedSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """health: true gives kind hub events (numbers typed, units) Splunk can chart; a 404 endpoint is asked once."""
    sim.hub_data_base_model = BASE_MODEL
    b = await start_bridge(bridges, tmp_path, sim, health=True, health_interval="30s", eventsocket=False)
    await wait_until(lambda: b.status.health_rounds >= 1, what="the first health round at start")
    for attribute, value, unit in [*C8_VALUES, ("internal_temperature", 38.2, "C"), ("database_size", 6, "MB")]:
        (ev,) = hub_events(b, attribute)
        assert ev["value"] == value and type(ev["value"]) is type(value) and ev["unit"] == unit, ev
        assert ev["device_id"] is None and ev["device"] is None and ev["hub_type"] == "hubitat"
    assert hub_events(b, "alert.hubLowMemory")[0]["value"] is False
    assert hub_events(b, "zigbee_status")[0]["value"] == "enabled"
    assert hub_events(b, "cloud_status")[0]["value"] == "connected"

    # Older firmware: no freeOSMemoryLast (the plain freeOSMemory stands in), no hubData; the hub's memory moved.
    sim.missing_endpoints = {"/hub/advanced/freeOSMemoryLast", "/hub2/hubData"}
    sim.free_os_memory = 800001
    sim.hub_alerts = {"hubLowMemory": True}
    for _ in range(2):
        await health_round(b)
    assert [ev["value"] for ev in hub_events(b, "free_os_memory")] == [1209796, 800001]
    assert len(hub_events(b, "alert.hubLowMemory")) == 1, "hubData is not read any more"
    assert sim.count("/hub/advanced/freeOSMemoryLast") == 2 and sim.count("/hub2/hubData") == 2
    assert len(hub_events(b, "internal_temperature")) == 1, "an unchanged value is no event"
    skipped = log_lines(logs, "info", "no such health endpoint")
    assert sorted(e["path"] for e in skipped) == ["/hub/advanced/freeOSMemoryLast", "/hub2/hubData"]


async def test_the_c4_shape_over_the_wire_has_no_direct_java(
    tmp_path: Path, sim: GatedSim, bridges: list[Bridge]
) -> None:
    """A C-4 hub's 5-column CSV gives its four columns; no java_direct event appears."""
    sim.set_health(free_os=312044, cpu=0.61, total_java=98304, free_java=20480)
    sim.internal_temp = 63.0
    b = await start_bridge(bridges, tmp_path, sim, health=True, eventsocket=False)
    await wait_until(lambda: b.status.health_rounds >= 1, what="the first health round")
    assert hub_events(b, "cpu_load_5m")[0]["value"] == 0.61
    assert hub_events(b, "internal_temperature")[0]["value"] == 63.0
    assert not hub_events(b, "java_direct")


async def test_health_never_waits_for_the_device_polls_budget(
    tmp_path: Path, sim: GatedSim, bridges: list[Bridge]
) -> None:
    """With the poll's only request slot stuck at the hub, health rounds still run (their own budget)."""
    b = await start_bridge(bridges, tmp_path, sim, health=True, eventsocket=False, max_concurrency=1)
    await b.settled()
    await wait_until(lambda: b.status.health_rounds >= 1, what="the first health round")
    sim.gate.clear()
    b.reconcile()
    await wait_until(lambda: sim.held == 1 and b.runner.polling, what="a poll stuck at the hub")
    await health_round(b)
    assert sim.held == 1, "the poll is still waiting; health went past it"
    sim.gate.set()
    await wait_until(lambda: not b.runner.polling, what="the poll to finish")


async def test_health_is_off_by_default(tmp_path: Path, sim: GatedSim, bridges: list[Bridge]) -> None:
    """Without health: true the bridge never asks the hub's admin endpoints."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False)
    await b.settled()
    assert not [p for _, p in sim.requests if p.startswith("/hub")]
    assert not b.find(kind="hub")


async def test_hub_security_redirects_are_one_warning_each_and_maker_api_goes_on(
    tmp_path: Path, sim: GatedSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """With a hub login on, each admin endpoint is one warning and not asked again; device events still flow."""
    sim.hub_security = True
    b = await start_bridge(bridges, tmp_path, sim, health=True, eventsocket=False)
    await b.settled()
    await wait_until(lambda: b.status.health_rounds >= 1, what="the first health round")
    await health_round(b)
    warned = log_lines(logs, "warning", "hub security on?")
    assert len(warned) == 4 and all(e["location"].endswith("/login") for e in warned)
    assert sim.count("/hub2/hubData") == 1, "not asked again"
    assert not b.find(kind="hub") and b.find(kind="device")


async def test_an_answer_in_an_unknown_format_is_one_warning_and_the_rest_still_arrives(
    tmp_path: Path, sim: GatedSim, bridges: list[Bridge], logs: list[dict[str, Any]]
) -> None:
    """A memory page that is not the CSV costs only its own values, with one warning; temperature etc. still come."""
    sim.memory_csv = "<html><body>Memory: lots</body></html>"
    b = await start_bridge(bridges, tmp_path, sim, health=True, eventsocket=False)
    await wait_until(lambda: b.status.health_rounds >= 1, what="the first health round")
    await health_round(b)
    assert not hub_events(b, "free_os_memory") and hub_events(b, "internal_temperature")
    (warned,) = log_lines(logs, "warning", "not understood")
    assert warned["path"] == "/hub/advanced/freeOSMemoryLast" and "CSV" in warned["error"]
