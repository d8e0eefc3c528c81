"""Hubitat values and pushed events as pure functions: JSON text in, typed readings out (no sockets, no state).

Wire facts from ../shared/reference/hubitat.md: ``/devices/all`` gives every value as a string and ``/devices/<id>``
gives each attribute's ``dataType`` (1.3); eventsocket frames and POST-URL bodies carry the same keys, the socket
writing null as ``"null"`` and ids as integers (1.4, 2.2). Whatever the hub (or anyone who can reach the port)
sends, these functions return a value or a clear refusal: never NaN or Infinity, never a lone surrogate, never a
RecursionError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from bridge.events import Kind, SourceName
from bridge.jsontext import NotJson, clean, loads

# Attributes whose events are occurrences, not states: the same value twice is two occurrences.
MOMENTARY = frozenset({"pushed", "held", "doubleTapped", "released", "hsmAlert", "systemStart", "sunrise", "sunset"})
# Location-level names that arrive on eventsocket/POST-URL without a device (hubitat.md 1.4, 2.2).
HUB_EVENTS = frozenset({"systemStart", "severeLoad", "zigbeeOff", "zigbeeOn", "zwaveCrashed"})
# /devices/all pollutes each attribute map with these (hubitat.md 1.3); they are junk unless the device's
# detail says it really has an attribute of that name.
JUNK_ATTRIBUTE_KEYS = frozenset({"dataType", "values"})
NUMERIC_TYPES = frozenset({"NUMBER", "DECIMAL", "INTEGER"})


def null(value: Any) -> Any:
    """The eventsocket writes null as the string "null" (hubitat.md 2.2)."""
    return None if value is None or value == "null" else value


def text(value: Any) -> str | None:
    """A text field of a pushed event or a poll answer; "null" and null are None."""
    if value is None or value == "null":
        return None
    return value if value.__class__ is str else str(value)


# What the hub writes for numbers: ASCII digits, an optional sign, fraction and exponent. Python's int() and float()
# also take "1_000", full-width digits and "nan": none of those is a reading.
# Possessive quantifiers: a long run of digits followed by something else is rejected in linear time.
_INT_TEXT = re.compile(r"[+-]?\d++\Z", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d++(?:\.\d*+)?|\.\d++)(?:[eE][+-]?\d++)?\Z", re.ASCII)
# No reading has more characters than this; longer text is not worth parsing as a number.
_MAX_NUMBER_TEXT = 64


def _number(raw: Any) -> Any:
    if isinstance(raw, bool | int):
        return raw
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else str(raw)
    stripped = str(raw).strip()
    if len(stripped) > _MAX_NUMBER_TEXT:
        return stripped
    try:
        if _INT_TEXT.match(stripped):
            return int(stripped)
        if _FLOAT_TEXT.match(stripped):
            number = float(stripped)
            return number if math.isfinite(number) else stripped
    except ValueError:  # more digits than Python converts
        pass
    return stripped


def coerce(raw: Any, data_type: str | None) -> Any:
    """Type a raw attribute value by its Maker API ``dataType``. Off-type values are kept as strings."""
    raw = null(raw)
    if raw is None:
        return None
    if data_type in NUMERIC_TYPES:
        return _number(raw)
    if data_type == "BOOL":
        if isinstance(raw, bool):
            return raw
        low = str(raw).strip().lower()
        if low in ("true", "false"):
            return low == "true"
        return str(raw)
    if data_type == "JSON_OBJECT" and isinstance(raw, str):
        try:
            parsed = loads(raw)
            clean(parsed)  # depth check: a value nested 900 deep is kept as its text
        except NotJson:
            return raw
        return parsed
    if isinstance(raw, float) and not math.isfinite(raw):
        return str(raw)
    if isinstance(raw, dict | list):
        return raw  # a frame's value that is JSON already (the pipeline refuses it if it cannot be stored)
    if data_type is None and isinstance(raw, str):
        # Type not known (the detail could not be fetched yet): a numeric text is almost always a NUMBER, and
        # guessing it keeps the value stable when the real type arrives (no spurious "30.5" -> 30.5 change).
        guessed = _number(raw)
        return guessed if not isinstance(guessed, str) else raw
    # ENUM, STRING, DATE, VECTOR3, COLOR_MAP: the hub's text, as text.
    return raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, bool) else str(raw)


@dataclass(slots=True)
class Pushed:
    """A pushed event before typing (typing may need the device's detail, learned in the background)."""

    kind: Kind
    device_id: str | None
    attribute: str
    raw: Any
    source: SourceName
    device: str | None
    unit: str | None
    description: str | None
    time: float
    # time.monotonic() at receipt: a poll that started before it must not overwrite it (see Reading.observed).
    observed: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.device_id or "", self.attribute)


def pushed(
    obj: dict[str, Any], channel: SourceName, now: float, location_events: bool = True, observed: float | None = None
) -> Pushed | None:
    """An eventsocket frame or a POST-URL ``content`` object as a pushed event; None if it is not for us.

    Both carry the same keys (hubitat.md 1.4, 2.2). The eventsocket adds ``source`` and writes ``deviceId`` as
    an int, 0 when not a device; POST-URL has no ``source`` and a string or null ``deviceId``.
    """
    name = text(obj.get("name"))
    if not name:
        return None
    raw_id = obj.get("deviceId")
    did = None if raw_id in (None, 0, "0", "null", False) or isinstance(raw_id, dict | list) else str(raw_id)
    source = text(obj.get("source")) or ("DEVICE" if did is not None else "LOCATION")
    kind: Kind
    if source == "DEVICE" and did is not None:
        kind = "device"
    elif source == "HUB" or name in HUB_EVENTS:
        kind, did = "hub", None
    elif source == "LOCATION" and location_events:
        kind, did = "location", None
    else:
        return None  # APP events are app state; location events may be switched off
    return Pushed(
        kind=kind,
        device_id=did,
        attribute=name,
        raw=null(obj.get("value")),
        source=channel,
        device=text(obj.get("displayName")) if kind == "device" else None,
        unit=text(obj.get("unit")),
        description=text(obj.get("descriptionText")),
        time=now,
        observed=observed,
    )


def post_content(body: bytes) -> dict[str, Any] | str:
    """The ``content`` object of a Maker API POST-URL body, or why the body is not one (hubitat.md 1.4)."""
    try:
        data = loads(body.decode("utf-8", errors="replace"))
    except NotJson as exc:
        return f"body is not JSON ({exc})"
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, dict) or not isinstance(content.get("name"), str):
        return 'expected {"content": {"name": ..., "value": ...}}'
    return content
