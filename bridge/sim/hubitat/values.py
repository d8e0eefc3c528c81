"""How the hub renders and coerces attribute values: typed ``currentValue``, wire strings, hub dates."""

from __future__ import annotations

import json
import time
from typing import Any


def wire_string(value: Any) -> str | None:
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


def parse_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def coerce(data_type: str | None, value: Any) -> Any:
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
        parsed = parse_number(str(value))
        return str(value) if parsed is None else parsed
    return wire_string(value)


def infer_type(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "NUMBER"
    if isinstance(value, str) and parse_number(value) is not None:
        return "NUMBER"
    if isinstance(value, (dict, list)):
        return "JSON_OBJECT"
    return "STRING"


def hub_date(ts: float) -> str:
    """Hub timestamp format, e.g. ``2022-03-03T14:20:00+0000`` (devices_all.json)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(ts))


def parse_arg(text: str) -> Any:
    """A command argument from the URL: a number when it reads as one, else the text."""
    number = parse_number(text)
    return text if number is None else number
