"""Homey payloads as pure functions: parsed JSON in, typed readings out (no sockets, no state).

Wire facts from ../shared/reference/homey.md: the device list is an object keyed by device id (4.1) in the V2 or
the V3 shape (4.2); each ``capabilitiesObj`` entry describes itself (``type``, ``units``, ``value``,
``lastUpdated`` as ISO-8601), and may be missing, ``null`` or a sub-capability such as ``onoff.output1`` (7);
0-1 capabilities (dim, volume_set, light_*) stay 0-1 as the hub gives them. Zones and Logic variables are
id-keyed maps too (3.2, 3.4, 4.5); a realtime ``capability`` event carries ``{capabilityId, value,
transactionId, transactionTime}`` with the time in epoch milliseconds or null (5.4).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.events import Reading, SourceName, clean_text

# Capability entries that are actions, not state: a stateless button (getable false) or a maintenance action.
_NUMBER = re.compile(r"-?\d{1,30}(?:\.\d{1,30})?(?:[eE][+-]?\d{1,3})?")


def text(value: Any) -> str | None:
    """A label or id as text: strings cleaned, numbers as their text, anything else None."""
    if isinstance(value, str):
        return clean_text(value) or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def items(mapping: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(id, object)`` pairs of a Homey id-keyed map; a list (never seen from a real hub) is read by ``id``."""
    if isinstance(mapping, dict):
        for key, obj in mapping.items():
            if isinstance(obj, dict):
                yield str(obj.get("id") or key), obj
    elif isinstance(mapping, list):
        for obj in mapping:
            if isinstance(obj, dict) and text(obj.get("id")):
                yield str(obj["id"]), obj


def iso_time(value: Any) -> float | None:
    """``lastUpdated`` (ISO-8601 with ``Z``) as epoch seconds; None when absent or unreadable."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def epoch_ms(value: Any) -> float | None:
    """``transactionTime`` (epoch milliseconds; an ISO string accepted too) as epoch seconds, None for null."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value) / 1000.0
    return iso_time(value)


def typed(value: Any, kind: Any) -> Any:
    """A capability or variable value as its declared ``type`` says: booleans as booleans, numbers as numbers.

    The hub normally sends the right JSON type already. A numeric capability sometimes carries a string ("auto",
    homey.md 8.5): a number written as text becomes that number, other text stays text (never a made-up value).
    """
    if kind == "number":
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            number = float(value)
            if math.isfinite(number):
                return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value
    if kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, str):
        return clean_text(value)
    return value


@dataclass(slots=True)
class Capability:
    """What the bridge keeps of one capability of one device: enough to type a realtime event."""

    type: str | None
    unit: str | None


@dataclass(slots=True)
class Device:
    """What the bridge keeps of one device between polls and realtime events."""

    id: str
    name: str | None
    zone: str | None
    zone_name: str | None  # V2 devices carry their zone's name too
    available: bool
    unavailable_message: str | None
    capabilities: dict[str, Capability]


def _is_state(entry: dict[str, Any]) -> bool:
    # A stateless button or a maintenance action (button.reset_meter) has no value to forward.
    return entry.get("getable") is not False and entry.get("maintenanceAction") is not True


def parse_device(device_id: str, obj: dict[str, Any]) -> Device:
    """One device object (V2 or V3 shape) as the bridge keeps it; a ``null`` capabilitiesObj gives no capabilities."""
    caps: dict[str, Capability] = {}
    cap_obj = obj.get("capabilitiesObj")
    if isinstance(cap_obj, dict):
        for cap_id, entry in cap_obj.items():
            if isinstance(entry, dict) and _is_state(entry):
                kind = entry.get("type")
                caps[str(cap_id)] = Capability(kind if isinstance(kind, str) else None, text(entry.get("units")))
    return Device(
        id=device_id,
        name=text(obj.get("name")),
        zone=text(obj.get("zone")),
        zone_name=text(obj.get("zoneName")),
        available=obj.get("available") is not False,
        unavailable_message=text(obj.get("unavailableMessage")),
        capabilities=caps,
    )


def device_readings(
    device: Device, obj: dict[str, Any], room: str | None, source: SourceName, observed: float | None
) -> list[Reading]:
    """Every capability value of one device, plus its ``available`` state, as readings.

    ``lastUpdated`` is the event time (when the value last changed on the hub); capabilities listed in
    ``capabilities`` but missing from ``capabilitiesObj`` are skipped (homey.md 8.5).
    """
    out: list[Reading] = []
    cap_obj = obj.get("capabilitiesObj")
    if isinstance(cap_obj, dict):
        for cap_id, entry in cap_obj.items():
            if not isinstance(entry, dict) or not _is_state(entry) or "value" not in entry:
                continue
            cap = device.capabilities.get(str(cap_id))
            out.append(
                Reading(
                    kind="device",
                    device_id=device.id,
                    attribute=str(cap_id),
                    value=typed(entry.get("value"), cap.type if cap else None),
                    source=source,
                    device=device.name,
                    room=room,
                    unit=cap.unit if cap else None,
                    time=iso_time(entry.get("lastUpdated")),
                    observed=observed,
                )
            )
    out.append(
        Reading(
            kind="device",
            device_id=device.id,
            attribute="available",
            value=device.available,
            source=source,
            device=device.name,
            room=room,
            description=None if device.available else device.unavailable_message,
            observed=observed,
        )
    )
    return out


def variable_reading(obj: dict[str, Any], source: SourceName, now: float, observed: float | None) -> Reading | None:
    """One Logic variable (``{id, name, type, value}``) as a ``kind: variable`` reading named by the variable."""
    name = text(obj.get("name"))
    if name is None:
        return None
    return Reading(
        kind="variable",
        device_id=None,
        attribute=name,
        value=typed(obj.get("value"), obj.get("type")),
        source=source,
        time=now,
        observed=observed,
    )


@dataclass(slots=True)
class CapabilityEvent:
    """A realtime ``capability`` event of ``homey:device:<id>``."""

    device_id: str
    capability: str
    value: Any
    time: float | None


def capability_event(uri: str, data: Any) -> CapabilityEvent | None:
    """``(uri, "capability", data)`` as a capability event; None when it is not one we can read."""
    if not uri.startswith("homey:device:") or not isinstance(data, dict):
        return None
    cap = text(data.get("capabilityId"))
    if cap is None or "value" not in data:
        return None
    return CapabilityEvent(uri[len("homey:device:") :], cap, data.get("value"), epoch_ms(data.get("transactionTime")))


def zone_names(zones: Any) -> dict[str, str]:
    """Zone id -> name from a ``/zones/zone`` map."""
    return {zid: name for zid, z in items(zones) if (name := text(z.get("name"))) is not None}
