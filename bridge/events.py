"""The event contract (DESIGN 3): one JSON object per change, with fixed field names, and its encoding.

Splunk searches and webhook consumers depend on these names; change them only with a migration. The encoding is
the one place that decides what reaches the journal: never NaN or Infinity (not JSON), always valid UTF-8 (a lone
surrogate from a ``\\ud83d`` escape becomes U+FFFD), never nested deeper than :data:`MAX_DEPTH`, never larger than
:data:`MAX_EVENT_BYTES`. An event that cannot meet that is refused on its own (:class:`EventRefused`), so one bad
value never fails the commit it would have shared with other events.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["device", "location", "variable", "hub", "bridge"]
SourceName = Literal["poll", "eventsocket", "webhook", "realtime", "reconcile"]

# The order of fields in the JSON object; also the exact set of keys a line carries.
FIELDS = (
    "id",
    "time",
    "hub",
    "hub_type",
    "kind",
    "device_id",
    "device",
    "room",
    "attribute",
    "value",
    "previous",
    "unit",
    "source",
    "description",
)

# A hub value is a reading, a label or a small JSON object; nothing real comes near these. They bound what one
# event costs in memory, on disk and in every sink (HEC's default max event size is 1 MB).
MAX_EVENT_BYTES = 256 * 1024
MAX_DEPTH = 32


@dataclass(slots=True)
class Reading:
    """What a source observed: one attribute's current value. The diff decides whether it is a change."""

    kind: Kind
    device_id: str | None
    attribute: str
    value: Any
    source: SourceName
    device: str | None = None
    room: str | None = None
    unit: str | None = None
    description: str | None = None
    time: float | None = None
    # Momentary attributes (button pushed, hsmAlert, systemStart) are events, not states: the same value
    # twice is two presses. The diff emits them every time, minus exact duplicates in a short window.
    momentary: bool = False
    # When the value was observed (time.monotonic(); for a poll, when the poll started). A reading older than the
    # one behind the last known value is stale and never overwrites it: a poll that started before a push, or a
    # retried batch after a newer reading got through. None: order of arrival decides.
    observed: float | None = None


@dataclass(slots=True)
class Event:
    """One change, as every sink receives it."""

    id: str
    time: float
    hub: str
    hub_type: str
    kind: str
    device_id: str | None
    device: str | None
    room: str | None
    attribute: str
    value: Any
    previous: Any
    unit: str | None
    source: str
    description: str | None

    def to_dict(self) -> dict[str, Any]:
        # Spelled out, not a loop over FIELDS: this runs for every event and a literal is twice as fast.
        return {
            "id": self.id,
            "time": self.time,
            "hub": self.hub,
            "hub_type": self.hub_type,
            "kind": self.kind,
            "device_id": self.device_id,
            "device": self.device,
            "room": self.room,
            "attribute": self.attribute,
            "value": self.value,
            "previous": self.previous,
            "unit": self.unit,
            "source": self.source,
            "description": self.description,
        }

    def to_json(self) -> str:
        return encode_event(self)[0]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        fields: dict[str, Any] = {name: data.get(name) for name in FIELDS}
        return cls(**fields)


class EventRefused(ValueError):
    """This event cannot be stored as valid JSON; ``str()`` says why. Refusing it affects only itself."""


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
_string = json.encoder.encode_basestring
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 text (no escapes), no NaN. Raises ValueError on NaN/Infinity."""
    # The common values (a string, an int) skip the encoder's setup; the result is the same text.
    kind = obj.__class__
    if kind is str:
        return _string(obj)
    if kind is int:
        return int.__repr__(obj)
    return _encoder.encode(obj)


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (half an emoji from a ``\\ud83d`` escape) become U+FFFD."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` made storable as JSON text, or :class:`EventRefused`.

    Strings lose lone surrogates, non-finite floats are refused, nesting beyond :data:`MAX_DEPTH` is refused, keys
    become strings. Only called when the fast encoding failed, so its cost is paid by odd values alone.
    """
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventRefused(f"the value holds {value!r}, which is not JSON")
        return value
    if depth >= MAX_DEPTH:
        raise EventRefused(f"the value is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {clean_text(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    return clean_text(str(value))


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth >= MAX_DEPTH:
        raise EventRefused(f"the value is nested deeper than {MAX_DEPTH} levels")
    children = value.values() if isinstance(value, dict) else value
    for child in children:
        if isinstance(child, dict | list):
            _check_depth(child, depth + 1)


_TEXT_FIELDS = ("hub", "hub_type", "kind", "device_id", "device", "room", "attribute", "unit", "source", "description")


def _fix(ev: Event) -> None:
    """Make every field of ``ev`` storable in place (see :func:`storable`), or raise :class:`EventRefused`."""
    for name in _TEXT_FIELDS:
        text = getattr(ev, name)
        if isinstance(text, str):
            setattr(ev, name, clean_text(text))
    ev.value = storable(ev.value)
    ev.previous = storable(ev.previous)


def encode_event(ev: Event) -> tuple[str, int]:
    """The event's JSON line (DESIGN 3 field order) and its size in UTF-8 bytes, made storable first if need be.

    Raises :class:`EventRefused` when it cannot be stored: NaN or Infinity, nesting beyond :data:`MAX_DEPTH`, or
    more than :data:`MAX_EVENT_BYTES` of UTF-8. ``ev`` is fixed in place, so what the diff remembers is what the
    journal holds.
    """
    try:
        # Structured values are rare (JSON_OBJECT attributes): only they pay for the depth check.
        if isinstance(ev.value, dict | list):
            _check_depth(ev.value)
        text = _encoder.encode(ev.to_dict())
        # Encoding to UTF-8 both sizes the line and proves it storable (a lone surrogate fails here).
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except (ValueError, RecursionError, UnicodeEncodeError):
        try:
            _fix(ev)
            text = _encoder.encode(ev.to_dict())
            size = len(text.encode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise EventRefused(str(exc) if isinstance(exc, EventRefused) else f"not storable as JSON: {exc}") from None
    if size > MAX_EVENT_BYTES:
        raise EventRefused(f"the event is {size} bytes, over the {MAX_EVENT_BYTES} byte limit")
    return text, size


def event_id(install_id: str, hub: str, kind: str, device_id: str | None, attribute: str, seq: int) -> str:
    """Deterministic id of a change.

    ``seq`` is the per-attribute change counter kept with the last-known value, so the same change re-seen
    after a crash (the ingest transaction rolled back as a whole) or re-sent by a sink has the same id,
    while two real changes to the same value (on, off, on) differ. ``install_id`` is random per journal, so
    a wiped state directory never reuses ids already indexed in Splunk.
    """
    key = f"{install_id}\x1f{hub}\x1f{kind}\x1f{device_id or ''}\x1f{attribute}\x1f{seq}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters for a log line, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
