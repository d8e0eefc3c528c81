"""Matching two push channels that carry the same event stream (Hubitat /eventsocket and POST-URL).

A hub with both enabled sends every event twice, in the same order on each channel, but not in step: a POST
waits for our journal commit while eventsocket frames stream on, so POSTs can lag by seconds during a burst.
The diff alone cannot tell a late copy from a real change back to an older value (switch on, off, then the
late POST "on" would look like a new change). So each channel keeps, per attribute, the values it delivered that
the other channel has not yet matched; a reading that matches the other channel's pending value is a copy, and
matching pops everything before it (a copy the other channel lost never blocks later matches).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

Key = tuple[str, str, str]


class DualStreamMatcher:
    """Per-attribute pending values of two channels. Only useful (and only enabled) when both are in use."""

    def __init__(
        self, channels: tuple[str, str] = ("eventsocket", "webhook"), window: float = 120.0, enabled: bool = True
    ) -> None:
        self.channels = channels
        self.window = window
        self.enabled = enabled
        self._pending: dict[str, dict[Key, deque[tuple[Any, float]]]] = {c: {} for c in channels}
        self.copies = 0

    def note_polled(self, key: Key, value: Any, now: float | None = None) -> None:
        """A poll took a change before the push channels delivered it.

        The late POST-URL copy of that event must not be taken as a change back to an older value, so the value
        is offered to the webhook channel as if the eventsocket had delivered it. (The eventsocket is either
        connected, and then fast, or was down and lost the event; so only the webhook checks this.)
        """
        if self.enabled:
            self._remember(self.channels[0], key, _norm(value), time.monotonic() if now is None else now)

    def is_copy(self, channel: str, key: Key, value: Any, now: float | None = None) -> bool:
        """True if this reading is the other channel's copy of an event already taken; else remember it."""
        if not self.enabled:
            return False
        now = time.monotonic() if now is None else now
        value = _norm(value)
        other = self.channels[1] if channel == self.channels[0] else self.channels[0]
        theirs = self._pending[other].get(key)
        if theirs:
            while theirs and now - theirs[0][1] > self.window:
                theirs.popleft()
            for i, (v, _) in enumerate(theirs):
                if v == value:
                    for _ in range(i + 1):
                        theirs.popleft()
                    self.copies += 1
                    return True
        self._remember(channel, key, value, now)
        return False

    def _remember(self, channel: str, key: Key, value: Any, now: float) -> None:
        mine = self._pending[channel].get(key)
        if mine is None:
            # Bounded per attribute: a copy more than 256 events behind is treated as new (at worst a duplicate).
            mine = self._pending[channel][key] = deque(maxlen=256)
        mine.append((value, now))


def _norm(value: Any) -> Any:
    """Push channels carry text ("29.50"), polls typed values (29.5): compare numbers as numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value if isinstance(value, str | None) else repr(value)
