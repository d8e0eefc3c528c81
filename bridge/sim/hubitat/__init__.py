"""Protocol-faithful simulator of a Hubitat Elevation hub (Maker API, postURL webhook, ``/eventsocket``).

The simulator is a real :mod:`aiohttp` server bound to loopback. It holds the hub state (devices, modes, HSM)
and reproduces the wire formats and quirks documented in ``/work/shared/reference/hubitat.md`` (cited below as
"ref §N"), using copies of the public payload fixtures shipped in ``bridge/sim/hubitat/data/``:

* Maker API under ``/apps/api/<appId>/`` (ref §1): JSON served as ``text/html``, an ``HUBSESSION`` cookie,
  chunked bodies and no ``Server`` header; ``/devices/all`` with all-string attribute maps polluted by junk
  ``dataType``/``values`` keys; typed ``currentValue`` in ``/devices/<id>`` with duplicate attributes and
  commands; XML ``invalid_token`` 401s; commands that answer with the *pre-command* device JSON and change
  state right after; ``/modes``, ``/hsm``, ``/postURL``.
* postURL webhook (ref §1.4): ``{"content": {...}}`` JSON POSTs, values as strings, ``deviceId`` a string or
  ``null``, sent one at a time in event order, fire-and-forget (never retried).
* ``/eventsocket`` (ref §2): hand-built JSON text frames with ``"null"`` strings and integer ids, optional
  duplicated / split frames, optional server pings, dead (silent) sockets and abrupt drops.
* A few hub-root health endpoints (ref §4) and a booting state ("Your hub is starting up").

Hub state is the source of truth for end-to-end checks: :meth:`HubitatSim.state` returns what the hub holds,
including changes made with ``push=False`` that no client was told about (a missed event).

Run ``python -m bridge.sim.hubitat --port 8081`` for a manual demo hub with random device activity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import importlib.resources
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from json.encoder import encode_basestring
from typing import Any, Final
from urllib.parse import unquote

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

__all__ = ["HubitatSim", "default_devices", "main"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# --------------------------------------------------------------------------------------------------------------
# Fixtures and static tables
# --------------------------------------------------------------------------------------------------------------


@functools.cache
def _fixture_text(name: str) -> str:
    """Read ``bridge/sim/hubitat/data/<name>`` (package data, so it works from an installed wheel too)."""
    return importlib.resources.files("bridge.sim.hubitat").joinpath("data", name).read_text("utf-8")


def _fixture_json(name: str) -> Any:
    return json.loads(_fixture_text(name))


FIRMWARE: Final = "2.4.4.156"  # build seen in hub_eventsJson.json / hubData.json (ref §4)
LOCATION_NAME: Final = "Home"  # location displayName in postURL_events.json (ref §1.4)

# dataType and ENUM values for well-known attribute names; used when a device spec (e.g. a /devices/all item,
# whose map carries no types) does not say. ENUM value lists come from the fixtures where they exist.
_ATTRIBUTE_TYPES: Final[dict[str, tuple[str, list[str] | None]]] = {
    "switch": ("ENUM", ["on", "off"]),
    "contact": ("ENUM", ["closed", "open"]),
    "water": ("ENUM", ["wet", "dry"]),
    "tamper": ("ENUM", ["clear", "detected"]),
    "motion": ("ENUM", ["inactive", "active"]),
    "presence": ("ENUM", ["present", "not present"]),
    "lock": ("ENUM", ["locked", "unlocked with timeout", "unlocked", "unknown"]),
    "healthStatus": ("ENUM", ["unknown", "offline", "online"]),
    "powerSource": ("ENUM", ["battery", "dc", "mains", "unknown"]),
    "thermostatMode": ("ENUM", ["auto", "off", "heat", "emergency heat", "cool"]),
    "thermostatFanMode": ("ENUM", ["on", "circulate", "auto"]),
    "thermostatOperatingState": (
        "ENUM",
        ["heating", "pending cool", "pending heat", "vent economizer", "idle", "cooling", "fan only"],
    ),
    "codeChanged": ("ENUM", ["added", "changed", "deleted", "failed"]),
    "battery": ("NUMBER", None),
    "temperature": ("NUMBER", None),
    "humidity": ("NUMBER", None),
    "power": ("NUMBER", None),
    "energy": ("NUMBER", None),
    "illuminance": ("NUMBER", None),
    "level": ("NUMBER", None),
    "hue": ("NUMBER", None),
    "saturation": ("NUMBER", None),
    "colorTemperature": ("NUMBER", None),
    "thermostatSetpoint": ("NUMBER", None),
    "heatingSetpoint": ("NUMBER", None),
    "coolingSetpoint": ("NUMBER", None),
    "pushed": ("NUMBER", None),
    "held": ("NUMBER", None),
    "numberOfButtons": ("NUMBER", None),
    "maxCodes": ("NUMBER", None),
    "codeLength": ("NUMBER", None),
    "lockCodes": ("JSON_OBJECT", None),
}

_DEFAULT_UNITS: Final[dict[str, str]] = {
    "battery": "%",
    "humidity": "%",
    "level": "%",
    "power": "W",
    "energy": "kWh",
    "illuminance": "lux",
    "colorTemperature": "K",
    "temperature": "°F",
}

# Which attributes a capability contributes; used to build the interleaved ``capabilities`` list of
# /devices/<id> (ref §1.3: names mixed with {"attributes":[{"name":..,"dataType":null}]} objects).
_CAPABILITY_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
    "Switch": ("switch",),
    "Outlet": ("switch",),
    "SwitchLevel": ("level",),
    "Battery": ("battery",),
    "ContactSensor": ("contact",),
    "TemperatureMeasurement": ("temperature",),
    "RelativeHumidityMeasurement": ("humidity",),
    "PowerMeter": ("power",),
    "EnergyMeter": ("energy",),
    "WaterSensor": ("water",),
    "MotionSensor": ("motion",),
    "PresenceSensor": ("presence",),
    "IlluminanceMeasurement": ("illuminance",),
    "TamperAlert": ("tamper",),
    "Lock": ("lock",),
    "LockCodes": ("codeChanged", "codeLength", "lastCodeName", "lockCodes", "maxCodes"),
    "ThermostatMode": ("thermostatMode",),
    "ThermostatOperatingState": ("thermostatOperatingState",),
    "ThermostatSetpoint": ("thermostatSetpoint",),
    "ThermostatHeatingSetpoint": ("heatingSetpoint",),
    "ThermostatCoolingSetpoint": ("coolingSetpoint",),
    "ThermostatFanMode": ("thermostatFanMode",),
    "PowerSource": ("powerSource",),
    "HealthCheck": ("healthStatus",),
    "PushableButton": ("numberOfButtons", "pushed"),
    "HoldableButton": ("held",),
    "ColorControl": ("RGB", "color", "colorName", "hue", "saturation"),
}

# Argument types for GET /devices/<id>/commands (device_commands.json, ref §1.3); unknown commands get n/a.
_COMMAND_ARG_TYPES: Final[dict[str, list[str]]] = {
    "setLevel": ["NUMBER", "NUMBER"],
    "setColor": ["COLOR_MAP"],
    "setColorTemperature": ["NUMBER", "NUMBER", "NUMBER"],
    "setHue": ["NUMBER"],
    "setSaturation": ["NUMBER"],
    "setHeatingSetpoint": ["NUMBER"],
    "setCoolingSetpoint": ["NUMBER"],
    "setThermostatSetpoint": ["NUMBER"],
    "setThermostatMode": ["ENUM"],
    "setThermostatFanMode": ["ENUM"],
    "push": ["NUMBER"],
    "hold": ["NUMBER"],
    "setCode": ["NUMBER", "STRING", "STRING"],
    "deleteCode": ["NUMBER"],
    "setCodeLength": ["NUMBER"],
}

# HSM commands accepted by GET /hsm/<cmd> (ref §1.2) -> resulting hsmStatus (None: no status change).
_HSM_COMMANDS: Final[dict[str, str | None]] = {
    "armAway": "armedAway",
    "armHome": "armedHome",
    "armNight": "armedNight",
    "armAll": "armedAway",
    "disarm": "disarmed",
    "disarmAll": "allDisarmed",
    "armRules": None,
    "disarmRules": None,
    "cancelAlerts": None,
}

# ENUM attributes whose hub descriptionText reads "<label> is <value>" ("Loft Fan is on", ref §1.4); other
# attributes read "<label> <name> is <value><unit>" ("Zooz Outlet 3 power is 0W", postURL_content_2020.json).
_SHORT_DESCRIPTION: Final = frozenset({"switch", "contact", "motion", "water", "lock", "presence", "tamper"})

_TEXT_HTML: Final = "text/html;charset=utf-8"  # ref §1.1 / §7: the hub labels JSON as text/html
_APPLICATION_JSON: Final = "application/json;charset=utf-8"
_STARTING_UP_TEXT: Final = "Your hub is starting up"  # ref §4 "Monitoring practice", §5.10

# --------------------------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------------------------


def _wire_string(value: Any) -> str | None:
    """Render a hub value the way string-typed surfaces carry it (events, /devices/all, ref §1.3/§1.4)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # Groovy renders booleans lower-case
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # 29.0 -> "29.0", 73 -> "73": the shapes in devices_all.json
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parse_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _coerce(data_type: str | None, value: Any) -> Any:
    """Convert ``value`` to what /devices/<id> returns as ``currentValue`` for ``data_type`` (ref §1.3).

    NUMBER is a JSON number (a non-numeric string is kept: drivers do emit e.g. "dc" in numeric fields, ref §5.9);
    DECIMAL is a *string* (fixtures ``fadingTime`` "5", ``detectionDelay`` "0.1"); everything else is a string.
    """
    if value is None:
        return None
    if data_type == "NUMBER":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return value
        parsed = _parse_number(str(value))
        return str(value) if parsed is None else parsed
    return _wire_string(value)


