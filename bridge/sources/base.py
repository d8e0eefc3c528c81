"""The contract between a hub family's wire code (a :class:`Source`) and the runner that drives it (DESIGN 5).

A source knows one hub family's wire formats and nothing else: it turns a full poll into readings, runs its push
streams (which hand readings to :meth:`HubContext.push`), and answers the HTTP routes it mounts on the bridge's
listener. Everything every hub needs is the runner's (``bridge.sources.runner``): the jittered poll loop that never
overlaps, backoff, ``hub_status`` events, waiting for journal room without touching the hub, the ingest queue
and the drain on stop. A source is an async context manager; the runner builds a fresh one after a crash.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from aiohttp import web

from bridge.backoff import RateLimitedLog
from bridge.events import Event, Reading, SourceName
from bridge.journal import Recent
from bridge.options import HubConfigBase

Stream = Callable[[], Coroutine[Any, Any, None]]

# The first retry of anything that talks to a hub (a poll, a reconnect, a registration) waits at least this long:
# a hub that fails fast must not be hammered. Read at use time (tests shorten it; the floor is a policy, not a knob).
HUB_RETRY_FLOOR = 1.0


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTP route a source answers on the bridge's listener, e.g. ``POST /hubitat/<hub>/{secret}``."""

    method: str
    path: str
    name: str


class HubContext(Protocol):
    """What the runner offers the source of one hub."""

    name: str
    log: Any
    rate_log: RateLimitedLog
    state_dir: Path  # the bridge's state_dir (where a source keeps a stored login)

    async def push(
        self,
        readings: Sequence[Reading],
        *,
        size: int,
        unless: asyncio.Future[None] | None = None,
        hold: bool = True,
        track: bool = True,
    ) -> asyncio.Future[list[Event]] | None:
        """Queue pushed ``readings`` (``size`` bytes as received) for ingest; the future resolves after the commit.

        Returns once queued, which waits while the queue is full (backpressure into the stream). ``unless``: skip
        the readings if that future succeeds (they are a copy of what it commits). ``hold=False`` raises
        :class:`~bridge.errors.JournalFull` at once instead of waiting for journal room. ``track=False``: nobody
        waits for the commit, so no future is made (None is returned).
        """
        ...

    async def relay(self, events: Sequence[Event]) -> list[Event]:
        """Record changes formed by another bridge as they are (id, hub, time kept); returns after the commit.

        Waits while the journal is full (nothing is lost, the caller just does not acknowledge yet). Raises
        :class:`~bridge.errors.JournalError` when the journal cannot write; recording them again is safe.
        """
        ...

    def reconcile(self, why: str) -> None:
        """Ask for a reconciliation poll soon (a stream connected, the hub restarted)."""
        ...

    def stream_state(self, stream: str, up: bool, detail: str = "") -> None:
        """Report a push stream's state, for /healthz and for choosing the poll interval."""
        ...

    def show(self, key: str, value: Any) -> None:
        """Show ``key: value`` in this hub's /healthz entry (the address in use...)."""
        ...

    async def get_meta(self, key: str) -> Any:
        """What the source stored under ``key`` for this hub (None if nothing)."""
        ...

    async def recent(self, within: float) -> list[Recent]:
        """The values recorded for this hub in the last ``within`` seconds while :attr:`Source.remembers` was on."""
        ...

    async def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON value for this hub in the journal (learned types...)."""
        ...


class Source(abc.ABC):
    """Base of every hub family. Subclasses set ``type_name`` and ``Config`` and are registered by ``type_name``."""

    type_name: ClassVar[str]
    Config: ClassVar[type[HubConfigBase]]
    # The hub family as events name it (``hub_type``).
    hub_type: ClassVar[str]

    def __init__(self, cfg: HubConfigBase, hub: HubContext) -> None:
        self.cfg = cfg
        self.hub = hub

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Open sessions and load what the source remembers."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` opened. Must not raise."""

    @abc.abstractmethod
    async def poll(self, source: SourceName) -> list[Reading]:
        """The hub's full current state as readings (the diff keeps only changes). Raises HubError subclasses."""

    def polled(self, events: list[Event], committed: asyncio.Future[None]) -> None:  # noqa: B027 - optional hook
        """The changes a poll took, with the future of their commit (called before the commit yields)."""

    def streams(self) -> dict[str, Stream]:
        """Long-lived push tasks by name (they reconnect on their own); the runner runs and drains them."""
        return {}

    @property
    def stream_live(self) -> bool:
        """Whether a push stream is healthy now: then polls only reconcile, on the slower interval."""
        return False

    @property
    def reconciles(self) -> bool:
        """Whether polls only reconcile a push stream (their changes say ``source: reconcile``)."""
        return False

    @property
    def remembers(self) -> bool:
        """Whether the journal keeps a short durable record of what it recorded (read back with ``hub.recent``)."""
        return False

    async def health(self) -> list[Reading]:
        """The hub's own health now as ``kind: hub`` readings (run every :attr:`health_interval`, if set).

        Raises HubError subclasses; the runner backs off. Never shares the poll's request budget.
        """
        return []

    @classmethod
    def routes(cls, cfg: HubConfigBase) -> list[Route]:
        """Routes this hub answers on the listener (mounted before the source runs, so fixed by the config)."""
        return []

    async def handle(self, route: str, request: web.Request) -> web.StreamResponse:
        """Answer a request on one of :meth:`routes`."""
        raise NotImplementedError(route)

    # Timing the runner reads; sources override them from their config.
    poll_interval: float = 300.0
    reconcile_interval: float = 900.0
    backoff_max: float = 300.0
    # None: the source reads no hub health; else the runner calls :meth:`health` this often, in its own task.
    health_interval: float | None = None
