"""A receiver's answer as an :data:`~bridge.sinks.base.Outcome`: the webhook sink's outcome table, without sockets.

=================================  ==========================================================================
2xx                                delivered
408, 425, 429, 5xx, network        retry with capped full-jitter backoff, honouring Retry-After
410 Gone                           the receiver says the hook is gone for good: the sink disables itself and
                                   holds its backlog (never dead-letters it) until the config is fixed
401, 403, 407                      the credentials are wrong, not the events: hold (DESIGN 4)
404, 405, 3xx                      nothing takes events at that URL: hold (a typo must not dead-letter
                                   every event), with a hint
413                                too large: the delivery loop splits the batch
other 4xx                          the receiver refused the content: dead-letter (a batch is split first to
                                   find the bad event) with the status and the first 1 KiB of the body
=================================  ==========================================================================
"""

from __future__ import annotations

from bridge.http import parse_retry_after, redact
from bridge.options import shown_url
from bridge.sinks.base import Delivered, Hold, Outcome, Rejected, Retry, TooLarge

# What of a refusing receiver's body goes into a dead letter's reason.
BODY_LIMIT = 1024
RETRY_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403, 407})
NO_ENDPOINT = frozenset({404, 405})


def body_text(body: bytes, limit: int = BODY_LIMIT) -> str:
    """The first ``limit`` bytes of a reply body as one line of text (never a broken character)."""
    text = body[:limit].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ").strip()
    return redact(text) + (" [...]" if len(body) > limit else "")


def classify(
    status: int, body: bytes, url: str, retry_after: str | None = None, location: str | None = None
) -> Outcome:
    """Map the receiver's reply to one request to an outcome (the table in this module's docstring)."""
    where = shown_url(url)
    said = body_text(body)
    what = f"HTTP {status}" + (f": {said}" if said else "")
    if 200 <= status < 300:
        return Delivered()
    if status in RETRY_STATUSES or status >= 500:
        return Retry(f"the webhook at {where} is busy or failing ({what[:220]})", parse_retry_after(retry_after))
    if status == 410:
        return Hold(gone_reason(url))
    if status in AUTH_STATUSES:
        return Hold(
            f"the webhook at {where} refused the request's credentials ({what[:220]}); fix secret or headers "
            "(events wait in the journal)"
        )
    if status in NO_ENDPOINT or 300 <= status < 400:
        hint = f"it redirects to {shown_url(location or '?')}, put that in url" if status < 400 else "check url"
        return Hold(f"nothing at {where} takes events ({what[:220]}); {hint} (events wait in the journal)")
    if status == 413:
        return TooLarge(f"the webhook at {where} says the request is too large ({what[:220]})")
    if 400 <= status < 500:
        return Rejected(f"the webhook refused the event: {what}")
    return Retry(f"the webhook at {where} answered {what[:220]}")


def gone_reason(url: str) -> str:
    return (
        f"the webhook at {shown_url(url)} answered 410 Gone: the receiver removed this hook, so the sink is "
        "disabled and keeps its backlog; fix url (or remove the sink) and restart hubbridge"
    )
