"""Homey payloads to readings without sockets: every file of ../shared/fixtures/homey/ parsed into the right events.

The fixtures are read from the shared directory itself (not the simulator's copies), so a change to them is seen.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.sources.homey.cloud import address_rank, homey_addresses
from bridge.sources.homey.values import (
    capability_event,
    device_readings,
    epoch_ms,
    items,
    parse_device,
    typed,
    variable_reading,
    zone_names,
)

FIXTURES = Path("/work/shared/fixtures/homey")
if not FIXTURES.is_dir():  # a checkout elsewhere: the simulator's copies of the same files
    FIXTURES = Path(__file__).resolve().parents[3] / "bridge" / "sim" / "homey" / "data"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def by_attr(readings: list[Any]) -> dict[str, Any]:
    return {r.attribute: r for r in readings}


def test_v3_device_gives_typed_values_units_and_hub_times() -> None:
    """A Homey Pro 2023 device: onoff a boolean, power in W, energy in kWh, each timed by its lastUpdated."""
    obj = fixture("v3_device_pro2023.json")
    device = parse_device(obj["id"], obj)
    got = by_attr(device_readings(device, obj, "Dressing", "poll", None))
    assert set(got) == {"onoff", "meter_power", "measure_power", "available"}
    assert got["onoff"].value is False
    assert got["meter_power"].value == 169.96 and got["meter_power"].unit == "kWh"
    assert got["measure_power"].value == 0 and got["measure_power"].unit == "W"
    assert got["onoff"].time == pytest.approx(1704632906.444)  # 2024-01-07T13:08:26.444Z
    assert all(r.device == "Dressing Light" and r.room == "Dressing" for r in got.values())
    assert got["available"].value is True


def test_v2_device_map_reads_the_id_keyed_map_and_legacy_units() -> None:
    """A Homey v2 device map (id-keyed, with the client's __athom_api_type): values and the legacy "KWh" unit."""
    devices = list(items(fixture("v2_devices_map_wallplug.json")))
    assert [d for d, _ in devices] == ["0afda5c4-5f67-42be-959e-dae52e0af455"]
    did, obj = devices[0]
    got = by_attr(device_readings(parse_device(did, obj), obj, None, "poll", None))
    assert got["meter_power"].value == 718.58 and got["meter_power"].unit == "KWh"
    assert got["onoff"].value is False and got["onoff"].unit is None
    assert got["measure_power"].time == pytest.approx(1548749179.855)


def test_v2_temperature_capabilities_obj() -> None:
    """The second v2 capture: 17.1 °C."""
    obj = fixture("v2_capabilitiesObj_temperature.json")
    got = by_attr(device_readings(parse_device("t", obj), obj, None, "poll", None))
    assert got["measure_temperature"].value == 17.1 and got["measure_temperature"].unit == "°C"


def test_zone_fixture_names_the_room() -> None:
    """A zone object gives the room name devices in it carry."""
    zone = fixture("zone_v2.json")
    assert zone_names({zone["id"]: zone}) == {"9919ee1e-ffbc-480b-bc4b-77fb047e9e68": "Hjem"}


def test_system_info_has_the_id_handshake_needs() -> None:
    """/api/manager/system/ gives cloudId and the model; the bridge reads the id from the ping instead."""
    info = fixture("system_info_v2.json")
    assert info["homeyModelId"] == "homey2s" and "cloudId" in info


def test_oauth_token_response() -> None:
    """The captured token answer: access and refresh tokens with expires_in 3660."""
    tok = fixture("athom_oauth_token_response.json")
    assert tok["expires_in"] == 3660 and tok["token_type"] == "bearer" and tok["refresh_token"]


def _node_inspect_to_json(text: str) -> Any:
    """The Node console.log capture as JSON: quote keys, single-quoted strings, bare dates; drop elisions."""
    body = text[text.index("{") :]
    body = body.replace(", ...,", ",").replace("[Object]", "{}")
    body = re.sub(r"'([^']*)'", lambda m: json.dumps(m.group(1)), body)
    body = re.sub(r"(\d{4}-\d\d-\d\dT[\d:.]+Z)", r'"\1"', body)
    body = re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*)(\s*:)", r'\1"\2"\3', body)
    return json.loads(body)


def test_console_capture_matches_the_json_fixture() -> None:
    """The console.log capture of the same device gives the same readings as its JSON form (dates were bare)."""
    obj = _node_inspect_to_json((FIXTURES / "v3_device_pro2023_console.txt").read_text(encoding="utf-8"))
    want = fixture("v3_device_pro2023.json")
    a = device_readings(parse_device(obj["id"], obj), obj, None, "poll", None)
    b = device_readings(parse_device(want["id"], want), want, None, "poll", None)
    assert [(r.attribute, r.value, r.unit, r.time) for r in a] == [(r.attribute, r.value, r.unit, r.time) for r in b]


