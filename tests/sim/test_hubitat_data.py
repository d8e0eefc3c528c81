"""The Hubitat simulator's package data: the default device set in data/devices.json and the fixture helpers."""

from __future__ import annotations

import importlib.resources
from typing import Any

import pytest

from bridge.sim.hubitat import HubitatSim, default_devices, fixture_json, fixture_text
from bridge.sim.hubitat.values import wire_string

JUNK_KEYS = ("dataType", "values")


def by_id() -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in default_devices()}


def attributes(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A spec's attribute entries without the simulator-only ``unit`` key."""
    return [{k: v for k, v in a.items() if k != "unit"} for a in spec["attributes"]]


def assert_matches_all_item(spec: dict[str, Any], item: dict[str, Any]) -> None:
    """``spec`` is the /devices/all ``item`` typed: same fields, same values once rendered as strings."""
    for key in ("id", "name", "label", "type", "date", "room"):
        assert spec[key] == item[key], key
    values = {a["name"]: wire_string(a["currentValue"]) for a in spec["attributes"]}
    assert values == {k: v for k, v in item["attributes"].items() if k not in JUNK_KEYS}
    assert [c for c in spec["capabilities"] if isinstance(c, str)] == item["capabilities"]
    assert spec["commands"] == [c["command"] for c in item["commands"]]


def test_default_device_set() -> None:
    """default_devices() lists the ten fixture-based devices, each a valid spec with a string id and a date."""
    devices = default_devices()
    assert [d["id"] for d in devices] == ["6", "32", "176", "130", "1360", "999", "93", "22", "2178", "412"]
    assert all(isinstance(d["date"], str) and isinstance(d["attributes"], list) for d in devices)
    assert HubitatSim().devices() == [d["id"] for d in devices]


def test_default_devices_is_a_fresh_copy() -> None:
    """Changing what default_devices() returned changes neither the next call nor a new hub."""
    first = default_devices()
    first[0]["label"] = "changed"
    first.pop()
    assert default_devices()[0]["label"] == "Office Door" and len(default_devices()) == 10
    hub = HubitatSim(devices=first)
    assert "412" not in hub.devices() and "412" in HubitatSim().devices()


def test_devices_from_device_details_agree_with_the_fixture() -> None:
    """Devices 6, 32 and 176 are device_details.json plus type, room and date."""
    devices = by_id()
    for dev_id, detail in fixture_json("device_details.json").items():
        spec = devices[dev_id]
        assert {k: spec[k] for k in detail} == detail
        assert set(spec) - set(detail) <= {"type", "room", "date"}


def test_switch_130_agrees_with_both_fixtures() -> None:
    """Device 130 is device_switch_130.json, with room/date/model/manufacturer of its /devices/all item."""
    spec = by_id()["130"]
    detail = fixture_json("device_switch_130.json")
    assert {k: spec[k] for k in detail} == detail
    item = next(i for i in fixture_json("devices_all.json") if i["id"] == "130")
    assert {k: spec[k] for k in ("room", "date", "model", "manufacturer")} == {
        k: item[k] for k in ("room", "date", "model", "manufacturer")
    }
    assert spec["_junkPosition"] == 0  # the junk keys come first in that item


def test_typed_devices_agree_with_their_devices_all_items() -> None:
    """Devices 1360 and 999 are their /devices/all items with typed values and units."""
    devices = by_id()
    assert_matches_all_item(devices["1360"], next(i for i in fixture_json("devices_all.json") if i["id"] == "1360"))
    assert_matches_all_item(devices["999"], fixture_json("devices_all_trv_item.json"))
    assert {a["name"]: a["unit"] for a in devices["999"]["attributes"]}["temperature"] == "°C"


def test_sample_based_devices_use_the_fixture_attributes() -> None:
    """The lock, the mmWave sensor and the thermostat carry the fixtures' attribute objects unchanged."""
    devices = by_id()
    samples = {s["name"]: s for s in fixture_json("device_attribute_samples.json")}
    lock = fixture_json("device_lock.json")
    assert attributes(devices["93"]) == [
        samples["lock"],
        samples["battery"],
        samples["codeLength"],
        *lock["attributes"],
    ]
    assert {k: devices["93"][k] for k in ("id", "name", "label", "type", "room")} == {
        k: lock[k] for k in ("id", "name", "label", "type", "room")
    }
    motion = ["motion", "healthStatus", "fadingTime", "illuminance", "detectionDelay"]
    assert attributes(devices["22"]) == [samples[n] for n in motion]
    caps = fixture_json("device_thermostat_capabilities.json")[0]["capabilities"]
    thermostat = attributes(devices["412"])
    for entry in (a for c in caps if isinstance(c, dict) for a in c["attributes"]):
        assert entry in thermostat


def test_fixture_helpers() -> None:
    """fixture_text reads package data as text; fixture_json parses it afresh each call; unknown names raise."""
    assert fixture_text("error_invalid_token.xml").strip() == "<oauth><error>invalid_token</error></oauth>"
    modes = fixture_json("modes.json")
    modes.clear()
    assert len(fixture_json("modes.json")) == 5
    with pytest.raises(FileNotFoundError):
        fixture_text("no_such_fixture.json")


def test_old_postURL_fixture_path_still_holds_the_same_file() -> None:
    """The transitional copy at bridge/sim/data/hubitat_postURL_events.json is identical to the packaged file."""
    old = importlib.resources.files("bridge.sim").joinpath("data", "hubitat_postURL_events.json").read_text("utf-8")
    assert old == fixture_text("postURL_events.json")
