"""The event contract (DESIGN 3): one JSON object per change, with fixed field names.

Splunk searches and webhook consumers depend on these names; change them only with a migration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["device", "location", "hub", "bridge"]
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
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        fields: dict[str, Any] = {name: data.get(name) for name in FIELDS}
        return cls(**fields)


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def dumps(obj: Any) -> str:
    """Compact JSON. NaN/Infinity are not JSON; sources never produce them (see the coercion in sources)."""
    return _encoder.encode(obj)


def event_id(install_id: str, hub: str, kind: str, device_id: str | None, attribute: str, seq: int) -> str:
    """Deterministic id of a change.

    ``seq`` is the per-attribute change counter kept with the last-known value, so the same change re-seen
    after a crash (the ingest transaction rolled back as a whole) or re-sent by a sink has the same id,
    while two real changes to the same value (on, off, on) differ. ``install_id`` is random per journal, so
    a wiped state directory never reuses ids already indexed in Splunk.
    """
    key = f"{install_id}\x1f{hub}\x1f{kind}\x1f{device_id or ''}\x1f{attribute}\x1f{seq}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
