"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bridge.journal import Journal

# DESIGN section 3, in order. Written out here (not imported from bridge.events) so that a change to the
# contract fails the tests that check it.
CONTRACT_FIELDS = [
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
]


@contextlib.asynccontextmanager
async def running_journal(path: Path, **kwargs: Any) -> AsyncIterator[Journal]:
    """An open journal with its committer task running; closed on exit."""
    journal = Journal(path, **kwargs)
    await journal.open()
    task = asyncio.create_task(journal.run())
    try:
        yield journal
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.close()