def test_socketio_frames_capability_event() -> None:
    """The EIO3 capture's capability broadcast: device, capability, value and the epoch-ms transactionTime."""
    lines = (FIXTURES / "socketio_frames_eio3.txt").read_text(encoding="utf-8").splitlines()
    frame = next(line for line in lines if '"capability"' in line and line.startswith("S→C"))
    payload = json.loads(frame.split("42/api,", 1)[1])
    uri, event, data = payload
    ev = capability_event(uri, data)
    assert event == "capability" and ev is not None
    assert ev.device_id == "<deviceId>" and ev.capability == "onoff" and ev.value is True
    assert ev.time == 1700000000.0
    # The handshake answer names the namespace the client must join next.
    ack = next(line for line in lines if line.startswith("S→C  430"))
    assert json.loads(ack.split("430", 1)[1].split("   ")[0])[1]["namespace"] == "/api"


def test_capabilities_catalogue_types_and_units() -> None:
    """Every row of the capability table types like the hub: 0-1 dims stay 0-1, booleans stay booleans."""
    rows = [
        line.split("|")[1:-1]
        for line in (FIXTURES / "capabilities.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and not line.startswith("| id") and "---" not in line
    ]
    assert len(rows) > 30
    for cells in rows:
        kind, rng = cells[1].strip(), cells[5].strip()
        if kind == "boolean":
            assert typed(True, kind) is True and typed("false", kind) is False
        if kind == "number" and rng == "0..1":
            assert typed(0.37, kind) == 0.37  # forwarded as the hub gives it, not scaled to percent
        if kind == "number":
            assert typed("21.5", kind) == 21.5 and typed("auto", kind) == "auto"


def test_null_and_missing_capabilities_are_tolerated() -> None:
    """capabilitiesObj null (a device just paired) and a listed capability missing from it give no crash."""
    obj = {"id": "x", "name": "New", "capabilities": ["onoff", "dim"], "capabilitiesObj": None}
    assert [r.attribute for r in device_readings(parse_device("x", obj), obj, None, "poll", None)] == ["available"]
    obj = {"id": "y", "name": "Half", "capabilities": ["onoff", "dim"], "capabilitiesObj": {"dim": {"type": "number"}}}
    assert [r.attribute for r in device_readings(parse_device("y", obj), obj, None, "poll", None)] == ["available"]


def test_sub_capabilities_buttons_and_unavailable_devices() -> None:
    """onoff.output1 is its own attribute; maintenance buttons are skipped; unavailable says why."""
    obj = {
        "id": "r",
        "name": "Relay",
        "available": False,
        "unavailableMessage": "Z-Wave node unreachable",
        "capabilitiesObj": {
            "onoff.output1": {"type": "boolean", "value": True},
            "button.reset_meter": {"type": "boolean", "value": None, "getable": False, "maintenanceAction": True},
        },
    }
    got = by_attr(device_readings(parse_device("r", obj), obj, None, "poll", None))
    assert set(got) == {"onoff.output1", "available"}
    assert got["available"].value is False and got["available"].description == "Z-Wave node unreachable"


def test_variables_are_typed_events_named_by_the_variable() -> None:
    """Logic variables: kind variable, no device, the name as attribute, typed by their type."""
    r = variable_reading({"id": "1", "name": "Guests", "type": "number", "value": "3"}, "poll", 1.0, None)
    assert r is not None and (r.kind, r.device_id, r.device, r.attribute, r.value) == (
        "variable",
        None,
        None,
        "Guests",
        3,
    )
    assert variable_reading({"id": "2", "type": "string", "value": "x"}, "poll", 1.0, None) is None


def test_times_and_addresses() -> None:
    """transactionTime may be null; /user/me addresses go local-secure, local, forwarded, cloud."""
    assert epoch_ms(None) is None and epoch_ms(1700000000123) == pytest.approx(1700000000.123)
    order = homey_addresses(
        {
            "remoteUrl": "https://5f2a.connect.athom.com",
            "localUrl": "http://192.168.1.20",
            "localUrlSecure": "https://192-168-1-20.homey.homeylocal.com",
        }
    )
    assert [u for u, _ in order] == [
        "https://192-168-1-20.homey.homeylocal.com",
        "http://192.168.1.20",
        "https://5f2a.connect.athom.com",
    ]
    assert address_rank("https://5f2a.connect.athom.com") == 3 and address_rank("http://10.0.0.2") == 1
