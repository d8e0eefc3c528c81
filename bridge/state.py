"""Last-known values and the diff that turns readings into change events (DESIGN 1 and 4).

The in-memory table mirrors the journal's ``state`` table. The diff runs synchronously on the event loop, so
two sources of one hub (poll and eventsocket) are ordered by arrival; the journal then commits the events and
the new values in one transaction.
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge.events import Event, Reading, event_id

# (hub, kind, device_id or "", attribute)
StateKey = tuple[str, str, str, str]

# Exact duplicates of a momentary event (an eventsocket frame sent twice) arrive within milliseconds; two
# real presses of a button are far slower than this.
MOMENTARY_DUPLICATE_WINDOW = 1.0


@dataclass(slots=True)
class StateRow:
    key: StateKey
    value: Any
    seq: int


def same_value(a: Any, b: Any) -> bool:
    """Equality as a user sees it: 29 and 29.0 are the same temperature, but True is not 1 and "1" is not 1."""
    if type(a) is type(b):
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return not isinstance(a, bool) and not isinstance(b, bool) and a == b
    return False


class Differ:
    """Holds the last known value of every (hub, kind, device, attribute) and diffs readings against it."""

    def __init__(self, install_id: str, rows: Iterable[StateRow] = ()) -> None:
        self.install_id = install_id
        self._values: dict[StateKey, tuple[Any, int]] = {r.key: (r.value, r.seq) for r in rows}
        self._recent_momentary: dict[StateKey, tuple[Any, str | None, float]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: StateKey) -> Any:
        entry = self._values.get(key)
        return None if entry is None else entry[0]

    def keys(self) -> Iterable[StateKey]:
        return self._values.keys()

    def reset(self, rows: Iterable[StateRow]) -> None:
        """Replace the table, e.g. with what the journal holds after a failed commit."""
        self._values = {r.key: (r.value, r.seq) for r in rows}
        self._recent_momentary.clear()

    def diff(
        self, hub: str, hub_type: str, readings: Iterable[Reading], now: float | None = None
    ) -> tuple[list[Event], list[StateRow]]:
        """Changes among ``readings``, and the state rows to persist with them. Updates the table at once.

        A reading equal to the last known value yields nothing. The first reading of an attribute is a change
        with ``previous: null``.
        """
        if now is None:
            now = _time.time()
        events: list[Event] = []
        updates: dict[StateKey, StateRow] = {}
        values = self._values
        for r in readings:
            key = (hub, r.kind, r.device_id or "", r.attribute)
            entry = values.get(key)
            # Fast path for the common case of a re-poll: same value, same type (no function call).
            if entry is not None and not r.momentary:
                old = entry[0]
                if old.__class__ is r.value.__class__ and old == r.value:
                    continue
            if r.momentary:
                recent = self._recent_momentary.get(key)
                if (
                    recent is not None
                    and same_value(recent[0], r.value)
                    and recent[1] == r.description
                    and now - recent[2] < MOMENTARY_DUPLICATE_WINDOW
                ):
                    continue
                self._recent_momentary[key] = (r.value, r.description, now)
            elif entry is not None and same_value(entry[0], r.value):
                continue
            previous, seq = (None, 0) if entry is None else entry
            seq += 1
            values[key] = (r.value, seq)
            updates[key] = StateRow(key, r.value, seq)
            events.append(
                Event(
                    id=event_id(self.install_id, hub, r.kind, r.device_id, r.attribute, seq),
                    time=r.time if r.time is not None else now,
                    hub=hub,
                    hub_type=hub_type,
                    kind=r.kind,
                    device_id=r.device_id,
                    device=r.device,
                    room=r.room,
                    attribute=r.attribute,
                    value=r.value,
                    previous=previous,
                    unit=r.unit,
                    source=r.source,
                    description=r.description,
                )
            )
        return events, list(updates.values())
