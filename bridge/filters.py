"""Which events a sink forwards: include/exclude rules, a numeric deadband, a minimum interval (every sink alike).

The delivery loop runs every batch it reads through the sink's :class:`FilterEngine` before sending it. A filtered
event is counted and its seq passes under the cursor like a delivered one: it is never dead-lettered. Rules are
pure; the deadband and the minimum interval keep per (hub, kind, device, attribute) state:

- ``forwarded``: the last value this sink forwarded and its event time (the deadband compares with the value; the
  interval with the time);
- ``pending``: inside a minimum-interval window, the latest event held back, sent when the window closes (wall
  clock), so a sink never ends on a stale value. A newer event replaces it; one inside the deadband of what was
  forwarded cancels it (the sink's value is current again).

Each batch carries the state rows it changed and the delivery loop writes them in the same transaction that moves
the cursor over the batch: after a crash the state matches the cursor, and the events after it are decided again
exactly as before. Windows are measured in event time (a backlog is thinned as it happened, not as it is sent).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from bridge.journal import Record
from bridge.options import FilterOptions, FilterRule

# (hub, kind, device_id or "", attribute)
Key = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class FilterState:
    """What one sink remembers about one attribute; a row of the journal's ``filter_state`` table."""

    forwarded: Any = None  # the last value forwarded (JSON), None when unknown
    forwarded_time: float | None = None  # its event time (or the window's end, for a held event sent late)
    pending: Record | None = None  # the event held inside the window
    pending_due: float | None = None  # wall-clock time its window closes

    @property
    def empty(self) -> bool:
        return self.forwarded is None and self.forwarded_time is None and self.pending is None


def event_key(ev: dict[str, Any]) -> Key:
    return (str(ev.get("hub")), str(ev.get("kind")), str(ev.get("device_id") or ""), str(ev.get("attribute")))


def _match(globs: list[str] | None, *values: Any) -> bool:
    if globs is None:
        return True
    texts = [str(v).casefold() for v in values if v is not None]
    return any(fnmatchcase(text, g.casefold()) for g in globs for text in texts)


def rule_matches(rule: FilterRule, ev: dict[str, Any]) -> bool:
    """Whether ``ev`` matches every key ``rule`` gives (globs, case-insensitive; device: its id or its label)."""
    return (
        _match(rule.hub, ev.get("hub"))
        and _match(rule.kind, ev.get("kind"))
        and _match(rule.device, ev.get("device_id"), ev.get("device"))
        and _match(rule.room, ev.get("room"))
        and _match(rule.attribute, ev.get("attribute"))
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _lookup(table: dict[str, float], attribute: str) -> float | None:
    """The setting for ``attribute``: its own key first, then the first glob that matches it."""
    if attribute in table:
        return table[attribute]
    return next((v for k, v in table.items() if fnmatchcase(attribute, k)), None)


class FilterEngine:
    """One sink's filters and their state. ``decide`` a batch as read; ``due`` gives held events whose time came."""

    def __init__(self, options: FilterOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.active = options.active
        self.stateful = bool(options.deadband or options.min_interval)
        self.clock = clock
        self.state: dict[Key, FilterState] = {}

    def load(self, rows: Iterable[tuple[Key, FilterState]]) -> None:
        self.state = {key: row for key, row in rows if not row.empty}

    def passes_rules(self, ev: dict[str, Any]) -> bool:
        opts = self.options
        if opts.include and not any(rule_matches(r, ev) for r in opts.include):
            return False
        return not any(rule_matches(r, ev) for r in opts.exclude)

    def decide(self, records: Sequence[Record]) -> tuple[list[Record], int, dict[Key, FilterState]]:
        """The records to send, how many were filtered (held ones included) and the state rows that changed."""
        if not self.active:
            return list(records), 0, {}
        now = self.clock()
        send: list[Record] = []
        changed: dict[Key, FilterState] = {}
        for record in records:
            ev = json.loads(record.body)
            if not self.passes_rules(ev):
                continue
            if not self.stateful:
                send.append(record)
                continue
            key = event_key(ev)
            old = self.state.get(key, FilterState())
            new, forward = self._step(old, ev, record, now)
            if new != old:
                self.state[key] = changed[key] = new
            if forward:
                send.append(record)
        return send, len(records) - len(send), changed

    def _step(self, st: FilterState, ev: dict[str, Any], record: Record, now: float) -> tuple[FilterState, bool]:
        attribute = str(ev.get("attribute"))
        value = ev.get("value")
        band = _lookup(self.options.deadband, attribute)
        interval = _lookup(self.options.min_interval, attribute)
        if band is None and interval is None:
            return st, True
        if band is not None:
            v, last = _number(value), _number(st.forwarded)
            # Rounded: 20.2 - 20.0 is 0.19999999999999929 in floats, and "moved by 0.2" must forward it.
            if v is not None and last is not None and round(abs(v - last), 9) < band:
                # Within the band of what the sink has: a held value would now be the stale one.
                return replace(st, pending=None, pending_due=None), False
        t = _number(ev.get("time"))
        if t is None:
            t = now
        if interval is not None and st.forwarded_time is not None and 0 <= t - st.forwarded_time < interval:
            due = (
                st.pending_due
                if st.pending is not None and st.pending_due is not None
                else now + (st.forwarded_time + interval - t)
            )
            return replace(st, pending=record, pending_due=due), False
        return FilterState(value, t if interval is not None else None), True

    def next_due(self) -> float | None:
        dues = [s.pending_due for s in self.state.values() if s.pending is not None and s.pending_due is not None]
        return min(dues) if dues else None

    def due(self, limit: int) -> tuple[list[Record], dict[Key, FilterState]]:
        """Held events whose window has closed (oldest first, up to ``limit``), now forwarded, and the new rows."""
        now = self.clock()
        ready = sorted(
            (s.pending_due, key)
            for key, s in self.state.items()
            if s.pending is not None and s.pending_due is not None and s.pending_due <= now
        )[:limit]
        out: list[Record] = []
        changed: dict[Key, FilterState] = {}
        for _, key in ready:
            st = self.state[key]
            assert st.pending is not None
            ev = json.loads(st.pending.body)
            t = _number(ev.get("time")) or now
            interval = _lookup(self.options.min_interval, key[3]) or 0.0
            # The next window starts where this one ended, so the sink sees at most one event per interval.
            start = max(t, (st.forwarded_time or t) + interval)
            out.append(st.pending)
            self.state[key] = changed[key] = FilterState(ev.get("value"), start)
        return out, changed
