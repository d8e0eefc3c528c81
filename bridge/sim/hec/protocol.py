"""HEC wire facts: the code table and its texts, health states, endpoint paths, channel syntax, reply bodies."""

from __future__ import annotations

import json
import re
from typing import Any, Final

DEFAULT_TOKEN: Final = "sim-hec-token"

#: §3.2: HEC status codes -> (HTTP status, exact reply text). Codes 23-27 are only [3P] in the reference
#: but are kept so fault injection can produce them (§7 "Injectable faults" lists 23, 24, 25, 26, 27).
CODE_TABLE: Final[dict[int, tuple[int, str]]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue is approaching its capacity limit"),
    25: (200, "HEC ACK is approaching its capacity limit"),
    26: (429, "HEC queue is at capacity and cannot process any more requests"),
    27: (429, "HEC ACK channel is at capacity and cannot process any more requests"),
}

#: ``health_status`` values -> health code (§1.1 healthy body; §7 "a switchable 503 with codes 18, 19, 20").
#: "unhealthy" is the short name for the common case, queues full.
HEALTH_STATES: Final[dict[str, int]] = {
    "ok": 17,
    "unhealthy": 18,
    "queues_full": 18,
    "ack_unavailable": 19,
    "queues_full_ack_unavailable": 20,
}

#: §2.4: inputs.conf maxEventSize default (5 MiB), checked on each decompressed event (§1.4).
DEFAULT_MAX_EVENT_SIZE: Final = 5_242_880

EVENT_PATHS: Final = ("/services/collector", "/services/collector/event", "/services/collector/event/1.0")
RAW_PATHS: Final = ("/services/collector/raw", "/services/collector/raw/1.0")
ACK_PATH: Final = "/services/collector/ack"
HEALTH_PATHS: Final = ("/services/collector/health", "/services/collector/health/1.0")
METHOD_OF_PATH: Final[dict[str, str]] = {
    **dict.fromkeys((*EVENT_PATHS, *RAW_PATHS, ACK_PATH), "POST"),
    **dict.fromkeys(HEALTH_PATHS, "GET"),
}

# §1.3: a channel "must be a GUID/UUID formatted value"; the canonical 8-4-4-4-12 hex form only.
GUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

JSON_CT: Final = "application/json"

#: §6.3 [RUN]: what Fluent Bit's Splunk input answers on the endpoints it lacks (``POST /ack``, ``/health/1.0``),
#: as (HTTP status, plain-text body); for ``HecSim.no_endpoint_reply``.
FLUENT_BIT_NO_ENDPOINT: Final = (400, "error: invalid HTTP endpoint")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def hec_body(code: int, invalid_event_number: int | None = None, ack_id: int | None = None) -> bytes:
    """The reply body of §3.1: ``{"text":...,"code":N}`` plus ``invalid-event-number`` / ``ackId``."""
    body: dict[str, Any] = {"text": CODE_TABLE[code][1], "code": code}
    if invalid_event_number is not None:
        body["invalid-event-number"] = invalid_event_number
    if ack_id is not None:
        body["ackId"] = ack_id
    return dumps(body)


SUCCESS_BODY: Final = hec_body(0)
