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

**Across a crash.** The pending values live in memory, but the POST copies do not wait for us: the hub queues them
and sends them, in order, to whichever process listens next. So after kill -9 and a restart, the late POSTs of
events the old process recorded from the eventsocket arrive at a matcher that knows nothing, and the diff would take
each for a change back to an older value (a stale value with a new id, then the current one again). So the source
asks the journal to keep a short record of what it recorded (the ``recent`` table, see ``bridge.journal.store``):
every change of this hub, with its source and wall-clock time, written *in the commit of the event itself*, so after
kill -9 it holds exactly what was recorded. On open, :meth:`DualStreamMatcher.seed` turns the last ``window``
seconds of it into eventsocket-side notes (already committed), aged by wall clock (monotonic time does not survive
a restart). Values recorded from a POST are left out: their eventsocket copies died with the old connection (a new
one never replays).

Seeding over-approximates: it cannot know which of those values the old process had already matched (copies write
nothing), and a leftover note could swallow a genuine POST-only change back to that value. So seeded notes go as
soon as the POST channel has caught up: POSTs are sent in event order, so the first POST that matches an eventsocket
event *of this process* proves that every POST queued before the crash has arrived (or is lost), and all seeded
notes are dropped then; otherwise they age out with the window. Only changes are recorded, so an unchanged value
the hub repeated just before a crash is not remembered (the hub filters those itself, hubitat.md 1.5).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.journal import Recent

Key = tuple[str, str, str]

CHANNELS = ("eventsocket", "webhook")


@dataclass(slots=True)
class Note:
    """A value one channel delivered; ``done`` resolves when its commit succeeded (or fails with it)."""

    value: Any
    when: float
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # Not from a push channel of this process: from the journal's record of a previous one (seed), or from a poll.
    seeded: bool = False
    polled: bool = False

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
        self.seeded = 0  # at most this many seeded notes are left (some may have gone with the bounds)

    def seed(self, recorded: Iterable[Recent], now: float | None = None, wall: float | None = None) -> None:
        """Take what the journal recorded before a restart as eventsocket-side notes whose commits succeeded.

        ``recorded`` is oldest first. A value recorded from a POST is skipped: its eventsocket copy, if any, was
        sent to the old process and never comes again.
        """
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        for r in recorded:
            age = wall - r.time
            if r.source == CHANNELS[1] or r.kind == "bridge" or age > self.window:
                continue
            note = self._remember(CHANNELS[0], (r.kind, r.device_id, r.attribute), _norm(r.value), now - max(0.0, age))
            note.seeded = True
            note.committed(None)
            self.seeded += 1

    def note_polled(self, key: Key, value: Any, committed: asyncio.Future[None]) -> None:
        """A poll took a change before the push channels delivered it.

        The late POST-URL copy of that event must not be taken as a change back to an older value, so the value is
        offered to the webhook channel as if the eventsocket had delivered it. (The eventsocket is either connected,
        and then fast, or was down and lost the event; so only the webhook checks this.)
        """
        if self.enabled:
            note = self._remember(CHANNELS[0], key, _norm(value), time.monotonic())
            note.polled = True
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
                if theirs.popleft().seeded:
                    self.seeded -= 1
            for i, note in enumerate(theirs):
                if note.value == value:
                    if note.polled:
                        # A poll's value is out of band: older than eventsocket values already pending (the poll
                        # was asked before they came), so the notes before it are still owed their POSTs.
                        del theirs[i]
                    else:
                        for _ in range(i + 1):
                            if theirs.popleft().seeded:
                                self.seeded -= 1
                    self.copies += 1
                    if self.seeded and channel == CHANNELS[1] and not (note.seeded or note.polled):
                        self._drop_seeded()
                    return Copy(note)
        return self._remember(channel, key, value, now)

    def _drop_seeded(self) -> None:
        """The POSTs queued before the restart have all come (see the module docstring): forget the seeded notes."""
        pending = self._pending[CHANNELS[0]]
        for key in [k for k, notes in pending.items() if any(n.seeded for n in notes)]:
            kept = deque((n for n in pending[key] if not n.seeded), maxlen=pending[key].maxlen)
            if kept:
                pending[key] = kept
            else:
                del pending[key]
        self.seeded = 0

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
