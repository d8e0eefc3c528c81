"""Ingest: readings from a source -> diff -> one journal transaction (DESIGN 1 and 4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from bridge.errors import JournalError
from bridge.events import Event, Reading
from bridge.journal import Journal
from bridge.state import Differ

log = structlog.get_logger("bridge.pipeline")

Listener = Callable[[list[Event]], None]


class Pipeline:
    """The single entry point for sources. ``await ingest(...)`` returns once the changes are durable."""

    def __init__(self, journal: Journal, differ: Differ) -> None:
        self.journal = journal
        self.differ = differ
        self.listeners: list[Listener] = []
        self.ingested = 0

    @classmethod
    async def open(cls, journal: Journal) -> Pipeline:
        return cls(journal, Differ(journal.install_id, await journal.load_state()))

    async def ingest(
        self,
        hub: str,
        hub_type: str,
        readings: Iterable[Reading],
        on_changes: Callable[[list[Event]], None] | None = None,
    ) -> list[Event]:
        """Diff ``readings`` and durably record the changes with the new last-known values.

        Raises :class:`JournalFull` before diffing when the journal has no room, so the last-known values stay
        as they were and a later poll sees the change again. On a failed commit the in-memory table is reloaded
        from the journal for the same reason.
        """
        self.journal.check_room()
        events, rows = self.differ.diff(hub, hub_type, readings)
        if not rows:
            return events
        if on_changes is not None:
            # Synchronously with the diff, before the commit yields: a source can note what it took before any
            # other reading of the same hub is diffed.
            on_changes(events)
        try:
            await self.journal.append(events, rows)
        except JournalError:
            # Other ingests may be waiting in the next commit with their in-memory updates; let them settle
            # first, so the reload sees their values and no change is emitted twice.
            await self.journal.barrier()
            self.differ.reset(await self.journal.load_state())
            raise
        self.ingested += len(events)
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:
                log.exception("event listener failed")
        return events
