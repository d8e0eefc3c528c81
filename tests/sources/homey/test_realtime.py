"""Homey realtime over Socket.IO (python-socketio against the simulator's python-socketio server).

Handshake, the /api namespace, subscriptions, capability and variable events, device create/update/delete,
reconnect with a reconciliation poll, and the faults of homey.md 8.2/8.3: a namespace torn down right after it
connected, a stream gone silent, and events that stop on a live socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.sim.homey import HomeySim
from tests.helpers import wait_until
from tests.sources.homey.helpers import Bridge

DRESSING = "ffc17df6-e354-4e96-9d88-475a9b488e7d"


def realtime_bridge(tmp_path: Path, sim: HomeySim, **kw: Any) -> Bridge:
    return Bridge(tmp_path, url=sim.url, api_key=sim.api_key, realtime=True, **kw)


async def test_capability_and_variable_events_arrive_in_realtime(tmp_path: Path) -> None:
    """A capability change and a Logic variable change arrive as realtime events, typed, with unit and room."""
    async with HomeySim() as sim, realtime_bridge(tmp_path, sim) as bridge:
        await bridge.settled()
        await wait_until(lambda: f"homey:device:{DRESSING}" in sim.realtime.subscriptions, "device subscribed")
        await sim.state.set_capability(DRESSING, "measure_power", 12.5)
        ev = await bridge.wait_event(device_id=DRESSING, attribute="measure_power", value=12.5)
        assert (ev["source"], ev["unit"], ev["room"], ev["previous"]) == ("realtime", "W", "Dressing", 0)
        guests = next(v for v in sim.state.variables.values() if v["name"] == "Guests")
        await sim.state.set_variable(guests["id"], 4)
        var = await bridge.wait_event(kind="variable", attribute="Guests", value=4)
        assert (var["source"], var["device_id"], var["previous"]) == ("realtime", None, 0)
        assert bridge.status.streams["realtime"]["up"] is True


async def test_devices_created_renamed_and_deleted_keep_the_list_current(tmp_path: Path) -> None:
    """A new device (capabilitiesObj null on create) is fetched and followed; a rename shows in later events."""
    async with HomeySim() as sim, realtime_bridge(tmp_path, sim) as bridge:
        await bridge.settled()
        new = dict(next(d for d in sim.state.devices.values() if d["class"] == "thermostat"))
        new = {**new, "id": "0d0d0d0d-0000-4000-8000-00000000beef", "name": "Attic thermostat"}
        new["capabilitiesObj"] = {k: dict(v) for k, v in new["capabilitiesObj"].items()}
        await sim.state.add_device(new)
        ev = await bridge.wait_event(device_id=new["id"], attribute="target_temperature")
        assert ev["device"] == "Attic thermostat" and ev["unit"] == "°C"
        await wait_until(lambda: f"homey:device:{new['id']}" in sim.realtime.subscriptions, "new device followed")
        await sim.state.update_device(DRESSING, name="Wardrobe light")
        await wait_until(lambda: bridge.source.devices[DRESSING].name == "Wardrobe light", "the rename seen")
        await sim.state.set_capability(DRESSING, "onoff", True)
        ev = await bridge.wait_event(device_id=DRESSING, attribute="onoff", value=True)
        assert ev["device"] == "Wardrobe light"
        await sim.state.delete_device(new["id"])
        await wait_until(lambda: new["id"] not in bridge.source.devices, "the deleted device forgotten")


async def test_a_namespace_torn_down_after_connect_reconnects_and_reconciles(tmp_path: Path) -> None:
    """The hub drops /api right after accepting it: the bridge reconnects and a poll brings what was missed."""
    async with HomeySim() as sim:
        sim.realtime.drop_namespace = 2
        async with realtime_bridge(tmp_path, sim) as bridge:
            await wait_until(lambda: sim.realtime.handshakes >= 3 and bridge.live, "connected at the third try")
            await wait_until(lambda: f"homey:device:{DRESSING}" in sim.realtime.subscriptions, "device subscribed")
            await bridge.settled()  # no poll pending: the one that finds the change below is the reconnect's
            polls = bridge.status.polls
            # A change no client hears of, then a server-side disconnect: the reconnect's poll must find it.
            await sim.state.set_capability(DRESSING, "meter_power", 200.5, push=False)
            await sim.realtime.kick()
            ev = await bridge.wait_event(device_id=DRESSING, attribute="meter_power", value=200.5)
            assert ev["source"] == "reconcile" and bridge.status.polls > polls
            await bridge.settled()
            await wait_until(lambda: sim.realtime.subscriptions.count(f"homey:device:{DRESSING}") >= 2, "resubscribed")
            await sim.state.set_capability(DRESSING, "meter_power", 201.0)
            assert (await bridge.wait_event(device_id=DRESSING, value=201.0))["source"] == "realtime"


async def test_a_silent_stream_is_detected_and_replaced(tmp_path: Path) -> None:
    """A socket on which nothing arrives and the probe gets no answer is dropped; a new one carries events."""
    async with HomeySim() as sim, realtime_bridge(tmp_path, sim, realtime_timeout="1s") as bridge:
        await wait_until(lambda: bridge.live, "realtime connected")
        await wait_until(lambda: f"homey:device:{DRESSING}" in sim.realtime.subscriptions, "device subscribed")
        first = sim.realtime.handshakes
        sim.realtime.silent = True
        await wait_until(lambda: not bridge.live, "the silent stream declared dead")
        assert "dead stream" in bridge.status.streams["realtime"]["detail"]
        polls = bridge.status.polls
        sim.realtime.silent = False
        await wait_until(lambda: bridge.live and sim.realtime.handshakes > first, "a fresh connection")
        await bridge.polled(polls + 1)  # the reconnect's reconciliation, so the change below is the stream's
        await wait_until(lambda: sim.realtime.subscriptions.count(f"homey:device:{DRESSING}") >= 2, "resubscribed")
        await sim.state.set_capability(DRESSING, "measure_power", 7.0)
        assert (await bridge.wait_event(device_id=DRESSING, value=7.0))["source"] == "realtime"


async def test_events_that_stop_on_a_live_socket_are_caught_by_the_reconciliation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events stop on a socket that still answers (homey.md 8.2): a poll finds the change; the socket is recycled."""
    # A change counts as missed once it is older than the grace; no grace here, so the poll right after proves it.
    monkeypatch.setattr("bridge.sources.homey.realtime.MISSED_GRACE", -1.0)
    async with HomeySim() as sim, realtime_bridge(tmp_path, sim) as bridge:
        await bridge.settled()
        first = sim.realtime.handshakes
        sim.realtime.events_stop = True
        await sim.state.set_capability(DRESSING, "meter_power", 300.25)
        bridge.reconcile()
        ev = await bridge.wait_event(device_id=DRESSING, attribute="meter_power", value=300.25)
        assert ev["source"] == "reconcile"
        sim.realtime.events_stop = False
        await wait_until(lambda: sim.realtime.handshakes > first and bridge.live, "the socket recycled")
