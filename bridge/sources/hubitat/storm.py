"""The hub's 5xx storms as data: a run of HTTP 5xx answers becomes one ``kind: hub`` ``hub_status`` ``degraded``.

A Hubitat hub that is about to wedge answers HTTP 500 to everything for a while (hubitat.md 5, 7: bursts, load);
owners watch for it. Every answer the hub gives (Maker API and health endpoints alike) is reported here where it
is classified: :data:`STORM_AFTER` 5xx answers in a row make one ``degraded`` event saying how many; the first
answer below 500 after that makes one ``online`` event. Requests that got no answer (refused, timed out) and the
"starting up" page are neither: they say nothing about a struggling hub. The verdict is kept in the journal's
meta, so a bridge restarted during a storm still says ``online`` when it clears. Backoff is the callers' (the
runner's poll and health loops), unchanged: this only watches.
"""

from __future__ import annotations

import contextlib
import time

from bridge.errors import JournalError
from bridge.events import Reading
from bridge.sources.base import HubContext

# A single 500 is a request the hub fumbled; three in a row (across polls, with backoff between them) is a storm.
STORM_AFTER = 3
_META = "hub_degraded"


class StormWatch:
    """Counts the hub's 5xx answers in a row and turns a storm's start and end into readings."""

    def __init__(self, hub: HubContext, after: int = STORM_AFTER) -> None:
        self.hub = hub
        self.after = after
        self.run = 0  # 5xx answers in a row so far
        self.degraded = False

    async def load(self) -> None:
        """Whether the last run of the bridge left the hub ``degraded`` (so the end of that storm is told)."""
        self.degraded = bool(await self.hub.get_meta(_META))

    async def answered(self, status: int, *, starting: bool = False) -> None:
        """The hub answered with ``status`` (``starting``: the "starting up" page, which is no verdict)."""
        if starting:
            return
        if status >= 500:
            self.run += 1
            if self.run == self.after and not self.degraded:
                await self._turn(True, f"{self.run} HTTP 5xx answers in a row")
                self.hub.log.warning("the hub is struggling: HTTP 5xx answers in a row", count=self.run)
            return
        run, self.run = self.run, 0
        if self.degraded:
            after = f" after {run} HTTP 5xx answers in a row" if run else ""
            await self._turn(False, f"the hub answers again{after}")
            self.hub.log.info("the hub answers normally again", after_5xx=run)

    async def _turn(self, degraded: bool, description: str) -> None:
        self.degraded = degraded
        reading = Reading(
            kind="hub",
            device_id=None,
            attribute="hub_status",
            value="degraded" if degraded else "online",
            source="poll",
            description=description,
            time=time.time(),
        )
        await self.hub.push([reading], size=len(description) + 64, track=False)
        with contextlib.suppress(JournalError):  # only the restart case needs it; the events are what matters
            await self.hub.set_meta(_META, degraded)
