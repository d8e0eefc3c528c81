"""Topic and subject templates shared by the MQTT and NATS sinks: ``hubbridge/{hub}/{device}/{attribute}``.

A template names event fields in braces. Each field's text is made safe for the destination before it is put in
(MQTT: no ``/``, ``+``, ``#``; NATS: no ``.``, ``*``, ``>`` nor whitespace), so a device called "Lamp 1/2" stays one
level of the topic and can never turn into a wildcard. ``{device}`` is the device's label, or its id when it has
none, or the event's kind for hub and bridge events (which have neither).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

FIELDS = ("hub", "hub_type", "kind", "device_id", "device", "room", "attribute", "source")

_MQTT_UNSAFE = re.compile(r"[/+#\x00-\x1f\x7f]")
_NATS_UNSAFE = re.compile(r"[.*>\s\x00-\x1f\x7f]")


def check_template(template: str, separator: str) -> str:
    """``template`` if every placeholder is a known field and it has no empty level; else ValueError saying why."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write fields in braces, e.g. {{hub}}") from None
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if name not in FIELDS:
            raise ValueError(f"unknown field {{{name}}}; choose from {', '.join('{' + f + '}' for f in FIELDS)}")
        if spec or conv:
            raise ValueError(f"{{{name}}}: format specs and conversions are not supported")
    if not template or any(not level for level in template.split(separator)):
        raise ValueError(f"empty level in {template!r}: levels are separated by a single {separator!r}")
    return template


def renderer(template: str, unsafe: re.Pattern[str]) -> Callable[[dict[str, Any]], str]:
    """A function from an event (as a dict) to its topic, fields made safe with ``unsafe`` -> ``_``."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]

    def render(event: dict[str, Any]) -> str:
        values = {}
        for name in fields:
            if name == "device":
                raw = event.get("device") or event.get("device_id") or event.get("kind")
            else:
                raw = event.get(name)
            text = "_" if raw is None or raw == "" else unsafe.sub("_", str(raw))
            values[name] = text
        return template.format_map(values)

    return render


def mqtt_topics(template: str) -> Callable[[dict[str, Any]], str]:
    return renderer(template, _MQTT_UNSAFE)


def nats_token(text: str) -> str:
    """``text`` as one NATS subject token, as :func:`nats_subjects` puts a field in."""
    return _NATS_UNSAFE.sub("_", text) or "_"


def nats_subjects(template: str) -> Callable[[dict[str, Any]], str]:
    return renderer(template, _NATS_UNSAFE)
