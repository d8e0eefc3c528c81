"""HEC's answers as outcomes: the code table of splunk_hec.md 3.2, as pure functions tested without sockets.

``classify`` maps a reply to ``/event`` to an :data:`~bridge.sinks.base.Outcome` (or to :class:`Accepted`, which the
sink turns into ``Delivered`` once it knows whether to wait for an ackId); ``classify_ack`` and
``classify_health`` do the same for ``/ack`` and ``/health``. Every text is one line an operator can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from bridge.http import parse_retry_after
from bridge.sinks.base import Hold, Outcome, Partial, Rejected, Retry, TooLarge
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig

# §3.2: 400 codes that say nothing about the events but about how we talk to HEC (channel, ack, query-string
# auth). Dead-lettering events for these would lose good data over a configuration problem, so they hold.
CONFIG_CODES = frozenset({10, 11, 14, 16})
# §3.2: 2xx codes that are successes with a warning ("approaching capacity").
WARNING_CODES = frozenset({24, 25})
# §3.2 / §1.2: which token problem each code means.
TOKEN_CODES = {
    1: "the token is disabled",
    2: "no token was sent",
    3: "the Authorization header is malformed",
    4: "the token is not known to HEC",
    21: "the token is not known to HEC",
    22: "the token is disabled",
}
# §3.2 codes 18-20, the health endpoint's unhealthy states.
UNHEALTHY = {18: "queues are full", 19: "ack service unavailable", 20: "queues are full, ack service unavailable"}


@dataclass(frozen=True, slots=True)
class Reply:
    """What HEC answered: status, body, and the headers that matter."""

    status: int
    body: bytes
    retry_after: str | None = None
    location: str | None = None

    def parsed(self) -> tuple[dict[str, Any], int | None]:
        """HEC's reply object (§3.1) and its integer ``code``; ({}, None) when the body is not one."""
        try:
            obj = json.loads(self.body) if self.body else None
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            return {}, None
        code = obj.get("code")
        return obj, code if isinstance(code, int) and not isinstance(code, bool) else None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A 2xx: HEC has the batch. ``ack_id`` when it gave one; ``warning`` when it said it is near capacity."""

    ack_id: int | None
    warning: str | None


def token_problem(code: int | None) -> str:
    return TOKEN_CODES.get(code, "the token was refused") if code is not None else "the token was refused"


def ack_hint(sink: str) -> str:
    return (
        "indexer acknowledgement is not enabled on this HEC token (code 14 'ACK is disabled'): set ack: false "
        f"for sink {sink!r}, or enable indexer acknowledgement on the token in Splunk"
    )


def ack_missing_hint(sink: str, status: int) -> str:
    return (
        f"this receiver has no indexer acknowledgement endpoint (HTTP {status} on /services/collector/ack; Fluent "
        f"Bit's Splunk input and some proxies have none): set ack: false for sink {sink!r}"
    )


def classify(reply: Reply, owners: list[int], parts: list[int], config: SplunkHecSinkConfig) -> Accepted | Outcome:
    """Map HEC's reply to a batch to an outcome, following the code table of §3.2.

    ``owners[k]`` is the batch index of the record envelope ``k`` came from and ``parts[k]`` its position among that
    record's envelopes (HEC's ``invalid-event-number`` counts envelopes, the journal counts records).
    """
    obj, code = reply.parsed()
    status = reply.status
    text = obj.get("text")
    what = f"HTTP {status}" + (f", code {code} {text!r}" if code is not None else "")

    if 200 <= status < 300:
        warning = what if code in WARNING_CODES else None
        ack_id = obj.get("ackId", obj.get("ackID"))
        return Accepted(ack_id if isinstance(ack_id, int) and not isinstance(ack_id, bool) else None, warning)

    n = obj.get("invalid-event-number")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < len(owners):
        n = None
    if status in (401, 403) or code in TOKEN_CODES:
        # DESIGN 4: the data is fine and the token is not; hold, never drop or dead-letter.
        return Hold(
            f"HEC refused the token ({what}): {token_problem(code)}; fix token/token_file (read on every request)"
        )
    if code == 7:
        # §2.1: the index is not allowed for the token. Our envelopes only carry the sink's index or metrics_index,
        # so every event would fail alike: a configuration problem, not a bad event.
        indexes = " and ".join(repr(i) for i in (config.index, config.metrics_index) if i)
        return Hold(
            f"HEC refused the index ({what}): allow index {indexes or '(the default)'} for this token in Splunk, "
            "or change index/metrics_index in the config"
        )
    if status == 413:
        return TooLarge(f"HEC says the request is too large ({what})")
    if status in (408, 429) or status >= 500:
        # §3.2 / §5.6: busy, at capacity or failing: retry with backoff, honouring Retry-After. A partial reply
        # (§3.1 invalid-event-number) took the records before it: only the rest is sent again.
        delay = parse_retry_after(reply.retry_after)
        reason = f"HEC is busy or failing ({what})"
        if n is not None and owners[n] > 0:
            return Partial(owners[n], reason, delay)
        return Retry(reason, delay)
    if status == 400 and code not in CONFIG_CODES:
        reason = f"HEC rejected the event: {text or 'HTTP 400'} (code {code})"
        if n is None:
            # Something in the batch, HEC did not say what: the delivery loop splits to find it.
            return Rejected(reason)
        if parts[n] > 0:
            reason += "; its event was indexed, its metric was refused"
        return Rejected(reason, owners[n])
    # A wrong URL (404/405), a redirect, an unsupported encoding (415) or a channel/ack/auth-mode code: a
    # configuration problem, not a bad event. Hold so nothing is lost while the operator fixes it.
    hint = ""
    if status == 415:
        hint = "; the server does not take gzip, set gzip: false"
    elif 300 <= status < 400:
        hint = f"; the server redirects to {reply.location}, put that in url"
    elif status in (404, 405):
        hint = f"; is {config.url} the HEC port (usually 8088)?"
    elif code == 14:
        hint = "; " + ack_hint(config.name)
    return Hold(f"HEC cannot take events from this sink as configured ({what}){hint}")


AckState = Literal["ok", "disabled", "missing", "token", "error"]


def classify_ack(reply: Reply, sink: str) -> tuple[AckState, dict[str, Any] | str]:
    """A reply to ``POST /ack`` (§4 items 4-7): ("ok", the acks object) or (a problem, one line about it)."""
    obj, code = reply.parsed()
    status = reply.status
    if status == 200 and isinstance(obj.get("acks"), dict):
        acks: dict[str, Any] = obj["acks"]
        return "ok", acks
    if code == 14:  # §4 item 7
        return "disabled", ack_hint(sink)
    if status in (401, 403) or code in TOKEN_CODES:
        return "token", f"HEC refused the token on /ack (HTTP {status}, code {code}): {token_problem(code)}"
    if code is None and status in (400, 404, 405, 501):
        # Not HEC's JSON at all: this receiver has no /ack (Fluent Bit answers 400 "invalid HTTP endpoint").
        return "missing", ack_missing_hint(sink, status)
    return "error", f"HEC /ack answered HTTP {status}" + (f", code {code} {obj.get('text')!r}" if code else "")


def classify_health(reply: Reply, url: str) -> tuple[bool, str]:
    """A reply to ``GET /health`` (§1.1): whether HEC can take events, and one line saying why not."""
    _, code = reply.parsed()
    status = reply.status
    if status in (401, 403) or code in TOKEN_CODES or (status == 400 and code is None):
        return (
            False,
            f"bad token: {url} answered HTTP {status} code {code}: {token_problem(code)}; fix token/token_file",
        )
    if status == 503 or code in UNHEALTHY:
        state = UNHEALTHY.get(code, "service unavailable") if code is not None else "service unavailable"
        return False, f"unhealthy: HEC at {url} is up but {state} (HTTP {status}, code {code})"
    if status != 200:
        return False, f"unexpected answer from {url}: HTTP {status} (is this the HEC port?)"
    return True, ""


def classify_token_probe(reply: Reply, url: str) -> tuple[bool, str]:
    """A reply to an empty ``POST /event`` (§3.2 code 5 "No data", the probe hass-splunk uses): is the token good?"""
    _, code = reply.parsed()
    if reply.status in (401, 403) or code in TOKEN_CODES:
        return False, f"bad token: {url} refused it (HTTP {reply.status}, code {code}): {token_problem(code)}"
    return True, ""
