"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
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


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``cond`` until it holds; fail (never hang) after ``timeout`` seconds.

    Polling on purpose: cursors and sink states live inside the code under test, with no event to wait on.
    """
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None