def _infer_type(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "NUMBER"
    if isinstance(value, str) and _parse_number(value) is not None:
        return "NUMBER"
    if isinstance(value, (dict, list)):
        return "JSON_OBJECT"
    return "STRING"


def _hub_date(ts: float) -> str:
    """Hub timestamp format, e.g. ``2022-03-03T14:20:00+0000`` (devices_all.json)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(ts))


def _q(text: str | None) -> str:
    """Quote one eventsocket field: hand-built JSON sends absent values as the *string* "null" (ref §2.2)."""
    return '"null"' if text is None else encode_basestring(text)


def _parse_arg(text: str) -> Any:
    number = _parse_number(text)
    return text if number is None else number


# --------------------------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Attribute:
    name: str
    data_type: str | None
    values: list[str] | None
    has_values_key: bool
    unit: str | None
    value: Any


@dataclass(slots=True)
class _Device:
    id: str
    int_id: int
    name: str
    label: str
    type: str | None
    room: str | None
    model: str | None
    manufacturer: str | None
    date: str
    attributes: dict[str, _Attribute]
    layout: list[str]  # attribute names in /devices/<id> order, duplicates included (device 176 quirk)
    capabilities: list[Any]  # interleaved /devices/<id> form
    commands: list[str]  # duplicates included (device 176 quirk)
    junk_position: int  # where the junk dataType/values keys sit in the /devices/all map
    last_event: float | None = None  # overrides `date` once the device produced an event (formatted lazily)
    history: deque[tuple[float, str, str | None, str | None]] = field(default_factory=lambda: deque(maxlen=100))


def _device_from_spec(spec: dict[str, Any]) -> _Device:
    """Build a device from a /devices/<id>-style dict (typed attribute list) or a /devices/all item (string map).

    Optional simulator-only keys: ``"unit"`` on an attribute entry, ``"_junkPosition"`` on the device.
    """
    dev_id = str(spec["id"])
    if not dev_id.isdigit():
        raise ValueError(f"Hubitat device ids are decimal strings, got {dev_id!r}")
    raw_attrs = spec.get("attributes") or []
    entries: list[dict[str, Any]]
    if isinstance(raw_attrs, dict):
        real_keys = [k for k in raw_attrs if k not in ("dataType", "values")]
        keys = list(raw_attrs)
        junk_position = sum(1 for k in keys[: keys.index("dataType")] if k != "values") if "dataType" in keys else 0
        entries = [{"name": k, "currentValue": raw_attrs[k]} for k in real_keys]
    else:
        entries = list(raw_attrs)
        junk_position = int(spec.get("_junkPosition", 0))
    attributes: dict[str, _Attribute] = {}
    layout: list[str] = []
    for entry in entries:
        name = str(entry["name"])
        layout.append(name)
        if name in attributes:
            continue
        known_type, known_values = _ATTRIBUTE_TYPES.get(name, (None, None))
        data_type = entry.get("dataType") or known_type or _infer_type(entry.get("currentValue"))
        if "values" in entry:
            values = entry["values"]
            has_values_key = True
        else:
            values = known_values if data_type == "ENUM" else None
            has_values_key = values is not None
        attributes[name] = _Attribute(
            name=name,
            data_type=data_type,
            values=copy.deepcopy(values),
            has_values_key=has_values_key,
            unit=entry.get("unit", _DEFAULT_UNITS.get(name)),
            value=_coerce(data_type, entry.get("currentValue")),
        )
    caps = copy.deepcopy(list(spec.get("capabilities") or []))
    if not any(isinstance(c, dict) for c in caps):
        caps = _interleave_capabilities([str(c) for c in caps], attributes)
    commands = [c["command"] if isinstance(c, dict) else str(c) for c in spec.get("commands") or []]
    return _Device(
        id=dev_id,
        int_id=int(dev_id),
        name=str(spec.get("name", f"Device {dev_id}")),
        label=str(spec.get("label") or spec.get("name") or f"Device {dev_id}"),
        type=spec.get("type", spec.get("name")),
        room=spec.get("room"),
        model=spec.get("model"),
        manufacturer=spec.get("manufacturer"),
        date=str(spec.get("date") or _hub_date(time.time())),
        attributes=attributes,
        layout=layout,
        capabilities=caps,
        commands=commands,
        junk_position=junk_position,
    )


def _interleave_capabilities(names: list[str], attributes: dict[str, _Attribute]) -> list[Any]:
    out: list[Any] = []
    for cap in names:
        out.append(cap)
        attrs = [a for a in _CAPABILITY_ATTRIBUTES.get(cap, ()) if a in attributes]
        if attrs:
            out.append({"attributes": [{"name": a, "dataType": None} for a in attrs]})
    return out


def default_devices() -> list[dict[str, Any]]:
    """A realistic device set built from the fixtures (ids are strings, ref §1.3).

    130 switch + 1360 hygrometer (devices_all.json / device_switch_130.json), 6 contact, 32 leak + temperature,
    176 outlet with duplicate ``switch`` (device_details.json), 93 lock (device_lock.json plus the Crestron
    attributes), 22 mmWave motion with DECIMAL-as-string attributes (device_attribute_samples.json), 2178 RGB
    bulb (hacs README sample), 999 TRV (devices_all_trv_item.json) and 412 thermostat
    (device_thermostat_capabilities.json plus HoneywellThermo-TCC#24 values).
    """
    all_items = {item["id"]: item for item in _fixture_json("devices_all.json")}
    details = _fixture_json("device_details.json")
    samples = {s["name"]: s for s in _fixture_json("device_attribute_samples.json")}

    switch_130 = _fixture_json("device_switch_130.json")
    for key in ("room", "date", "model", "manufacturer"):
        switch_130[key] = all_items["130"][key]
    switch_130["_junkPosition"] = 0  # devices_all.json puts the junk keys first for this device

    hygrometer = copy.deepcopy(all_items["1360"])
    hygrometer_spec = _device_spec_units(hygrometer, {"temperature": "°C"})

    trv = _fixture_json("devices_all_trv_item.json")
    trv_spec = _device_spec_units(trv, {"temperature": "°C", "thermostatSetpoint": "°C"})

    contact = details["6"]
    contact.update({"type": "Generic Z-Wave Contact Sensor", "room": "Office", "date": "2024-05-02T08:12:44+0000"})
    leak = details["32"]
    leak.update({"type": "Generic Zigbee Moisture Sensor", "room": "Basement", "date": "2024-05-01T22:03:10+0000"})
    outlet = details["176"]
    outlet.update({"type": "Generic Zigbee Outlet", "room": "Loft", "date": "2024-05-02T07:55:31+0000"})

    lock = _fixture_json("device_lock.json")
    lock["attributes"] = [
        samples["lock"],
        samples["battery"],
        samples["codeLength"],
        *lock["attributes"],
    ]
    lock["capabilities"] = ["Actuator", "Battery", "Configuration", "Lock", "LockCodes", "Refresh"]
    lock["commands"] = ["configure", "deleteCode", "getCodes", "lock", "refresh", "setCode", "setCodeLength", "unlock"]
    lock["date"] = "2024-05-02T06:40:02+0000"

    motion = {
        "id": "22",
        "name": "Tuya Zigbee mmWave Sensor",
        "label": "Office Presence",
        "type": "Tuya Zigbee mmWave Sensor",
        "room": "Office",
        "date": "2024-05-02T08:20:05+0000",
        "attributes": [
            samples["motion"],
            samples["healthStatus"],
            samples["fadingTime"],
            samples["illuminance"],
            samples["detectionDelay"],
        ],
        "capabilities": ["MotionSensor", "IlluminanceMeasurement", "HealthCheck", "Refresh", "Sensor"],
        "commands": ["refresh"],
    }

    # Virtual RGB light from the hacs-hubitat README: `switch` twice, commands duplicated (ref §1.3).
    bulb = {
        "id": "2178",
        "name": "Virtual RGB light",
        "label": "Sofa Lamp",
        "type": "Virtual RGB light",
        "room": "Living Room",
        "date": "2024-05-01T21:14:09+0000",
        "attributes": [
            {"name": "RGB", "currentValue": None, "dataType": "STRING"},
            {"name": "color", "currentValue": None, "dataType": "STRING"},
            {"name": "colorName", "currentValue": "Red", "dataType": "STRING"},
            {"name": "hue", "currentValue": 0, "dataType": "NUMBER"},
            {"name": "level", "currentValue": 100, "dataType": "NUMBER", "unit": "%"},
            {"name": "saturation", "currentValue": 74, "dataType": "NUMBER"},
            {"name": "switch", "currentValue": "off", "dataType": "ENUM", "values": ["on", "off"]},
            {"name": "switch", "currentValue": "off", "dataType": "ENUM", "values": ["on", "off"]},
        ],
        "capabilities": ["Actuator", "ColorControl", "Light", "Switch", "SwitchLevel"],
        "commands": ["off", "off", "on", "on", "setColor", "setHue", "setLevel", "setSaturation"],
    }

    thermo_caps = _fixture_json("device_thermostat_capabilities.json")[0]["capabilities"]
    thermo_attrs = [a for c in thermo_caps if isinstance(c, dict) for a in c["attributes"]]
    thermostat = {
        "id": "412",
        "name": "Honeywell TCC Thermostat",
        "label": "Hallway Thermostat",
        "type": "Honeywell WiFi Thermostat",
        "room": "Hallway",
        "date": "2024-05-02T08:01:00+0000",
        "attributes": [
            {"name": "coolingSetpoint", "currentValue": 74.0, "dataType": "NUMBER", "unit": "°F"},
            {"name": "heatingSetpoint", "currentValue": 68.0, "dataType": "NUMBER", "unit": "°F"},
            {"name": "thermostatSetpoint", "currentValue": 68.0, "dataType": "NUMBER", "unit": "°F"},
            {"name": "temperature", "currentValue": 74.0, "dataType": "NUMBER", "unit": "°F"},
            *thermo_attrs,  # humidity "41" (coerced to 41), thermostatFanMode "fanAuto" (off-enum), powerSource
            {
                "name": "supportedThermostatModes",
                "currentValue": '["auto", "cool", "emergency heat", "heat", "off"]',
                "dataType": "JSON_OBJECT",
            },
            {
                "name": "supportedThermostatFanModes",
                "currentValue": '["auto", "circulate", "on"]',
                "dataType": "JSON_OBJECT",
            },
            {"name": "thermostatMode", "currentValue": "auto", "dataType": "ENUM"},
            {"name": "thermostatOperatingState", "currentValue": "cooling", "dataType": "ENUM"},
        ],
        "capabilities": [
            "Thermostat",
            "RelativeHumidityMeasurement",
            "TemperatureMeasurement",
            "ThermostatCoolingSetpoint",
            "ThermostatHeatingSetpoint",
            "ThermostatSetpoint",
            "ThermostatMode",
            "ThermostatFanMode",
            "ThermostatOperatingState",
            "PowerSource",
            "Refresh",
        ],
        "commands": [
            "auto",
            "cool",
            "emergencyHeat",
            "fanAuto",
            "fanCirculate",
            "fanOn",
            "heat",
            "off",
            "refresh",
            "setCoolingSetpoint",
            "setHeatingSetpoint",
            "setThermostatFanMode",
            "setThermostatMode",
        ],
    }
    for entry in thermostat["attributes"]:
        if entry["name"] == "humidity":
            entry["unit"] = "%"
    return [contact, leak, outlet, switch_130, hygrometer_spec, trv_spec, lock, motion, bulb, thermostat]


def _device_spec_units(item: dict[str, Any], units: dict[str, str]) -> dict[str, Any]:
    """Turn a /devices/all item into a typed spec, keeping its junk-key position and adding units."""
    device = _device_from_spec(item)
    attrs = []
    for name in device.layout:
        a = device.attributes[name]
        entry: dict[str, Any] = {"name": name, "currentValue": a.value, "dataType": a.data_type}
        if a.has_values_key:
            entry["values"] = a.values
        entry["unit"] = units.get(name, a.unit)
        attrs.append(entry)
    spec = {k: v for k, v in item.items() if k not in ("attributes", "capabilities", "commands")}
    spec.update(
        attributes=attrs,
        capabilities=device.capabilities,
        commands=device.commands,
        _junkPosition=device.junk_position,
    )
    return spec


@dataclass(slots=True, eq=False)
class _EventSocket:
    """One accepted /eventsocket connection with its own ordered send queue (set_attribute only enqueues)."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: deque[str] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set when the handler has returned
    dead: bool = False  # "zombie" after a simulated reboot: open TCP, never another byte (ref §2.3)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def enqueue(self, frame: str) -> None:
        self.queue.append(frame)
        self.idle.clear()
        self.wakeup.set()

    def abort(self) -> None:
        self.dead = True
        self.idle.set()
        if self.transport is not None:
            self.transport.abort()


# --------------------------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------------------------


class HubitatSim:
    """A Hubitat Elevation hub on 127.0.0.1: Maker API, postURL webhook and /eventsocket.

    Quirk and fault switches are plain public attributes and may be flipped at any time; observation
    counters are plain attributes too. See the module docstring for the reference sections reproduced.
    """

    def __init__(
        self,
        *,
        app_id: int = 12,
        access_token: str = "sim-token",
        devices: list[dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.app_id = app_id
        self.access_token = access_token
        self._seed = seed
        # Separate streams so that frame quirks stay reproducible whatever the webhook does.
        self._frame_rng = random.Random(seed)
        self._post_rng = random.Random(seed + 7919)
        specs = default_devices() if devices is None else devices
        self._devices: dict[str, _Device] = {}
        for spec in specs:
            dev = _device_from_spec(spec)
            if dev.id in self._devices:
                raise ValueError(f"duplicate device id {dev.id}")
            self._devices[dev.id] = dev
        self._modes: list[dict[str, Any]] = [
            {"id": int(m["id"]), "name": str(m["name"])} for m in _fixture_json("modes.json")
        ]
        self._mode_id: int = next(int(m["id"]) for m in _fixture_json("modes.json") if m["active"])
        self._hsm: str = str(_fixture_json("hsm.json")["hsm"])
        self.firmware: str = FIRMWARE
        self.location_name: str = LOCATION_NAME

        # --- quirks -------------------------------------------------------------------------------------------
        self.html_content_type: bool = True
        self.duplicate_frame_rate: float = 0.0
        self.split_frame_rate: float = 0.0
        self.ping_interval: float | None = None
        self.omit_event_type: bool = False  # 2020-era builds: no `type` key in frames/POSTs (ref §1.4, §2.2)
        self.post_location_events: bool = True  # Maker API "Include location events to be sent by POST"
        self.post_drop_rate: float = 0.0  # fraction of webhook POSTs lost on the network (ref §7)
        self.post_timeout: float = 2.0
        self.overload_limit: int | None = None  # >N concurrent Maker API requests -> HTTP 500 (ref §5.6)
        self.command_latency: float = 0.0  # delay before a command's state change lands (ref §1.2)
        # --- faults -------------------------------------------------------------------------------------------
        self.token_valid: bool = True
        self.starting_up: bool = False
        self.starting_up_status: int = 503
        self.response_delay: float = 0.0
        self.html_error: int | None = None
        self.malformed_json: bool = False
        self.silent: bool = False
        # --- observation --------------------------------------------------------------------------------------
        self.requests: list[tuple[str, str]] = []
        self.max_in_flight: int = 0
        self.overlapping_polls: int = 0
        self.eventsocket_connections: int = 0
        self.events_emitted: int = 0
        self.post_results: list[tuple[dict[str, Any], int | None]] = []
        self.posted_url: str | None = None
        # --- server plumbing ----------------------------------------------------------------------------------
        self.url: str = ""
        self.port: int = 0
        self._in_flight = 0
        self._polls_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._sockets: dict[_EventSocket, None] = {}  # insertion-ordered set
        self._post_queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._post_wakeup = asyncio.Event()
        self._posts_idle = asyncio.Event()
        self._posts_idle.set()
        self._post_session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._commands_pending: set[asyncio.TimerHandle | asyncio.Handle] = set()

    # ----------------------------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and serve. ``port=0`` picks a free port; read it back from :attr:`port` / :attr:`url`."""
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._observe])
        app.on_response_prepare.append(self._hub_headers)
        app.router.add_get("/eventsocket", self._handle_eventsocket)
        app.router.add_route("*", "/apps/api/{app_id}", self._handle_maker)
        app.router.add_route("*", "/apps/api/{app_id}/{tail:.*}", self._handle_maker)
        app.router.add_get("/hubStatus", self._handle_hub_status)
        app.router.add_get("/hub2/hubData", self._handle_hub_data)
        app.router.add_get("/hub/eventsJson", self._handle_hub_events)
        app.router.add_get("/hub/advanced/{name}", self._handle_hub_advanced)
        app.router.add_post("/hub/reboot", self._handle_hub_reboot)
        app.router.add_get("/hub/reboot", self._handle_hub_reboot_get, allow_head=False)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.url = f"http://{host}:{self.port}"
        self._post_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=self.post_timeout)
        )
        self._spawn(self._post_worker())

    async def stop(self) -> None:
        """Close eventsockets (close frame, then abort), abandon queued POSTs and shut the server down."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for handle in self._commands_pending:
            handle.cancel()
        self._commands_pending.clear()
        await asyncio.gather(*(self._close_socket(s) for s in list(self._sockets)), return_exceptions=True)
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._post_queue.clear()
        self._posts_idle.set()
        if self._post_session is not None:
            await self._post_session.close()
            self._post_session = None
        await runner.cleanup()

    async def __aenter__(self) -> HubitatSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ----------------------------------------------------------------------------------------------------------
    # Hub state
    # ----------------------------------------------------------------------------------------------------------

    def devices(self) -> list[str]:
        return list(self._devices)

    def value(self, device_id: str, attribute: str) -> Any:
        """Current value as /devices/<id> would return it (NUMBER typed, DECIMAL/ENUM/STRING as strings)."""
        return self._devices[str(device_id)].attributes[attribute].value

    def state(self) -> dict[tuple[str, str], Any]:
        return {(d.id, a.name): a.value for d in self._devices.values() for a in d.attributes.values()}

    @property
    def mode(self) -> str:
        return str(next(m["name"] for m in self._modes if m["id"] == self._mode_id))

    @property
    def hsm(self) -> str:
        return self._hsm

    def set_attribute(
        self,
        device_id: str,
        attribute: str,
        value: Any,
        *,
        push: bool = True,
        unit: str | None = None,
        description: str | None = None,
        event_type: str | None = None,
        data: str | None = None,
        is_state_change: bool = False,
    ) -> bool:
        """Change hub state like a driver's ``sendEvent`` and, if ``push``, publish the event.

        Like the real platform, an event whose value equals the current one is filtered out (ref §1.5,
        ``isStateChange`` default) and ``False`` is returned; pass ``is_state_change=True`` to force it (as
        button drivers do). ``push=False`` changes state silently (a missed event). Unknown attributes are
        created on the fly with an inferred dataType. Publishing only enqueues (cheap); per-socket sender tasks
        and one POST worker do the I/O. Returns whether an event was generated. Call from the event-loop
        thread.
        """
        dev = self._devices[str(device_id)]
        attr = dev.attributes.get(attribute)
        if attr is None:
            data_type = _infer_type(value)
            attr = _Attribute(attribute, data_type, None, False, unit or _DEFAULT_UNITS.get(attribute), None)
            dev.attributes[attribute] = attr
            dev.layout.append(attribute)
        new = _coerce(attr.data_type, value)
        if new == attr.value and type(new) is type(attr.value) and not is_state_change:
            return False
        attr.value = new
        now = time.time()
        dev.last_event = now
        text = _wire_string(new)
        ev_unit = unit if unit is not None else attr.unit
        dev.history.append((now, attribute, text, ev_unit))
        if not push:
            return True
        if description is None:
            shown = "null" if text is None else text
            if attribute in _SHORT_DESCRIPTION:
                description = f"{dev.label} is {shown}"
            else:
                description = f"{dev.label} {attribute} is {shown}{ev_unit or ''}"
        self._emit("DEVICE", attribute, text, dev.label, dev.id, dev.int_id, description, ev_unit, event_type, data)
        return True

    def set_mode(self, name: str) -> None:
        """Switch the location mode (adds the mode if unknown) and publish a ``mode`` location event."""
        mode = next((m for m in self._modes if m["name"] == name), None)
        if mode is None:
            mode = {"id": max((m["id"] for m in self._modes), default=0) + 1, "name": name}
            self._modes.append(mode)
        self._mode_id = int(mode["id"])
        # Shape of postURL_events.json "mode": type LOCATION_MODE_CHANGE, displayName = location name.
        self._emit_location("mode", name, f"{self.location_name} is now in {name} mode", "LOCATION_MODE_CHANGE")

    def set_hsm(self, status: str) -> None:
        self._hsm = status
        self._emit_location("hsmStatus", status, "hsmEvent", None)  # descriptionText as in postURL_events.json

    def hsm_alert(self, value: str) -> None:
        self._emit_location("hsmAlert", value, "hsmEvent", None)

    def system_start(self) -> None:
        """Publish ``systemStart`` as a rebooted hub does (value = firmware build, ref §1.4 / §4).

        On the eventsocket the frame carries ``source":"HUB"`` (the source the hub's own /hub/eventsJson uses
        for this event, ref §2.2 — an inference); on the webhook it is a location event (``deviceId`` null).
        """
        self._emit(
            "HUB",
            "systemStart",
            self.firmware,
            self.location_name,
            None,
            0,
            f"System startup with build: {self.firmware}",
            None,
            None,
            None,
        )

    async def reboot(self, *, downtime: float = 0.5, dead_sockets: bool = False) -> None:
        """Simulate a hub reboot: sockets die, the hub answers "starting up" for ``downtime``, then systemStart.

        ``dead_sockets=True`` reproduces ref §2.3: the old connections stay open but never carry another frame
        or pong (no close frame); otherwise they are dropped abruptly.
        """
        if dead_sockets:
            for sock in self._sockets:
                sock.dead = True
                sock.queue.clear()
                sock.idle.set()
        else:
            await self.drop_eventsockets()
        self.starting_up = True
        await asyncio.sleep(downtime)
        self.starting_up = False
        self.system_start()

    def _emit_location(self, name: str, value: str, description: str, event_type: str | None) -> None:
        self._emit("LOCATION", name, value, self.location_name, None, 0, description, None, event_type, None)

    def _emit(
        self,
        source: str,
        name: str,
        value: str | None,
        display_name: str | None,
        device_id: str | None,
        int_device_id: int,
        description: str | None,
        unit: str | None,
        event_type: str | None,
        data: str | None,
    ) -> None:
        self.events_emitted += 1
        if self._sockets and not self.silent:
            # Hand-built frame, spacing copied from the helog capture (eventsocket_frames.txt lines 1-2, ref
            # §2.2): irregular " : " spacing, "null" strings, integer deviceId/hubId/installedAppId.
            if self.omit_event_type:  # older build, line 4 of the fixture
                frame = (
                    f'{{ "source":{_q(source)},"name":{_q(name)},"displayName" : {_q(display_name)}, '
                    f'"value" : {_q(value)}, "unit":{_q(unit)},"deviceId":{int_device_id},"hubId":0,'
                    f'"installedAppId":0,"descriptionText" : {_q(description)}}}'
                )
            else:
                frame = (
                    f'{{ "source":{_q(source)},"name":{_q(name)},"displayName" : {_q(display_name)}, '
                    f'"value" : {_q(value)}, "type" : {_q(event_type)}, "unit":{_q(unit)},'
                    f'"deviceId":{int_device_id},"hubId":0,"installedAppId":0,'
                    f'"descriptionText" : {_q(description)}}}'
                )
            for sock in self._sockets:
                if not sock.dead:
                    sock.enqueue(frame)
        url = self.posted_url
        if url is not None and (device_id is not None or self.post_location_events):
            # Webhook body (postURL_events.json, ref §1.4): real JSON nulls, value a string, deviceId a string
            # for devices and null for location events.
            content: dict[str, Any] = {
                "name": name,
                "value": value,
                "displayName": display_name,
                "deviceId": device_id,
                "descriptionText": description,
                "unit": unit,
                "type": event_type,
                "data": data,
            }
            if self.omit_event_type:
                del content["type"]
            self._post_queue.append((url, {"content": content}))
            self._posts_idle.clear()
            self._post_wakeup.set()

    # ----------------------------------------------------------------------------------------------------------
    # Bulk / demo helpers
    # ----------------------------------------------------------------------------------------------------------

    async def push_burst(self, changes: Iterable[tuple[str, str, Any]], timeout: float = 60.0) -> None:
        """Apply many changes (each published unless unchanged) and wait until every frame was written to
        every connected eventsocket. Raises :class:`TimeoutError` if the clients cannot keep up in time."""
        for device_id, attribute, value in changes:
            self.set_attribute(device_id, attribute, value)
        await self.wait_eventsockets_idle(timeout)

    async def wait_eventsockets_idle(self, timeout: float = 10.0) -> None:
        """Wait until every connected eventsocket has written all queued frames."""
        async with asyncio.timeout(timeout):
            for sock in list(self._sockets):
                await sock.idle.wait()

    async def wait_posts_idle(self, timeout: float = 10.0) -> None:
        """Wait until every queued postURL POST has been attempted (raises :class:`TimeoutError`)."""
        async with asyncio.timeout(timeout):
            await self._posts_idle.wait()

    async def random_activity(self, interval: float = 1.0) -> None:
        """Forever: every ``interval`` seconds change one to three attributes like live devices would."""
        rng = random.Random(self._seed + 1)
        while True:
            await asyncio.sleep(interval)
            for _ in range(rng.randint(1, 3)):
                self._random_change(rng)

    def _random_change(self, rng: random.Random) -> None:
        skip = {"numberOfButtons", "maxCodes", "codeLength", "pushed", "held", "hue", "saturation"}
        candidates = [
            (dev, attr)
            for dev in self._devices.values()
            for attr in dev.attributes.values()
            if attr.name not in skip
            and (
                (attr.data_type == "NUMBER" and isinstance(attr.value, (int, float)))
                or (attr.data_type == "ENUM" and attr.values and len(attr.values) > 1)
            )
        ]
        if not candidates:
            return
        dev, attr = rng.choice(candidates)
        new: Any
        if attr.data_type == "ENUM":
            assert attr.values is not None
            new = rng.choice([v for v in attr.values if v != attr.value] or attr.values)
        elif isinstance(attr.value, float):
            new = round(attr.value + rng.choice([-1, 1]) * rng.uniform(0.1, 0.6), 1)
        else:
            new = attr.value + rng.choice([-1, 1]) * rng.randint(1, 3)
            if attr.unit == "%":
                new = min(100, max(0, new))
        self.set_attribute(dev.id, attr.name, new, event_type="physical")

    # ----------------------------------------------------------------------------------------------------------
    # Eventsocket
    # ----------------------------------------------------------------------------------------------------------

    async def drop_eventsockets(self) -> None:
        """Abruptly close every eventsocket (TCP abort, no close frame), as a crashing/rebooting hub does."""
        socks = list(self._sockets)
        for sock in socks:
            sock.abort()
        # Let the handlers notice so `eventsocket` bookkeeping is settled when this returns.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                for sock in socks:
                    await sock.finished.wait()

    async def _close_socket(self, sock: _EventSocket) -> None:
        for task in sock.tasks:
            task.cancel()
        try:
            async with asyncio.timeout(0.2):  # a client that is not reading must not hold up stop()
                await sock.ws.close(code=WSCloseCode.GOING_AWAY)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        sock.abort()

    async def _handle_eventsocket(self, request: web.Request) -> web.StreamResponse:
        # No auth on the upgrade (ref §2.1: every client examined connects without credentials).
        if self.starting_up:
            return self._starting_up_page()
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=0.5)
        await ws.prepare(request)
        self.eventsocket_connections += 1
        sock = _EventSocket(ws=ws, transport=request.transport)
        sock.idle.set()
        self._sockets[sock] = None
        sock.tasks = [asyncio.create_task(self._sender(sock)), asyncio.create_task(self._pinger(sock))]
        try:
            async for msg in ws:
                # autoping is off so that a silent/dead hub can *not* answer pings (ref §2.3 dead sockets).
                if msg.type is WSMsgType.PING and not (self.silent or sock.dead):
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
                # Text from clients (danTapps sends '{}' as a probe, ref §2.1) is ignored.
        except ConnectionError:
            pass
        finally:
            self._sockets.pop(sock, None)
            sock.idle.set()
            for task in sock.tasks:
                task.cancel()
            sock.finished.set()
            await asyncio.gather(*sock.tasks, return_exceptions=True)
        return ws

    async def _sender(self, sock: _EventSocket) -> None:
        queue, ws = sock.queue, sock.ws
        try:
            while True:
                if not queue:
                    sock.idle.set()
                    sock.wakeup.clear()
                    await sock.wakeup.wait()
                    continue
                frame = queue.popleft()
                if self.silent or sock.dead:
                    continue  # a dead socket swallows everything
                copies = 2 if self.duplicate_frame_rate and self._frame_rng.random() < self.duplicate_frame_rate else 1
                for _ in range(copies):  # no de-duplication on the eventsocket (ref §2.2, §5.5)
                    if self.split_frame_rate and len(frame) > 1 and self._frame_rng.random() < self.split_frame_rate:
                        # One JSON object across two text frames (helog `toleratesSplitJson`, ref §2.2).
                        cut = self._frame_rng.randint(1, len(frame) - 1)
                        await ws.send_str(frame[:cut])
                        await ws.send_str(frame[cut:])
                    else:
                        await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            pass  # peer went away; the handler's reader notices and cleans up
        finally:
            sock.dead = True  # stop queueing frames nobody will send
            queue.clear()
            sock.idle.set()

    async def _pinger(self, sock: _EventSocket) -> None:
        # Server-initiated pings (node-red expects one every 120 s, ref §2.3); interval is re-read each round so
        # tests may switch it on/off at any time.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                interval = self.ping_interval
                if interval is None or interval <= 0:
                    await asyncio.sleep(0.1)
                    continue
                await asyncio.sleep(interval)
                if self.ping_interval is not None and not (self.silent or sock.dead) and not sock.ws.closed:
                    await sock.ws.ping()

    # ----------------------------------------------------------------------------------------------------------
    # postURL worker
    # ----------------------------------------------------------------------------------------------------------

    async def _post_worker(self) -> None:
        """POST queued webhook bodies one at a time, in event order, never retrying (ref §1.4 delivery)."""
        queue = self._post_queue
        while True:
            if not queue:
                self._posts_idle.set()
                self._post_wakeup.clear()
                await self._post_wakeup.wait()
                continue
            url, body = queue.popleft()
            status: int | None = None
            if not (self.post_drop_rate and self._post_rng.random() < self.post_drop_rate):
                status = await self._post_once(url, body)
            self.post_results.append((body, status))

    async def _post_once(self, url: str, body: dict[str, Any]) -> int | None:
        session = self._post_session
        if session is None:
            return None
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            async with session.post(
                url,
                data=payload,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.post_timeout),
            ) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None

    # ----------------------------------------------------------------------------------------------------------
    # HTTP plumbing
    # ----------------------------------------------------------------------------------------------------------

    @web.middleware
    async def _observe(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]  # never record the query: it holds the access token
        self.requests.append((request.method, path))
        if path == "/eventsocket":
            return await handler(request)
        is_poll = path.endswith("/devices/all") and path.startswith("/apps/api/")
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if is_poll:
            if self._polls_in_flight:
                self.overlapping_polls += 1
            self._polls_in_flight += 1
        overloaded = self.overload_limit is not None and self._in_flight > self.overload_limit
        try:
            if self.response_delay > 0:
                await asyncio.sleep(self.response_delay)
            if overloaded and path.startswith("/apps/api/"):
                # Bursts of simultaneous Maker API calls get HTTP 500 (node-red #46, ref §5.6).
                return self._error_page(500)
            return await handler(request)
        finally:
            self._in_flight -= 1
            if is_poll:
                self._polls_in_flight -= 1

    async def _hub_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        # ref §1.1: no Server header, a HUBSESSION cookie on every response, Expires in 1970.
        response.headers.popall("Server", None)
        if response.status != 101:
            response.headers["Expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
            response.headers.add("Set-Cookie", f"HUBSESSION={uuid.uuid4()}; Path=/")

    def _json(self, request: web.Request, payload: Any, *, truncate: bool = False) -> web.Response:
        indent = 4 if request.query.get("prettyPrint") == "true" else None  # ref §1.3 (&prettyPrint=true)
        text = json.dumps(payload, indent=indent, separators=None if indent else (",", ":"), ensure_ascii=False)
        if truncate:
            text = text[: max(1, len(text) * 2 // 3)]  # cut mid-object, still HTTP 200
        return self._body(text, _TEXT_HTML if self.html_content_type else _APPLICATION_JSON)

    @staticmethod
    def _body(text: str, content_type: str, status: int = 200) -> web.Response:
        resp = web.Response(body=text.encode("utf-8"), status=status, headers={"Content-Type": content_type})
        resp.enable_chunked_encoding()  # ref §1.1: chunked transfer encoding, no Content-Length
        return resp

    def _error_page(self, status: int) -> web.Response:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        text = (
            f"<!DOCTYPE html><html><head><title>Error {status}</title></head>"
            f"<body><h2>HTTP ERROR {status}</h2><p>{phrase}</p></body></html>"
        )
        return self._body(text, _TEXT_HTML, status)

    def _starting_up_page(self) -> web.Response:
        text = (
            "<!DOCTYPE html><html><head><title>Hubitat Elevation</title></head>"
            f"<body><h1>{_STARTING_UP_TEXT}</h1><p>Please wait...</p></body></html>"
        )
        return self._body(text, _TEXT_HTML, self.starting_up_status)

    def _invalid_token(self) -> web.Response:
        # error_invalid_token.xml verbatim (ref §1.1): XML, not JSON, with HTTP 401.
        return self._body(_fixture_text("error_invalid_token.xml").strip(), "application/xml;charset=UTF-8", 401)

    def _not_found(self) -> web.Response:
        return self._error_page(404)

    def _authorized(self, request: web.Request) -> bool:
        if not self.token_valid:
            return False
        if request.match_info.get("app_id") != str(self.app_id):
            return False  # a token only opens the Maker API instance it belongs to
        token = request.query.get("access_token")
        if token is None:
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                token = auth[len("Bearer ") :]  # ref §3: Bearer header carries the same app token [INF]
        return token == self.access_token

    # ----------------------------------------------------------------------------------------------------------
    # Maker API
    # ----------------------------------------------------------------------------------------------------------

    async def _handle_maker(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return self._starting_up_page()
        if self.html_error is not None:
            return self._error_page(self.html_error)
        if not self._authorized(request):
            return self._invalid_token()
        parts = request.raw_path.partition("?")[0].split("/", 4)
        tail = parts[4] if len(parts) > 4 else ""
        if tail == "postURL" or tail.startswith("postURL/"):
            return self._handle_post_url(request, tail[len("postURL/") :])
        segs = [unquote(s) for s in tail.split("/")]
        while segs and segs[-1] == "":
            segs.pop()
        match segs:
            case ["devices"]:
                # ref §1.3 DeviceInfo.json (newer firmware adds `type`)
                return self._json(
                    request,
                    [{"id": d.id, "name": d.name, "label": d.label, "type": d.type} for d in self._devices.values()],
                )
            case ["devices", "all"]:
                return self._devices_all(request)
            case ["devices", "*"]:
                return self._json(request, [self._list_form(d) for d in self._devices.values()])
            case ["devices", dev_id, *rest] if dev_id in self._devices:
                return self._device_endpoint(request, self._devices[dev_id], rest)
            case ["devices", _, *_]:
                return self._not_found()
            case ["modes"]:
                return self._json(request, self._modes_json())
            case ["modes", mode_id]:
                mode = next((m for m in self._modes if str(m["id"]) == mode_id), None)
                if mode is None:
                    return self._not_found()
                self.set_mode(mode["name"])
                return self._json(request, self._modes_json())  # hubitatmaker set_mode parses a list (ref §1.2)
            case ["hsm"]:
                return self._json(request, {"hsm": self._hsm})
            case ["hsm", command] if command in _HSM_COMMANDS:
                self._hsm_command(command)
                return self._json(request, {"hsm": self._hsm})
            case _:
                return self._not_found()

    def _handle_post_url(self, request: web.Request, raw_url: str) -> web.Response:
        # GET /postURL/<urlencoded> registers, GET /postURL clears (Maker API New Features post, ref §1.2).
        url = unquote(raw_url) if raw_url else None
        self.posted_url = url or None
        return self._json(request, {"url": self.posted_url})

    def _devices_all(self, request: web.Request) -> web.Response:
        items = [self._all_item(d) for d in self._devices.values()]
        return self._json(request, items, truncate=self.malformed_json)

    def _device_endpoint(self, request: web.Request, dev: _Device, rest: list[str]) -> web.Response:
        match rest:
            case []:
                return self._json(request, self._detail(dev))
            case ["events"]:
                return self._json(request, self._events_json(dev, request.query.get("num")))
            case ["commands"]:
                seen: dict[str, None] = dict.fromkeys(dev.commands)
                return self._json(request, [{"command": c, "type": _COMMAND_ARG_TYPES.get(c, ["n/a"])} for c in seen])
            case ["capabilities"]:
                return self._json(request, [{"capabilities": self._capabilities_with_values(dev)}])
            case ["attribute", name] if name in dev.attributes:
                value = _wire_string(dev.attributes[name].value)
                return self._json(request, {"id": dev.id, "attribute": name, "value": value})
            case ["attribute", *_]:
                return self._not_found()
            case [command, *args] if command in dev.commands:
                # The response is the device JSON as it was *before* the command took effect (Crestron log:
                # `unlock` answered with lock "locked", ref §1.2); the state change lands right after.
                detail = self._detail(dev)
                split_args = [a for raw in args for a in raw.split(",") if a != ""]  # "3,4321,Guest" (ref §1.2)
                self._schedule_command(dev, command, [_parse_arg(a) for a in split_args])
                return self._json(request, detail)
            case [_, *_]:
                return self._error_page(400)
        return self._not_found()

    def _schedule_command(self, dev: _Device, command: str, args: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | asyncio.Handle

        def run() -> None:
            self._commands_pending.discard(handle)
            self._apply_command(dev, command, args)

        handle = loop.call_later(self.command_latency, run) if self.command_latency > 0 else loop.call_soon(run)
        self._commands_pending.add(handle)

    def _apply_command(self, dev: _Device, command: str, args: list[Any]) -> None:
        attrs = dev.attributes

        def put(name: str, value: Any, *, force: bool = False) -> None:
            if name in attrs:
                self.set_attribute(dev.id, name, value, event_type="digital", is_state_change=force)

        first = args[0] if args else None
        if command in ("on", "off") and "switch" in attrs:
            put("switch", command)
        elif command in ("off", "heat", "cool", "auto", "emergencyHeat"):
            put("thermostatMode", "emergency heat" if command == "emergencyHeat" else command)
        elif command == "setThermostatMode" and first is not None:
            put("thermostatMode", first)
        elif command in ("fanOn", "fanAuto", "fanCirculate"):
            put("thermostatFanMode", command[3:].lower())
        elif command == "setThermostatFanMode" and first is not None:
            put("thermostatFanMode", first)
        elif command == "setLevel" and first is not None:
            put("level", first)
            put("switch", "on" if first else "off")
        elif command in ("setHue", "setSaturation", "setColorTemperature") and first is not None:
            put({"setHue": "hue", "setSaturation": "saturation"}.get(command, "colorTemperature"), first)
            if command == "setColorTemperature" and len(args) > 1:
                put("level", args[1])
        elif command == "setColor" and isinstance(first, str):
            with contextlib.suppress(ValueError):
                color = json.loads(first)
                for key in ("hue", "saturation", "level"):
                    if key in color:
                        put(key, color[key])
        elif command in ("lock", "unlock"):
            put("lock", command + "ed")
        elif command == "setHeatingSetpoint" and first is not None:
            put("heatingSetpoint", first)
            # A TRV has no separate heatingSetpoint; a full thermostat follows it only while heating.
            if "heatingSetpoint" not in attrs or self._mode_of(dev) == "heat":
                put("thermostatSetpoint", first)
        elif command == "setCoolingSetpoint" and first is not None:
            put("coolingSetpoint", first)
            if self._mode_of(dev) == "cool":
                put("thermostatSetpoint", first)
        elif command == "setThermostatSetpoint" and first is not None:
            put("thermostatSetpoint", first)
        elif command in ("push", "hold", "doubleTap"):
            # Button events always fire, even for the same button (drivers force isStateChange, ref §5.7).
            put({"push": "pushed", "hold": "held"}.get(command, "doubleTapped"), first or 1, force=True)
        elif command in ("open", "close"):
            for name in ("door", "valve", "windowShade", "contact"):
                if name in attrs:
                    put(name, "open" if command == "open" else "closed")
                    break
        # configure/refresh/... are accepted and change nothing: an unchanged value produces no event.

    @staticmethod
    def _mode_of(dev: _Device) -> Any:
        attr = dev.attributes.get("thermostatMode")
        return None if attr is None else attr.value

    def _hsm_command(self, command: str) -> None:
        status = _HSM_COMMANDS[command]
        if status is not None:
            self.set_hsm(status)
        elif command == "cancelAlerts":
            self.hsm_alert("cancel")
        else:
            self._emit_location("hsmRules", "armedRule" if command == "armRules" else "disarmedRule", "hsmEvent", None)

    # ----------------------------------------------------------------------------------------------------------
    # Renderers
    # ----------------------------------------------------------------------------------------------------------

    def _modes_json(self) -> list[dict[str, Any]]:
        # modes.json: integer ids, exactly one active (ref §1.2)
        return [{"active": m["id"] == self._mode_id, "id": m["id"], "name": m["name"]} for m in self._modes]

    @staticmethod
    def _attr_entry(attr: _Attribute) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": attr.name, "currentValue": attr.value, "dataType": attr.data_type}
        if attr.has_values_key:
            entry["values"] = attr.values
        return entry

    def _detail(self, dev: _Device) -> dict[str, Any]:
        # device_switch_130.json / device_lock.json order; typed currentValue; duplicates kept (ref §1.3).
        out: dict[str, Any] = {"id": dev.id, "name": dev.name, "label": dev.label, "type": dev.type}
        if dev.room is not None:
            out["room"] = dev.room
        out["attributes"] = [self._attr_entry(dev.attributes[n]) for n in dev.layout]
        out["capabilities"] = dev.capabilities
        out["commands"] = dev.commands
        return out

    def _all_attributes(self, dev: _Device) -> dict[str, Any]:
        # Flat map of *strings* plus the junk "dataType"/"values" keys (devices_all.json, ref §1.3). In both
        # fixture devices the junk dataType equals the dataType of the device's last attribute and values is
        # null; that rule is what we reproduce.
        attrs: dict[str, Any] = {}
        unique = list(dev.attributes.values())
        for index, attr in enumerate(unique):
            if index == dev.junk_position:
                attrs["dataType"] = dev.attributes[dev.layout[-1]].data_type
                attrs["values"] = None
            attrs[attr.name] = _wire_string(attr.value)
        if unique and "dataType" not in attrs:
            attrs["dataType"] = dev.attributes[dev.layout[-1]].data_type
            attrs["values"] = None
        return attrs

    def _all_item(self, dev: _Device) -> dict[str, Any]:
        return {
            "name": dev.name,
            "label": dev.label,
            "type": dev.type,
            "id": dev.id,
            "date": dev.date if dev.last_event is None else _hub_date(dev.last_event),
            "model": dev.model,
            "manufacturer": dev.manufacturer,
            "room": dev.room,
            "capabilities": [c for c in dev.capabilities if isinstance(c, str)],
            "attributes": self._all_attributes(dev),
            "commands": [{"command": c} for c in dev.commands],
        }

    def _list_form(self, dev: _Device) -> dict[str, Any]:
        # /devices/* : /devices/all content with attributes as a typed list (ref §1.2, inferred from clients).
        item = self._all_item(dev)
        item["attributes"] = [self._attr_entry(dev.attributes[n]) for n in dev.layout]
        return item

    def _capabilities_with_values(self, dev: _Device) -> list[Any]:
        # device_thermostat_capabilities.json: values as strings, "values": null for non-enums.
        out: list[Any] = []
        for cap in dev.capabilities:
            if isinstance(cap, dict):
                entries = []
                for ref in cap.get("attributes", []):
                    attr = dev.attributes.get(ref.get("name"))
                    if attr is not None:
                        entries.append(
                            {
                                "name": attr.name,
                                "currentValue": _wire_string(attr.value),
                                "dataType": attr.data_type,
                                "values": attr.values,
                            }
                        )
                out.append({"attributes": entries})
            else:
                out.append(cap)
        return out

    def _events_json(self, dev: _Device, num: str | None) -> list[dict[str, Any]]:
        # Rows {device_id,label,name,value,date,unit,isStateChange,source}, newest first (ref §1.2, [3P]).
        rows = list(reversed(dev.history))
        if num is not None and num.isdigit():
            rows = rows[: int(num)]
        return [
            {
                "device_id": dev.id,
                "label": dev.label,
                "name": name,
                "value": value,
                "date": _hub_date(ts),
                "unit": unit,
                "isStateChange": True,
                "source": "DEVICE",
            }
            for ts, name, value, unit in rows
        ]

    # ----------------------------------------------------------------------------------------------------------
    # Hub-root endpoints (admin UI, ref §4); no Maker API token involved
    # ----------------------------------------------------------------------------------------------------------

    async def _handle_hub_status(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            payload = {
                "serverInitPercentage": "Initializing Hub: 42%",
                "serverInitDetails": "starting apps",
                "status": "starting",
            }
        else:
            payload = _fixture_json("hub_status.json")
        return self._body(json.dumps(payload, separators=(",", ":")), _TEXT_HTML)

    async def _handle_hub_data(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return self._starting_up_page()
        data = _fixture_json("hubData.json")
        data["version"] = self.firmware
        return self._body(json.dumps(data, separators=(",", ":")), _TEXT_HTML)

    async def _handle_hub_events(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return self._starting_up_page()
        data = _fixture_json("hub_eventsJson.json")
        for row in data:
            row["value"] = self.firmware
            row["descriptionText"] = f"System startup with build: {self.firmware}"
        return self._body(json.dumps(data, separators=(",", ":")), _TEXT_HTML)

    async def _handle_hub_advanced(self, request: web.Request) -> web.StreamResponse:
        if self.starting_up:
            return self._starting_up_page()
        plain = {
            "freeOSMemory": "914716",
            "internalTempCelsius": "38.2",
            "databaseSize": "6",
            "freeOSMemoryLast": _fixture_text("freeOSMemoryLast_c8pro.csv"),
        }
        text = plain.get(request.match_info["name"])
        return self._not_found() if text is None else self._body(text, _TEXT_HTML)

    async def _handle_hub_reboot(self, request: web.Request) -> web.StreamResponse:
        # POST only; answers 200, then the hub goes down and comes back with systemStart (ref §4).
        self._spawn(self.reboot())
        return self._body("", _TEXT_HTML)

    async def _handle_hub_reboot_get(self, request: web.Request) -> web.StreamResponse:
        return self._not_found()  # ref §4: GET /hub/reboot is a 404, not a 405


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


async def _run_cli(args: argparse.Namespace) -> None:
    sim = HubitatSim(app_id=args.app_id, access_token=args.token, seed=args.seed)
    sim.duplicate_frame_rate = args.duplicate_rate
    sim.split_frame_rate = args.split_rate
    sim.ping_interval = args.ping_interval
    await sim.start(args.host, args.port)
    try:
        base = f"{sim.url}/apps/api/{sim.app_id}"
        print(f"Hubitat simulator listening on {sim.url}")
        print(f"  Maker API:   {base}/devices/all?access_token={sim.access_token}")
        print(f"  eventsocket: ws://{args.host}:{sim.port}/eventsocket")
        print(f"  devices:     {', '.join(sim.devices())}")
        print("Changing a few attributes every", args.interval, "s; Ctrl-C to stop.")
        await sim.random_activity(args.interval)
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.sim.hubitat", description="Run a simulated Hubitat Elevation hub on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--app-id", type=int, default=12)
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between random changes")
    parser.add_argument("--duplicate-rate", type=float, default=0.0)
    parser.add_argument("--split-rate", type=float, default=0.0)
    parser.add_argument("--ping-interval", type=float, default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_cli(args))


if __name__ == "__main__":
    main()
