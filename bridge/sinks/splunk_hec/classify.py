"""HEC's answers as outcomes: the code table of splunk_hec.md 3.2, as pure functions tested without sockets.

``classify`` maps a reply to ``/event`` to an :data:`~bridge.sinks.base.Outcome` (or to :class:`Accepted`, which the
sink turns into ``Delivered`` once it knows whether to wait for an ackId); ``classify_ack`` and
``classify_health`` do the same for ``/ack`` and ``/health``. Every text is one line an operator can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from bridge.events import shorten
from bridge.http import parse_retry_after, redact
from bridge.sinks.base import Hold, Outcome, Partial, Rejected, Retry, TooLarge
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig

# §1.1: where events go (the token probe of the health check posts there too).
EVENT_PATH = "/services/collector/event"
# §3.2: 400 codes that say nothing about the events but about how we talk to HEC (channel, ack, query-string
# auth; and "No data", which for a batch that has events means its body did not arrive). Dead-lettering events
# for these would lose good data over a configuration problem, so they hold.
CONFIG_CODES = frozenset({5, 10, 11, 14, 16})
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
# Statuses with which a server says it has no such endpoint (when the body is not HEC's JSON): a plain 404 or 405
# from a proxy, 501, or Fluent Bit's 400 "error: invalid HTTP endpoint" (§6.3).
NO_ENDPOINT = frozenset({400, 404, 405, 501})
# §3.2 codes about an event post's body: a receiver that answers /ack with them treats /ack as an event post
# (the OTel receiver routes every unknown path to its event handler, §6.2), so it has no acknowledgement.
EVENT_BODY_CODES = frozenset({12, 13})
# Server-given text (HEC's "text", a Location header) in a reason is cut to this: one readable line.
SERVER_TEXT_LIMIT = 200


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
            if isinstance(obj, str) and obj.startswith("{"):
                # §6.2: the OTel receiver JSON-encodes its error bodies twice; the object is inside the string.
                obj = json.loads(obj)
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


def said(value: Any) -> str:
    """Text a server sent, fit for a reason: one line, shortened, ``token=``-style query values blanked.

    The sink also blanks its token in every reason (a misbehaving proxy could echo the Authorization header).
    """
    return redact(shorten(str(value).replace("\r", " ").replace("\n", " "), SERVER_TEXT_LIMIT))


def token_problem(code: int | None) -> str:
    return TOKEN_CODES.get(code, "the token was refused") if code is not None else "the token was refused"


def ack_hint(sink: str) -> str:
    return (
        "indexer acknowledgement is not enabled on this HEC token (code 14 'ACK is disabled'): set ack: false "
        f"for sink {sink!r}, or enable indexer acknowledgement on the token in Splunk"
    )


def ack_missing_hint(sink: str, status: int, answer: str = "") -> str:
    answer = answer or f"HTTP {status} on /services/collector/ack"
    return (
        f"this receiver has no indexer acknowledgement endpoint ({answer}; Fluent Bit's Splunk input and some "
        f"proxies have none): set ack: false for sink {sink!r}"
    )


def classify(reply: Reply, owners: list[int], parts: list[int], config: SplunkHecSinkConfig) -> Accepted | Outcome:
    """Map HEC's reply to a batch to an outcome, following the code table of §3.2.

    ``owners[k]`` is the batch index of the record envelope ``k`` came from and ``parts[k]`` its position among that
    record's envelopes (HEC's ``invalid-event-number`` counts envelopes, the journal counts records).
    """
    obj, code = reply.parsed()
    status = reply.status
    text = said(obj["text"]) if obj.get("text") is not None else None
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
    if status == 400 and code is None:
        # Not HEC's reply (§3.1 always has a code): a proxy or another server refused the request itself, e.g.
        # nginx's "plain HTTP request was sent to HTTPS port". Splitting would dead-letter every event over it.
        return Hold(
            f"HTTP 400 without HEC's reply body from {config.url}: something other than HEC refused the request "
            "(a proxy, or http:// to an https port?); check url"
        )
    if status == 400 and code not in CONFIG_CODES:
        reason = f"HEC rejected the event: {text or 'no text'} (code {code})"
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
        hint = f"; the server redirects to {said(reply.location)}, put that in url"
    elif status in (404, 405):
        hint = f"; is {config.url} the HEC port (usually 8088)?"
    elif code == 14:
        hint = "; " + ack_hint(config.name)
    elif code == 5:
        hint = "; the batch had events, so something between the bridge and HEC dropped the request body"
    elif code in (10, 11):
        hint = "; the sink sends a GUID channel on every request, so something in between drops or alters it"
    elif code == 16:
        hint = "; the token must not be in the url's query string, give it as token or token_file"
    return Hold(f"HEC cannot take events from this sink as configured ({what}){hint}")


AckState = Literal["ok", "disabled", "missing", "token", "moved", "error"]


def classify_ack(reply: Reply, sink: str) -> tuple[AckState, dict[str, Any] | str]:
    """A reply to ``POST /ack`` (§4 items 4-7): ("ok", the acks object) or (a problem, one line about it).

    "disabled" (code 14) and "missing" (no usable /ack on this receiver) are configuration problems: the sink holds
    and says to set ``ack: false``. "token" (refused token) and "moved" (a redirect) hold too; "error" (busy,
    5xx, anything else) is retried.
    """
    obj, code = reply.parsed()
    status = reply.status
    acks = obj.get("acks")
    if status == 200 and isinstance(acks, dict) and all(type(v) is bool for v in acks.values()):
        return "ok", acks
    if code == 14:  # §4 item 7
        return "disabled", ack_hint(sink)
    if status in (401, 403) or code in TOKEN_CODES:
        return "token", f"HEC refused the token on /ack (HTTP {status}, code {code}): {token_problem(code)}"
    if 200 <= status < 300:
        # A 2xx that is not §4's {"acks":{"<id>":true|false}}: a lenient receiver that takes any POST (or one that
        # routes /ack to its event handler). It will never confirm anything, so waiting for it would be for ever.
        shape = f"HTTP {status} on /services/collector/ack without the acks object of indexer acknowledgement"
        return "missing", ack_missing_hint(sink, status, shape)
    if (code is None and status in NO_ENDPOINT) or code in EVENT_BODY_CODES or status in (404, 405, 501):
        # Not HEC's /ack at all: this receiver has no /ack (Fluent Bit answers 400 "invalid HTTP endpoint").
        return "missing", ack_missing_hint(sink, status)
    if 300 <= status < 400:
        return "moved", f"the server redirects /ack (HTTP {status}) to {said(reply.location)}, put that in url"
    return "error", f"HEC /ack answered HTTP {status}" + (f", code {code} {said(obj.get('text'))!r}" if code else "")


def classify_health(reply: Reply, url: str) -> tuple[bool, str]:
    """A reply to ``GET /health`` (§1.1): whether HEC can take events, and one line saying why not.

    A receiver without /health (a plain 404/405/501, or Fluent Bit's plain 400 on paths it lacks) is not a
    problem in itself: the answer is (True, "no /health endpoint ..."), and the token probe decides.
    """
    _, code = reply.parsed()
    status = reply.status
    if status in (401, 403) or code in TOKEN_CODES:
        return (
            False,
            f"bad token: {url} answered HTTP {status} code {code}: {token_problem(code)}; fix token/token_file",
        )
    if status == 503 or code in UNHEALTHY:
        state = UNHEALTHY.get(code, "service unavailable") if code is not None else "service unavailable"
        return False, f"unhealthy: HEC at {url} is up but {state} (HTTP {status}, code {code})"
    if 200 <= status < 300:
        return True, ""
    if code is None and status in NO_ENDPOINT:
        return True, f"no /health endpoint (HTTP {status})"
    return False, f"unexpected answer from {url}: HTTP {status} on /health (is this the HEC port?)"


def classify_token_probe(reply: Reply, url: str) -> tuple[bool, str]:
    """A reply to an empty ``POST /event`` (§3.2 code 5 "No data", the probe hass-splunk uses): is the token good?

    HEC checks the token before the body, so any 400 (code 5, or another complaint about the empty body) or 2xx
    means it took the token. Anything else says what is wrong instead: the token, a busy HEC, or a URL that does
    not lead to HEC's event endpoint (which a receiver without /health leaves to this probe to find).
    """
    _, code = reply.parsed()
    status = reply.status
    if status in (401, 403) or code in TOKEN_CODES:
        return False, f"bad token: {url} refused it (HTTP {status}, code {code}): {token_problem(code)}"
    if status == 400 or 200 <= status < 300:
        return True, ""
    if status in (408, 429) or status >= 500:
        return False, f"unhealthy: HEC at {url} is up but busy or failing (HTTP {status}, code {code})"
    if 300 <= status < 400:
        return False, f"unexpected answer from {url}: it redirects to {said(reply.location)}, put that in url"
    return False, f"unexpected answer from {url}: HTTP {status} on {EVENT_PATH} (is this the HEC port?)"
