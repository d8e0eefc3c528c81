"""The sink contract (DESIGN 6).

A sink knows one destination's wire format and how to classify its answers into an :data:`Outcome`. It does not
retry, back off, pipeline, wait for acknowledgements, dead-letter or move cursors: the delivery loop
(:mod:`bridge.delivery`) does that for every sink alike. Lifecycle: ``async with sink:`` (or :meth:`Sink.start`
and :meth:`Sink.close`); :meth:`Sink.send` is never called before start nor after close, and calling it after
close is a bug that raises ``RuntimeError``.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from bridge.journal import Record
from bridge.options import SinkConfigBase


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination has the whole batch.

    ``ack``, when given, resolves later: True once the destination confirms it durably has the batch (Splunk
    indexer acknowledgement), False if it says it never will. The delivery loop waits for it up to its
    ``ack_timeout`` and resends the batch otherwise; the cursor only moves past the batch once ``ack`` is True.
    """

    ack: asyncio.Future[bool] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure (5xx, 429, network). Resend the same batch after a backoff, or after ``delay``."""

    reason: str
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """The data is fine but the sink cannot take it now and retrying soon will not help (bad token, bad config).

    Never dead-letters anything: the batch waits, with backoff, until the operator fixes the cause.
    """

    reason: str
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """The destination refused the batch for its content.

    ``index`` is the position of the first bad record when the destination says it (records before it were
    accepted; those after it were not processed). ``None`` means "something in this batch": the delivery loop
    splits the batch until the bad record is isolated. Only an isolated record is dead-lettered.
    """

    reason: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class TooLarge:
    """The batch is over the destination's size limit (HTTP 413): split it and send the halves."""

    reason: str


@dataclass(frozen=True, slots=True)
class Partial:
    """The destination took the first ``accepted`` records and failed the rest transiently: resend only the rest."""

    accepted: int
    reason: str
    delay: float | None = None


Outcome = Delivered | Retry | Hold | Rejected | TooLarge | Partial


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the delivery loop drives one sink (see :class:`bridge.delivery.Delivery`)."""

    max_events: int = 500
    max_bytes: int = 1024 * 1024
    max_wait: float = 1.0
    retry_initial: float = 0.5
    retry_max: float = 60.0
    # Batches sent and not yet confirmed, at once (settled in order whatever order they finish in).
    max_in_flight: int = 1
    # One attempt of send(): longer is a hung sink, retried.
    send_timeout: float = 120.0
    # How long a Delivered(ack=...) may wait for its acknowledgement before the batch is sent again.
    ack_timeout: float = 300.0
    # How long a batch may keep failing transiently (Retry) before its events are dead-lettered; None: for ever.
    max_retry_time: float | None = None
    # With max_in_flight > 1: a batch waits for earlier ones holding the same device and attribute, so those
    # events arrive in order even when an earlier request is retried.
    ordered_keys: bool = False
    # How often the loop looks for dead letters `hubbridge spool replay` sent back (another process wrote them).
    replay_poll: float = 2.0


class Sink(abc.ABC):
    """Base of every sink. ``name`` is the sink's name in the config. Registered by ``type_name``."""

    type_name: ClassVar[str] = "sink"
    Config: ClassVar[type[SinkConfigBase]]

    def __init__(self, name: str) -> None:
        self.name = name
        self._closed = False

    @classmethod
    def delivery_options(cls, config: Any) -> DeliveryOptions:
        """How the delivery loop drives this sink; the default reads ``batch`` and ``retry`` from its config."""
        batch, retry = config.batch, config.retry
        return DeliveryOptions(
            max_events=batch.max_events,
            max_bytes=batch.max_bytes,
            max_wait=batch.max_wait,
            retry_initial=retry.initial,
            retry_max=retry.max,
        )

    @property
    def kind(self) -> str:
        return self.type_name

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open files, sessions and background tasks."""

    async def close(self) -> None:
        """Release what :meth:`start` opened. Must not raise."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"sink {self.name}: send() after close()")

    async def health(self) -> Health:
        """A cheap check of the destination, run at start and shown on /healthz."""
        return Health(True, "ok")

    @abc.abstractmethod
    async def send(self, batch: Sequence[Record]) -> Outcome:
        """Deliver ``batch`` (in journal order) and classify the result. Must not raise for expected failures."""
