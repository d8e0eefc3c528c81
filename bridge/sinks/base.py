"""The sink contract (DESIGN 6).

A sink knows one destination's wire format and how to classify its answers. It does not retry, back off,
dead-letter or move cursors: the delivery loop (bridge.delivery) does that for every sink alike.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.journal import Record


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination has the whole batch.

    ``ack``, when given, resolves later: True once the destination confirms it durably has the batch (Splunk
    indexer acknowledgement), False if that confirmation never came in time and the batch must be resent.
    The cursor only advances past the batch once ``ack`` is True.
    """

    ack: asyncio.Future[bool] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure (5xx, 429, network). Resend the same batch after a backoff, or after ``delay``."""

    reason: str
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """The data is fine but the sink cannot take it now and retrying soon will not help (bad token).

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


Outcome = Delivered | Retry | Hold | Rejected | TooLarge


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str


class Sink(abc.ABC):
    """Base class of every sink. ``name`` is the sink's name in the config."""

    kind: str = "sink"

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open files, sessions and background tasks."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` opened. Must not raise."""

    async def health(self) -> Health:
        """A cheap check of the destination, run at start and shown on /healthz."""
        return Health(True, "ok")

    @abc.abstractmethod
    async def send(self, batch: Sequence[Record]) -> Outcome:
        """Deliver ``batch`` (in journal order) and classify the result. Must not raise for expected failures."""
