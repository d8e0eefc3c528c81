"""Device model: attribute and device records, the platform's attribute and capability tables, spec parsing."""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from bridge.sim.hubitat.values import coerce, hub_date, infer_type

# dataType and ENUM values for well-known attribute names; used when a device spec (e.g. a /devices/all item,
# whose map carries no types) does not say. ENUM value lists come from the fixtures where they exist.
ATTRIBUTE_TYPES: Final[dict[str, tuple[str, list[str] | None]]] = {
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

DEFAULT_UNITS: Final[dict[str, str]] = {
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
CAPABILITY_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
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
COMMAND_ARG_TYPES: Final[dict[str, list[str]]] = {
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


@dataclass(slots=True)
class Attribute:
    name: str
    data_type: str | None
    values: list[str] | None
    has_values_key: bool
    unit: str | None
    value: Any


@dataclass(slots=True)
class Device:
    id: str
    int_id: int
    name: str
    label: str
    type: str | None
    room: str | None
    model: str | None
    manufacturer: str | None
    date: str
    attributes: dict[str, Attribute]
    layout: list[str]  # attribute names in /devices/<id> order, duplicates included (device 176 quirk)
    capabilities: list[Any]  # interleaved /devices/<id> form
    commands: list[str]  # duplicates included (device 176 quirk)
    junk_position: int  # where the junk dataType/values keys sit in the /devices/all map
    last_event: float | None = None  # overrides `date` once the device produced an event (formatted lazily)
    history: deque[tuple[float, str, str | None, str | None]] = field(default_factory=lambda: deque(maxlen=100))


def device_from_spec(spec: dict[str, Any]) -> Device:
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
    attributes: dict[str, Attribute] = {}
    layout: list[str] = []
    for entry in entries:
        name = str(entry["name"])
        layout.append(name)
        if name in attributes:
            continue
        known_type, known_values = ATTRIBUTE_TYPES.get(name, (None, None))
        data_type = entry.get("dataType") or known_type or infer_type(entry.get("currentValue"))
        if "values" in entry:
            values = entry["values"]
            has_values_key = True
        else:
            values = known_values if data_type == "ENUM" else None
            has_values_key = values is not None
        attributes[name] = Attribute(
            name=name,
            data_type=data_type,
            values=copy.deepcopy(values),
            has_values_key=has_values_key,
            unit=entry.get("unit", DEFAULT_UNITS.get(name)),
            value=coerce(data_type, entry.get("currentValue")),
        )
    caps = copy.deepcopy(list(spec.get("capabilities") or []))
    if not any(isinstance(c, dict) for c in caps):
        caps = interleave_capabilities([str(c) for c in caps], attributes)
    commands = [c["command"] if isinstance(c, dict) else str(c) for c in spec.get("commands") or []]
    return Device(
        id=dev_id,
        int_id=int(dev_id),
        name=str(spec.get("name", f"Device {dev_id}")),
        label=str(spec.get("label") or spec.get("name") or f"Device {dev_id}"),
        type=spec.get("type", spec.get("name")),
        room=spec.get("room"),
        model=spec.get("model"),
        manufacturer=spec.get("manufacturer"),
        date=str(spec.get("date") or hub_date(time.time())),
        attributes=attributes,
        layout=layout,
        capabilities=caps,
        commands=commands,
        junk_position=junk_position,
    )


def interleave_capabilities(names: list[str], attributes: dict[str, Attribute]) -> list[Any]:
    """The /devices/<id> capabilities list: each name followed by an object naming the attributes it brings."""
    out: list[Any] = []
    for cap in names:
        out.append(cap)
        attrs = [a for a in CAPABILITY_ATTRIBUTES.get(cap, ()) if a in attributes]
        if attrs:
            out.append({"attributes": [{"name": a, "dataType": None} for a in attrs]})
    return out
