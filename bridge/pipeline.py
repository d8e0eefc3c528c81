"""Ingest: readings from a source -> diff -> encode -> one journal transaction (DESIGN 1 and 4).

What each step may do to the others is the point of this module: an event that cannot be encoded is refused on its
own, before the commit (so it never fails another hub's append in the same group commit); a commit that fails
undoes exactly the diff of the ingests in it; a reading found unchanged against a value still on its way to the
journal returns only once that value is durable (never acknowledge before commit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from bridge.backoff import RateLimitedLog
from bridge.diff import Diff, Differ, StateKey, StateRow
from bridge.errors import JournalError
from bridge.events import Event, EventRefused, Reading, dumps, encode_event, shorten
from bridge.journal import Encoded, EncodedRecent, EncodedState, Journal

log = structlog.get_logger("bridge.pipeline")

Listener = Callable[[list[Event]], None]
# Called with the changes and the future of their commit, synchronously with the diff (before anything yields).
OnChanges = Callable[[list[Event], "asyncio.Future[None]"], None]


class Pipeline:
    """The single entry point for sources. ``await ingest(...)`` returns once the changes are durable."""

    def __init__(self, journal: Journal, differ: Differ) -> None:
        self.journal = journal
        self.differ = differ
        self.listeners: list[Listener] = []
        # Called with every ingest's hub and readings once recorded (bridge.metrics counts what is received).
        self.on_readings: Callable[[str, list[Reading]], None] | None = None
        self.ingested = 0
        self.refused = 0
        self._refusals = RateLimitedLog(log, window=300.0)

    @classmethod
    async def open(cls, journal: Journal) -> Pipeline:
        return cls(journal, Differ(journal.install_id, await journal.load_state()))

    async def ingest(
        self,
        hub: str,
        hub_type: str,
        readings: Iterable[Reading],
        *,
        on_changes: OnChanges | None = None,
        remember: bool = False,
    ) -> list[Event]:
        """Diff ``readings`` and durably record the changes with the new last-known values.

        Raises :class:`JournalFull` before diffing when the journal has no room, so nothing is remembered and a
        later reading is still a change. Raises :class:`JournalError` when the commit failed (its changes are taken
        back) or a commit this ingest's unchanged values depended on failed; retrying the same readings is safe.

        ``remember``: the changes also go to the journal's short record of recent values (:meth:`Journal.recent`),
        in the same commit.
        """
        self.journal.check_room()
        received: list[Reading] | None = None
        if self.on_readings is not None:
            readings = received = readings if isinstance(readings, list) else list(readings)
        diff = self.differ.diff(hub, hub_type, readings)
        recent: list[EncodedRecent] | None = [] if remember and diff.events else None
        encoded, rows = self._encode(hub, diff, recent)
        try:
            future = self.journal.submit(encoded, rows, recent or ())
        except JournalError:
            self.differ.settle(diff, ok=False)
            raise
        self.differ.pending(diff, future)
        future.add_done_callback(lambda f: self.differ.settle(diff, ok=not f.cancelled() and f.exception() is None))
        if on_changes is not None and diff.events:
            on_changes(diff.events, future)
        await asyncio.shield(future)
        if diff.waits:
            await self._wait_for(diff)
        if self.on_readings is not None and received is not None:
            self.on_readings(hub, received)
        if diff.events:
            self.ingested += len(diff.events)
            for listener in self.listeners:
                try:
                    listener(diff.events)
                except Exception:
                    log.exception("event listener failed")
        return diff.events

    async def relay(self, events: Sequence[Event]) -> list[Event]:
        """Durably record changes another bridge formed (a JetStream source), keeping their id, hub and time.

        They are changes already, so there is no diff and no last-known value: each is only checked and encoded on
        its own (one that cannot be stored is refused alone, as in :meth:`ingest`). Returns the events recorded,
        once their commit is durable. Raises :class:`JournalFull` before anything is queued when there is no room,
        and :class:`JournalError` when the commit failed (recording the same events again is safe: same ids).
        """
        self.journal.check_room()
        encoded: list[Encoded] = []
        kept: list[Event] = []
        for ev in events:
            try:
                body, size = encode_event(ev)
            except EventRefused as exc:
                self._refuse(ev.hub, ev, str(exc))
                continue
            encoded.append((ev.id, body, size))
            kept.append(ev)
        await asyncio.shield(self.journal.submit(encoded, []))
        if kept:
            self.ingested += len(kept)
            for listener in self.listeners:
                try:
                    listener(kept)
                except Exception:
                    log.exception("event listener failed")
        return kept

    async def seed(self, rows: Sequence[StateRow]) -> None:
        """Durably take last-known values handed over by another instance (bridge.handover); no event is made."""
        stored = self.differ.seed(rows)
        await asyncio.shield(self.journal.submit([], [(r.key, dumps(r.value), r.seq) for r in stored]))

    def _encode(
        self, hub: str, diff: Diff, recent: list[EncodedRecent] | None = None
    ) -> tuple[list[Encoded], list[EncodedState]]:
        """The events as journal rows and the new last-known values; every event's value also to ``recent``."""
        encoded: list[Encoded] = []
        now = time.time() if recent is not None else 0.0
        rows: dict[StateKey, EncodedState] = {}
        i = 0
        events, changes = diff.events, diff.changes
        while i < len(events):
            ev = events[i]
            try:
                body, size = encode_event(ev)
                value = dumps(ev.value)
            except EventRefused as exc:
                self._refuse(hub, ev, str(exc))
                self.differ.refuse(diff, i)
                continue
            encoded.append((ev.id, body, size))
            key, _, after = changes[i]
            rows[key] = (key, value, after[1])
            if recent is not None:
                recent.append((hub, key[1], key[2], key[3], value, ev.source, now))
            i += 1
        return encoded, list(rows.values())

    def _refuse(self, hub: str, ev: Event, why: str) -> None:
        self.refused += 1
        self._refusals.error(
            (hub, ev.device_id, ev.attribute),
            "refused an event that cannot be stored; the rest of the batch goes on",
            hub=hub,
            device_id=shorten(str(ev.device_id)) if ev.device_id is not None else None,
            device=shorten(ev.device) if ev.device else None,
            attribute=shorten(ev.attribute),
            reason=why,
        )

    async def _wait_for(self, diff: Diff) -> None:
        results = await asyncio.gather(*(asyncio.shield(w) for w in diff.waits), return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results):
            raise JournalError("an earlier commit of the same values failed; the readings must be ingested again")
