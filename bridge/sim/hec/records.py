"""``RequestRecord``: what the simulator saw of one request and how it answered, for tests to inspect."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    """One request the simulator saw, in arrival order.

    ``status`` is 0 when the connection was dropped without a response. ``code`` is the HEC code of the
    reply, None for replies without one (413, 415, 404, plain proxy errors, drops). ``headers`` has
    lower-cased names and the Authorization value redacted; ``query`` has ``token`` redacted.
    ``body_bytes`` is the request body after gzip decoding (the wire bytes when it could not be decoded;
    empty when ``HecSim.record_bodies`` is False). ``n_events`` counts the events this request indexed.
    ``at`` is ``time.monotonic()`` when the request arrived (for checking how a client spaces its retries).
    """

    method: str
    path: str
    status: int = 0
    code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: bytes = b""
    n_events: int = 0
    channel: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    ack_id: int | None = None
    at: float = field(default_factory=time.monotonic)
