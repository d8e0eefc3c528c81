"""Last-known values and the diff that turns readings into change events (DESIGN 1 and 4).

The table holds the *tip*: what is committed plus what is on its way to the journal, so two ingests of one hub in
flight at once (a poll commit and a pushed event) diff against each other in arrival order, and two changes never
get the same counter. Every :meth:`Differ.diff` returns a :class:`Diff` that remembers what it changed; the pipeline
calls :meth:`Differ.settle` once the journal answered. A failed commit undoes exactly its own changes (values,
timestamps, the momentary window), never another ingest's, and the change counter never goes back, so an id is
never given to two different changes whatever fails.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.events import Event, Reading, event_id

# (hub, kind, device_id or "", attribute)
StateKey = tuple[str, str, str, str]

# Exact duplicates of a momentary event (an eventsocket frame sent twice) arrive within milliseconds; two
# real presses of a button are far slower than this.
MOMENTARY_DUPLICATE_WINDOW = 1.0

# What the table holds per attribute: value, change counter, when that value was observed (None: unknown).
_Entry = tuple[Any, int, float | None]
# The value of an attribute whose first reading was taken back (its commit failed): not known, counter kept.
_UNKNOWN: Any = type("_Unknown", (), {"__repr__": lambda self: "<unknown>"})()


@dataclass(slots=True)
class StateRow:
    """One last-known value as the journal persists it."""

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


@dataclass(slots=True)
class Diff:
    """The changes of one ingest, and how to take them back."""

    events: list[Event] = field(default_factory=list)
    # Per event: its key, the entry before it and the entry it made (value, change counter, observed).
    changes: list[tuple[StateKey, _Entry | None, _Entry]] = field(default_factory=list)
    # Commits still on their way that values this ingest found unchanged depend on: answer only after them.
    waits: set[asyncio.Future[None]] = field(default_factory=set)
    _momentary: list[tuple[StateKey, tuple[Any, str | None, float] | None]] = field(default_factory=list)
    _pending: asyncio.Future[None] | None = None


class Differ:
    """Holds the last known value of every (hub, kind, device, attribute) and diffs readings against it."""

    def __init__(self, install_id: str, rows: Iterable[StateRow] = ()) -> None:
        self.install_id = install_id
        self._values: dict[StateKey, _Entry] = {r.key: (r.value, r.seq, None) for r in rows}
        self._recent_momentary: dict[StateKey, tuple[Any, str | None, float]] = {}
        # key -> the commit that will make its tip durable (only while that commit is on its way).
        self._pending: dict[StateKey, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: StateKey) -> Any:
        entry = self._values.get(key)
        return None if entry is None or entry[0] is _UNKNOWN else entry[0]

    def keys(self) -> Iterable[StateKey]:
        return self._values.keys()

    def diff(self, hub: str, hub_type: str, readings: Iterable[Reading], now: float | None = None) -> Diff:
        """Changes among ``readings``. The table moves to the new values at once; :meth:`settle` confirms or undoes.

        A reading equal to the last known value yields nothing (but the result waits for that value's commit if it
        is still on its way). The first reading of an attribute is a change with ``previous: null``. A reading
        observed before the one behind the last known value is stale and yields nothing.
        """
        if now is None:
            now = _time.time()
        out = Diff()
        values = self._values
        pending = self._pending
        for r in readings:
            key = (hub, r.kind, r.device_id or "", r.attribute)
            entry = values.get(key)
            if not r.momentary and entry is not None:
                old = entry[0]
                # Fast path for the common case of a re-poll: same value, same type (no function call).
                if (old.__class__ is r.value.__class__ and old == r.value) or same_value(old, r.value):
                    if pending and key in pending:
                        out.waits.add(pending[key])
                    continue
                if r.observed is not None and entry[2] is not None and r.observed < entry[2]:
                    continue  # stale: a newer reading of this attribute is already the last known value
            if r.momentary:
                recent = self._recent_momentary.get(key)
                if (
                    recent is not None
                    and same_value(recent[0], r.value)
                    and recent[1] == r.description
                    and now - recent[2] < MOMENTARY_DUPLICATE_WINDOW
                ):
                    continue
                out._momentary.append((key, recent))
                self._recent_momentary[key] = (r.value, r.description, now)
            previous, seq = (None, 0) if entry is None else (entry[0], entry[1])
            if previous is _UNKNOWN:
                previous = None
            after = (r.value, seq + 1, r.observed)
            values[key] = after
            out.changes.append((key, entry, after))
            out.events.append(
                Event(
                    id=event_id(self.install_id, hub, r.kind, r.device_id, r.attribute, seq + 1),
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
        return out

    def seed(self, rows: Iterable[StateRow]) -> list[StateRow]:
        """Take last-known values handed over from elsewhere (another instance ran the hub); returns them as stored.

        A value replaces the one held here, but the change counter never goes back, so no id is given twice.
        """
        out = []
        for row in rows:
            entry = self._values.get(row.key)
            seq = max(row.seq, entry[1] if entry is not None else 0)
            self._values[row.key] = (row.value, seq, None)
            out.append(StateRow(row.key, row.value, seq))
        return out

    def refuse(self, diff: Diff, index: int) -> None:
        """Take back event ``index`` of ``diff`` before it is committed (it could not be encoded)."""
        key, before, after = diff.changes.pop(index)
        self._restore(key, before, after)
        del diff.events[index]

    def pending(self, diff: Diff, future: asyncio.Future[None]) -> None:
        """``diff`` is on its way to the journal as ``future``: readings equal to its values wait for it."""
        diff._pending = future
        for key, _, after in diff.changes:
            if self._values.get(key) is after:
                self._pending[key] = future

    def settle(self, diff: Diff, ok: bool) -> None:
        """The journal answered for ``diff``: keep its changes, or undo them if the commit failed."""
        future = diff._pending
        if future is not None:
            for key, _, _ in diff.changes:
                if self._pending.get(key) is future:
                    del self._pending[key]
        if ok:
            return
        for key, before, after in reversed(diff.changes):
            self._restore(key, before, after)
        for key, recent in reversed(diff._momentary):
            if recent is None:
                self._recent_momentary.pop(key, None)
            else:
                self._recent_momentary[key] = recent

    def _restore(self, key: StateKey, before: _Entry | None, after: _Entry) -> None:
        # Only if no later ingest moved the value on. The counter stays where it was, so the next change gets a
        # new id even though this one was never recorded; a first value taken back leaves the value unknown.
        if self._values.get(key) is not after:
            return
        self._values[key] = (_UNKNOWN, after[1], None) if before is None else (before[0], after[1], before[2])
