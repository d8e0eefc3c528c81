"""Matching two push channels that carry the same event stream (Hubitat ``/eventsocket`` and POST-URL).

A hub with both enabled sends every event twice, in the same order on each channel, but not in step: a POST waits
for our journal commit while eventsocket frames stream on, so POSTs can lag by seconds during a burst. The diff
alone cannot tell a late copy from a real change back to an older value (switch on, off, then the late POST "on"
would look like a new change). So each channel keeps, per attribute, the values it delivered that the other channel
has not yet matched; a reading that matches the other channel's pending value is a copy, and matching pops
everything before it (a copy the other channel lost never blocks later matches).

Each remembered value carries the future of its own commit. A copy is only a copy of something *recorded*: the
POST-URL copy of an eventsocket event is answered once the original's commit succeeded, and if that commit failed
the copy is recorded itself (so a failed commit can never make a genuine POST look like a duplicate).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]

CHANNELS = ("eventsocket", "webhook")


@dataclass(slots=True)
class Note:
    """A value one channel delivered; ``done`` resolves when its commit succeeded (or fails with it)."""

    value: Any
    when: float
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def committed(self, future: asyncio.Future[Any] | None) -> None:
        """Resolve ``done`` as ``future`` resolves (at once when None: the reading was not for the journal)."""
        if future is None:
            if not self.done.done():
                self.done.set_result(None)
            return

        def copy(f: asyncio.Future[Any]) -> None:
            if self.done.done():
                return
            if f.cancelled() or f.exception() is not None:
                self.done.set_exception(RuntimeError("the original was not recorded"))
                self.done.exception()  # retrieved: nobody may be waiting for it, and that is fine
            else:
                self.done.set_result(None)

        future.add_done_callback(copy)


@dataclass(slots=True)
class Copy:
    """The reading is the other channel's copy of ``original``."""

    original: Note


class DualStreamMatcher:
    """Per-attribute pending values of two channels. Only useful (and only enabled) when both are in use."""

    def __init__(self, window: float = 120.0, enabled: bool = True) -> None:
        self.window = window
        self.enabled = enabled
        self._pending: dict[str, dict[Key, deque[Note]]] = {c: {} for c in CHANNELS}
        self.copies = 0

    def note_polled(self, key: Key, value: Any, committed: asyncio.Future[None]) -> None:
        """A poll took a change before the push channels delivered it.

        The late POST-URL copy of that event must not be taken as a change back to an older value, so the value is
        offered to the webhook channel as if the eventsocket had delivered it. (The eventsocket is either connected,
        and then fast, or was down and lost the event; so only the webhook checks this.)
        """
        if self.enabled:
            note = self._remember(CHANNELS[0], key, _norm(value), time.monotonic())
            note.committed(committed)

    def match(self, channel: str, key: Key, value: Any, now: float | None = None) -> Copy | Note | None:
        """The other channel's :class:`Copy` of this reading, or the :class:`Note` now remembered for it.

        None when matching is off (only one push channel is in use): nothing to remember.
        """
        if not self.enabled:
            return None
        now = time.monotonic() if now is None else now
        value = _norm(value)
        other = CHANNELS[1] if channel == CHANNELS[0] else CHANNELS[0]
        theirs = self._pending[other].get(key)
        if theirs:
            while theirs and now - theirs[0].when > self.window:
                theirs.popleft()
            for i, note in enumerate(theirs):
                if note.value == value:
                    for _ in range(i + 1):
                        theirs.popleft()
                    self.copies += 1
                    return Copy(note)
        return self._remember(channel, key, value, now)

    def _remember(self, channel: str, key: Key, value: Any, now: float) -> Note:
        pending = self._pending[channel]
        mine = pending.get(key)
        if mine is None:
            if len(pending) > 50_000:  # bounded whatever the input: forget the oldest attributes
                for old in list(pending)[:10_000]:
                    del pending[old]
            # Bounded per attribute: a copy more than 256 events behind is treated as new (at worst a duplicate).
            mine = pending[key] = deque(maxlen=256)
        note = Note(value, now)
        mine.append(note)
        return note


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
