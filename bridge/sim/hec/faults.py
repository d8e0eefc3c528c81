"""Injected faults on the event endpoints (§7): queued error replies, random busy replies, dropped connections."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web

from bridge.sim.hec.core import HecCore
from bridge.sim.hec.protocol import CODE_TABLE
from bridge.sim.hec.records import RequestRecord

#: When ``fail_next`` gets no code, the HEC code a Splunk server pairs with that status (§3.2). Statuses
#: not listed (502, 504, 408, ...) come from proxies in front of HEC and get a plain-text body, no code.
_DEFAULT_CODE_FOR_STATUS: Final[dict[int, int]] = {200: 0, 500: 8, 503: 9, 429: 26}


@dataclass(slots=True)
class Fault:
    status: int
    code: int | None
    retry_after: float | None
    invalid_event_number: int | None


def _format_retry_after(seconds: float) -> str:
    # RFC 9110 delta-seconds is an integer; keep a fraction only when the caller asked for one.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class FaultMixin(HecCore):
    """Fault injection for :class:`~bridge.sim.hec.HecSim` (``outage`` and ``response_delay`` are in the core)."""

    def __init__(self, *, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rng = random.Random(seed)
        #: The next N event posts: connection closed before the body is read (nothing indexed).
        self.drop_before_body = 0
        #: The next N event posts: body read and indexed, then the connection closed without a reply.
        self.drop_after_body = 0
        #: Probability (0..1) that an event post is answered 503/9 without indexing, drawn from the
        #: seeded RNG so a run is reproducible. 0 disables it.
        self.busy_probability = 0.0
        self._faults: deque[list[Any]] = deque()  # [remaining, Fault]

    def fail_next(
        self,
        n: int,
        status: int,
        code: int | None = None,
        *,
        retry_after: float | None = None,
        invalid_event_number: int | None = None,
    ) -> None:
        """Answer the next ``n`` event posts (``/event``, ``/raw`` and aliases) with ``status``.

        ``code`` defaults to the code Splunk pairs with the status (500->8, 503->9, 429->26); a status with
        no HEC code (502, 504, 408, ...) gets a plain-text body, as a proxy in front of HEC would send. With
        a 2xx status (e.g. codes 24/25, "approaching capacity" warnings) the batch is processed and indexed
        normally and only the reply code/text change. ``invalid_event_number=k`` makes it a partial
        failure as in §3.1 (``{"text":"Server is busy","code":9,"invalid-event-number":10}``): the first
        ``k`` events are indexed, the rest are not. Calls queue up in order.
        """
        if n <= 0:
            return
        if code is None:
            code = _DEFAULT_CODE_FOR_STATUS.get(status)
        elif code not in CODE_TABLE:
            raise ValueError(f"unknown HEC code {code}")
        self._faults.append([n, Fault(status, code, retry_after, invalid_event_number)])

    def _busy_now(self) -> bool:
        """``busy_probability`` drawn for one event post."""
        return self.busy_probability > 0 and self._rng.random() < self.busy_probability

    def _take_fault(self) -> Fault | None:
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[0] -= 1
        if entry[0] <= 0:
            self._faults.popleft()
        fault: Fault = entry[1]
        return fault

    def _fault_reply(
        self,
        rec: RequestRecord,
        fault: Fault,
        *,
        invalid_event_number: int | None = None,
        ack_id: int | None = None,
    ) -> web.Response:
        headers = None
        if fault.retry_after is not None:
            headers = {"Retry-After": _format_retry_after(fault.retry_after)}
        if fault.code is None:
            try:
                reason = HTTPStatus(fault.status).phrase
            except ValueError:
                reason = "Error"
            return self._plain(rec, fault.status, f"{fault.status} {reason}", headers)
        return self._reply(
            rec,
            fault.code,
            status=fault.status,
            headers=headers,
            invalid_event_number=invalid_event_number,
            ack_id=ack_id,
        )

    @staticmethod
    def _drop(request: web.Request, rec: RequestRecord) -> web.Response:
        """Close the connection without answering. aiohttp then fails to write the returned response,
        treats it as a client disconnect and moves on quietly (web_protocol finish_response)."""
        rec.status = 0
        rec.code = None
        transport = request.transport
        if transport is not None:
            transport.close()
        return web.Response(status=204)
