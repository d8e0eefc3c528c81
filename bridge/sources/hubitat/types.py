"""Each device's attribute dataTypes, learned from ``/devices/<id>`` one device at a time and kept in the journal.

``/devices/all`` and pushed events carry every value as text; only the device detail says that "29.0" is a NUMBER
and ``"{...}"`` a JSON_OBJECT (hubitat.md 1.3), and values must be typed the same way on every path or a re-poll
would look like a change. Learning is slow next to the stream, so a pushed event of a device whose types are not
known yet is *parked* (per device, in order) while the learner fetches that device, and released the moment the
types are known, or after :attr:`TypeBook.park_timeout`, typed by a guess. Events of known devices never wait
behind it. The eventsocket carries every device of the hub, not only those picked in Maker API, so the learner has
a budget: beyond it (or for ids that cannot be Maker API ids) events are typed by the guess at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from bridge.errors import HubError, HubProtocolError, JournalError
from bridge.events import Event, shorten
from bridge.sources.base import HubContext
from bridge.sources.hubitat.client import MakerApi
from bridge.sources.hubitat.values import Pushed

# A device whose detail did not list an attribute (or whose fetch failed) is asked again at most this often.
RELEARN_AFTER = 3600.0
# Detail fetches the stream may cause per minute (polls learn every Maker API device anyway).
LEARN_BUDGET = 30
# Parked events, at most; beyond, everything parked is released typed by the guess.
MAX_PARKED = 5000
_DEVICE_ID = re.compile(r"\d{1,12}")

Types = dict[str, str | None]
Release = Callable[[Pushed, int], Awaitable["asyncio.Future[list[Event]] | None"]]


@dataclass(slots=True)
class _Parked:
    pushed: Pushed
    size: int
    since: float
    done: asyncio.Future[list[Event]]


def _chain(source: asyncio.Future[list[Event]] | None, target: asyncio.Future[list[Event]]) -> None:
    """Make ``target`` resolve as ``source`` does (at once, when ``source`` is None: nothing to wait for)."""
    if source is None:
        if not target.done():
            target.set_result([])
        return

    def copy(f: asyncio.Future[list[Event]]) -> None:
        if target.done():
            return
        if f.cancelled():
            target.set_exception(JournalError("the readings were not recorded (the bridge is stopping)"))
        elif f.exception() is not None:
            target.set_exception(f.exception())  # type: ignore[arg-type]
        else:
            target.set_result(f.result())

    source.add_done_callback(copy)


class TypeBook:
    """Learned dataTypes of one hub's devices, the learner task, and the events parked while it learns."""

    def __init__(self, api: MakerApi, hub: HubContext, *, spacing: float, park_timeout: float) -> None:
        self.api = api
        self.hub = hub
        self.spacing = spacing
        self.park_timeout = park_timeout
        self._types: dict[str, Types] = {}
        self._learned_at: dict[str, float] = {}
        # Attributes that /devices/all shows but the device's detail did not list when last fetched; None when that
        # fetch failed (nothing is known then).
        self._absent: dict[str, set[str] | None] = {}
        self._lock = asyncio.Lock()
        self._parked: dict[str, deque[_Parked]] = {}
        self._parked_count = 0
        self._wake = asyncio.Event()
        self._fetches: deque[float] = deque()
        self._release: Release | None = None

    async def load(self) -> None:
        stored = await self.hub.get_meta("types")
        if isinstance(stored, dict):
            self._types = {str(k): dict(v) for k, v in stored.items() if isinstance(v, dict)}

    def get(self, device_id: str) -> Types | None:
        return self._types.get(device_id)

    def type_of(self, device_id: str, attribute: str) -> str | None:
        types = self._types.get(device_id)
        return None if types is None else types.get(attribute)

    def would_fetch(self, device_id: str, need: str | None) -> bool:
        """Whether :meth:`learn` for ``need`` would ask the hub (rather than answer from what it knows)."""
        known = self._types.get(device_id)
        if known is not None and (need is None or need in known):
            return False
        learned = self._learned_at.get(device_id)
        if known is not None and learned is not None and time.monotonic() - learned < RELEARN_AFTER:
            absent = self._absent.get(device_id)
            if absent is None or need in absent:
                return False
        return True

    async def learn(self, device_id: str, need: str | None = None) -> Types:
        """The device's attribute dataTypes, fetched from ``/devices/<id>`` if needed. One device at a time, spaced.

        An attribute the device did not have at the last fetch (a driver update, a first ``sendEvent``) is fetched
        for at once, so its values are typed from the start. But an attribute the detail did not list at the last
        fetch (some drivers report attributes in /devices/all that their detail never lists), or a fetch that
        failed, is asked again at most once per ``RELEARN_AFTER``, so an odd driver cannot make us fetch its detail
        on every poll. A failed fetch keeps the types already known.
        """
        if not _DEVICE_ID.fullmatch(device_id):
            return {}  # not a Maker API device id (the hub's are short numbers): nothing to ask the hub about
        async with self._lock:
            known = self._types.get(device_id)
            if not self.would_fetch(device_id, need):
                return known if known is not None else {}
            try:
                detail = await self.api.get(f"devices/{quote(device_id, safe='')}")
            except HubProtocolError as exc:
                # 404 for a device not picked in Maker API (the eventsocket carries all of the hub's devices).
                self.hub.rate_log.info(
                    ("types", device_id),
                    "cannot learn attribute types; values are typed by a guess",
                    device_id=shorten(device_id),
                    error=shorten(str(exc), 200),
                )
                detail = None
            finally:
                self._learned_at[device_id] = time.monotonic()
                await asyncio.sleep(self.spacing)
            types: Types = {}
            if isinstance(detail, dict) and isinstance(detail.get("attributes"), list):
                for attr in detail["attributes"]:
                    # Duplicate attributes (hubitat.md 1.3, device 176): the first one wins.
                    if isinstance(attr, dict) and isinstance(attr.get("name"), str) and attr["name"] not in types:
                        dt = attr.get("dataType")
                        types[attr["name"]] = dt if isinstance(dt, str) else None
                before = self._absent.get(device_id) or set()
                self._absent[device_id] = {a for a in (*before, need) if a is not None and a not in types}
            else:
                self._absent[device_id] = None
                if known is not None:
                    return known  # a failed fetch must not forget types: the values would change type
            self._types[device_id] = types
            await self.hub.set_meta("types", self._types)
            return types

    # ------------------------------------------------------------------ parking (pushed events)

    def should_park(self, pushed: Pushed) -> bool:
        did = pushed.device_id
        if pushed.kind != "device" or did is None:
            return False
        if self._parked and did in self._parked:
            return True  # behind this device's parked events: order per device is kept
        return self.would_fetch(did, pushed.attribute) and bool(_DEVICE_ID.fullmatch(did))

    async def park(self, pushed: Pushed, size: int, release: Release) -> asyncio.Future[list[Event]]:
        """Hold ``pushed`` until its device's types are known; the future resolves once it is committed."""
        self._release = release
        if self._parked_count >= MAX_PARKED:
            await self._release_all()
        done: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        assert pushed.device_id is not None
        self._parked.setdefault(pushed.device_id, deque()).append(_Parked(pushed, size, time.monotonic(), done))
        self._parked_count += 1
        self._wake.set()
        return done

    async def run(self) -> None:
        """The learner: fetches parked devices in order, within the budget, and releases their events.

        Stopped (the bridge drains), it releases what is parked, typed by the guess, so nothing pushed is lost.
        """
        try:
            await self._learn_parked()
        except asyncio.CancelledError:
            await self._release_all()
            raise

    async def _learn_parked(self) -> None:
        while True:
            while not self._parked:
                self._wake.clear()
                await self._wake.wait()
            await self._release_expired()
            if not self._parked:
                continue
            device_id = next(iter(self._parked))
            first = self._parked[device_id][0].pushed
            if self._within_budget():
                try:
                    await self.learn(device_id, first.attribute)
                except HubError as exc:
                    self.hub.rate_log.debug(
                        ("types", device_id), "cannot learn types for a pushed event", error=shorten(str(exc), 200)
                    )
            await self._release_device(device_id)

    def _within_budget(self) -> bool:
        now = time.monotonic()
        while self._fetches and now - self._fetches[0] > 60.0:
            self._fetches.popleft()
        if len(self._fetches) >= LEARN_BUDGET:
            return False
        self._fetches.append(now)
        return True

    async def _release_expired(self) -> None:
        now = time.monotonic()
        for device_id in [d for d, q in self._parked.items() if now - q[0].since > self.park_timeout]:
            await self._release_device(device_id)

    async def _release_all(self) -> None:
        for device_id in list(self._parked):
            await self._release_device(device_id)

    async def _release_device(self, device_id: str) -> None:
        queue = self._parked.get(device_id)
        release = self._release
        while queue and release is not None:
            item = queue[0]
            _chain(await release(item.pushed, item.size), item.done)
            queue.popleft()
            self._parked_count -= 1
        self._parked.pop(device_id, None)

    def fail_parked(self) -> None:
        """The source is closing: nothing parked will be released by it."""
        for queue in self._parked.values():
            for item in queue:
                if not item.done.done():
                    item.done.set_exception(JournalError("the bridge stopped before this event was recorded"))
        self._parked.clear()
        self._parked_count = 0
