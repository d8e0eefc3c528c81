"""HEC's answers as outcomes (bridge.sinks.splunk_hec.classify), row by row of splunk_hec.md §3.2, without sockets.

Each test feeds a reply as HEC (or a proxy, or another receiver) sends it and checks the outcome the delivery loop
acts on: delivered, retried (with HEC's delay), held (nothing dropped, a hint for the operator), split, or one
record dead-lettered. The expected codes and texts are written out here from the reference, not imported from the
simulator, so a mistake in either shows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.sinks.base import Hold, Outcome, Partial, Rejected, Retry, TooLarge
from bridge.sinks.splunk_hec.classify import (
    Accepted,
    Reply,
    classify,
    classify_ack,
    classify_health,
    classify_token_probe,
)
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig

TOKEN = "3f9c2a7e-51d4-4b8e-9a0c-token-never-shown"
URL = "https://splunk.example:8088"
CONFIG = SplunkHecSinkConfig.model_validate(
    {"name": "splunk", "type": "splunk_hec", "url": URL, "token": TOKEN, "index": "home"}
)
METRICS = CONFIG.model_copy(update={"metrics": "also", "metrics_index": "home_metrics"})
# Four records, one envelope each (owners, parts).
FOUR = ([0, 1, 2, 3], [0, 0, 0, 0])
# Metrics "also": three records, each an event envelope then a metric envelope.
PAIRS = ([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])

# §3.2, transcribed: code -> (HTTP status, text).
TABLE: dict[int, tuple[int, str]] = {
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


def hec(code: int, status: int | None = None, *, retry_after: str | None = None, **extra: Any) -> Reply:
    """HEC's reply for ``code`` (§3.1), with ``invalid_event_number`` / ``ackId`` as extra keys."""
    http, text = TABLE[code]
    body: dict[str, Any] = {"text": text, "code": code}
    for key, value in extra.items():
        body["invalid-event-number" if key == "invalid_event_number" else key] = value
    return Reply(http if status is None else status, json.dumps(body).encode(), retry_after)


def plain(status: int, text: str = "", **headers: str) -> Reply:
    """A reply without HEC's JSON: a proxy, another server, or a receiver that lacks the endpoint."""
    return Reply(status, text.encode(), headers.get("retry_after"), headers.get("location"))


def of(reply: Reply, shape: tuple[list[int], list[int]] = FOUR, config: SplunkHecSinkConfig = CONFIG) -> Any:
    return classify(reply, shape[0], shape[1], config)


def reason_of(outcome: Accepted | Outcome) -> str:
    reason = getattr(outcome, "reason", None)
    assert isinstance(reason, str), outcome
    return reason


# ------------------------------------------------------------------------------------------------ the code table

# What each row of §3.2 does to a batch of events posted to /event. Codes 17-22 are the health endpoint's, but a
# server that sends them on /event is still classified by its status and code.
ROWS: list[tuple[int, type, str]] = [
    (0, Accepted, ""),
    (1, Hold, "the token is disabled"),
    (2, Hold, "no token was sent"),
    (3, Hold, "the Authorization header is malformed"),
    (4, Hold, "the token is not known to HEC"),
    (5, Hold, "dropped the request body"),
    (6, Rejected, "Invalid data format"),
    (7, Hold, "allow index 'home'"),
    (8, Retry, "Internal server error"),
    (9, Retry, "Server is busy"),
    (10, Hold, "channel"),
    (11, Hold, "channel"),
    (12, Rejected, "Event field is required"),
    (13, Rejected, "Event field cannot be blank"),
    (14, Hold, "set ack: false"),
    (15, Rejected, "Error in handling indexed fields"),
    (16, Hold, "query string"),
    (17, Accepted, ""),
    (18, Retry, "queues are full"),
    (19, Retry, "ack service unavailable"),
    (20, Retry, "queues are full, ack service unavailable"),
    (21, Hold, "the token is not known to HEC"),
    (22, Hold, "the token is disabled"),
    (23, Retry, "Server is shutting down"),
    (24, Accepted, ""),
    (25, Accepted, ""),
    (26, Retry, "HEC queue is at capacity"),
    (27, Retry, "HEC ACK channel is at capacity"),
]


def test_the_rows_cover_the_whole_code_table() -> None:
    """Every code of §3.2 has a row below, so no code's handling goes unchecked."""
    assert [code for code, _, _ in ROWS] == sorted(TABLE)


@pytest.mark.parametrize(("code", "kind", "phrase"), ROWS, ids=[f"code-{c}" for c, _, _ in ROWS])
def test_each_code_of_the_table(code: int, kind: type, phrase: str) -> None:
    """Each §3.2 code leads to its outcome, and the reason names the code and says what to do, in one line."""
    outcome = of(hec(code))
    assert type(outcome) is kind
    if kind is Accepted:
        return
    reason = reason_of(outcome)
    assert phrase in reason and f"code {code}" in reason
    assert TOKEN not in reason and "\n" not in reason


def test_a_token_problem_is_held_never_dropped() -> None:
    """401 and 403 hold whatever the body says: the token is wrong, never the events (DESIGN 4)."""
    for reply in (plain(401, "Unauthorized"), plain(403, "<html>Forbidden</html>"), hec(4, 403), hec(3, 401)):
        outcome = of(reply)
        assert isinstance(outcome, Hold) and "fix token/token_file" in outcome.reason
        assert TOKEN not in outcome.reason


# ------------------------------------------------------------------------------------------------ 2xx


def test_success_carries_hecs_ack_id() -> None:
    """A 200 with an ackId is delivered pending that ackId; the ackID spelling works too (§5.5)."""
    assert of(hec(0, ackId=7)) == Accepted(7, None)
    assert of(hec(0, ackID=3)) == Accepted(3, None)
    assert of(hec(0)) == Accepted(None, None)
    # Not an integer id: nothing to poll for.
    assert of(hec(0, ackId=True)) == Accepted(None, None)
    assert of(hec(0, ackId="7")) == Accepted(None, None)


def test_success_without_hecs_body_is_delivered() -> None:
    """Any 2xx means the receiver has the batch, even with a body that is not HEC's (the OTel receiver's "OK")."""
    for reply in (plain(200, '"OK"'), plain(200), plain(204), plain(200, "<html>ok</html>")):
        assert of(reply) == Accepted(None, None)


@pytest.mark.parametrize("code", [24, 25])
def test_a_near_capacity_warning_is_a_success_with_a_warning(code: int) -> None:
    """Codes 24/25 (200, approaching capacity) deliver the batch and carry the warning to log."""
    outcome = of(hec(code, ackId=1))
    assert isinstance(outcome, Accepted) and outcome.ack_id == 1
    assert outcome.warning is not None and f"code {code}" in outcome.warning
    assert TABLE[code][1] in outcome.warning


# ------------------------------------------------------------------------------------------------ size, retries


def test_413_splits_the_batch() -> None:
    """413 (over max_content_length, no HEC body) is TooLarge: the delivery loop halves the batch."""
    outcome = of(plain(413, "Content-Length of 5000 too large (maximum is 3000)"))
    assert isinstance(outcome, TooLarge) and "too large" in outcome.reason and "HTTP 413" in outcome.reason


@pytest.mark.parametrize(
    ("reply", "delay"),
    [
        (hec(9, retry_after="3"), 3.0),
        (hec(8), None),
        (hec(26, retry_after="7"), 7.0),
        (hec(27, retry_after="1.5"), 1.5),
        (hec(23, retry_after="soon"), None),  # unreadable: the loop's own backoff
        (plain(408, "Request Timeout"), None),
        (plain(429, "Too Many Requests", retry_after="12"), 12.0),
        (plain(502, "Bad Gateway"), None),
        (plain(504, "Gateway Timeout", retry_after="2"), 2.0),
        (plain(500), None),
    ],
    ids=["503-9", "500-8", "429-26", "429-27", "503-23", "408", "429-plain", "502", "504", "500-plain"],
)
def test_busy_or_failing_is_retried_honouring_retry_after(reply: Reply, delay: float | None) -> None:
    """408, 429 and 5xx are retried; HEC's Retry-After becomes the delay the loop waits at least."""
    outcome = of(reply)
    assert outcome == Retry(reason_of(outcome), delay)
    assert "busy or failing" in reason_of(outcome)


def test_retry_after_as_an_http_date() -> None:
    """A Retry-After given as an HTTP date in the past means retry now (a delay of 0)."""
    outcome = of(hec(9, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    assert isinstance(outcome, Retry) and outcome.delay == 0.0


# ------------------------------------------------------------------------------------------------ partial acceptance


def test_a_partial_busy_reply_resends_only_the_records_after_the_accepted_ones() -> None:
    """503/9 with invalid-event-number 2: records 0 and 1 are in Splunk, only 2 and 3 go again (§3.1)."""
    outcome = of(hec(9, invalid_event_number=2, retry_after="4"))
    assert isinstance(outcome, Partial) and (outcome.accepted, outcome.delay) == (2, 4.0)
    # Nothing accepted, or a number HEC cannot mean: the whole batch again.
    for n in (0, 4, -1, True, "2", None):
        assert isinstance(of(hec(9, invalid_event_number=n)), Retry), n


def test_a_partial_busy_reply_in_metrics_mode_counts_records_not_envelopes() -> None:
    """With two envelopes per record, invalid-event-number (envelopes) maps to whole records accepted."""
    # Envelopes 0-2 accepted: record 0 whole and record 1's event; record 1 goes again (a duplicate, not a loss).
    assert of(hec(9, invalid_event_number=3), PAIRS, METRICS) == Partial(1, reason_of(of(hec(9))))
    assert isinstance(of(hec(9, invalid_event_number=4), PAIRS, METRICS), Partial)
    assert of(hec(9, invalid_event_number=4), PAIRS, METRICS).accepted == 2
    # Only record 0's event went in: no record is whole, so all of them again.
    assert isinstance(of(hec(9, invalid_event_number=1), PAIRS, METRICS), Retry)


def test_a_400_with_an_event_number_dead_letters_that_record_only() -> None:
    """400 code 6 at event 2: records 0-1 were accepted, record 2 is the bad one (the loop resends 3)."""
    outcome = of(hec(6, invalid_event_number=2))
    assert isinstance(outcome, Rejected) and outcome.index == 2
    assert "Invalid data format" in outcome.reason and "code 6" in outcome.reason
    for code in (12, 13, 15):
        assert of(hec(code, invalid_event_number=0)) == Rejected(reason_of(of(hec(code))), 0)


def test_a_400_with_an_event_number_in_metrics_mode_names_the_record_and_which_half_failed() -> None:
    """In metrics mode the bad envelope maps to its record; a refused metric says the event went in."""
    event_refused = of(hec(6, invalid_event_number=2), PAIRS, METRICS)
    assert isinstance(event_refused, Rejected) and event_refused.index == 1
    assert "metric was refused" not in event_refused.reason
    metric_refused = of(hec(6, invalid_event_number=5), PAIRS, METRICS)
    assert isinstance(metric_refused, Rejected) and metric_refused.index == 2
    assert "its event was indexed, its metric was refused" in metric_refused.reason


def test_a_400_without_an_event_number_splits_the_batch() -> None:
    """HEC's 400 without invalid-event-number (or with one it cannot mean) says "something here": split."""
    for n in (None, 4, -1, False):
        outcome = of(hec(6) if n is None else hec(6, invalid_event_number=n))
        assert isinstance(outcome, Rejected) and outcome.index is None, n


def test_a_400_that_is_not_hecs_holds_instead_of_dead_lettering() -> None:
    """A plain-text 400 is a proxy refusing the request, not HEC refusing an event: hold, drop nothing."""
    for reply in (plain(400, "The plain HTTP request was sent to HTTPS port"), plain(400), plain(400, "[1,2]")):
        outcome = of(reply)
        assert isinstance(outcome, Hold) and "check url" in outcome.reason


def test_the_otel_receivers_twice_encoded_body_is_read() -> None:
    """The OTel receiver's error bodies are JSON strings holding HEC's object (§6.2): they count as HEC's."""
    twice = json.dumps(json.dumps({"text": "Invalid data format", "code": 6, "invalid-event-number": 1}))
    outcome = of(Reply(400, twice.encode()))
    assert isinstance(outcome, Rejected) and outcome.index == 1


# ------------------------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (5, "dropped the request body"),
        (10, "drops or alters it"),
        (11, "drops or alters it"),
        (14, "set ack: false for sink 'splunk'"),
        (16, "token or token_file"),
    ],
)
def test_configuration_codes_hold_with_a_hint(code: int, hint: str) -> None:
    """Codes 5, 10, 11, 14, 16 are about how the sink talks to HEC, not the events: hold, say what to fix."""
    outcome = of(hec(code, invalid_event_number=0))  # even with an event number: no event is to blame
    assert isinstance(outcome, Hold) and hint in outcome.reason and TOKEN not in outcome.reason


def test_a_forbidden_index_holds_naming_the_indexes() -> None:
    """Code 7 holds (every event carries the same index) and names the indexes to allow."""
    outcome = of(hec(7, invalid_event_number=1), PAIRS, METRICS)
    assert isinstance(outcome, Hold)
    assert "allow index 'home' and 'home_metrics'" in outcome.reason
    no_index = of(hec(7), config=CONFIG.model_copy(update={"index": None}))
    assert isinstance(no_index, Hold) and "(the default)" in no_index.reason


@pytest.mark.parametrize(
    ("reply", "hint"),
    [
        (plain(301, location="https://splunk.example:8088/"), "redirects to https://splunk.example:8088/"),
        (plain(302, location="https://sso.example/login?token=abc"), "redirects to https://sso.example/login"),
        (plain(307, location="https://other:8088/services/collector/event"), "put that in url"),
        (plain(308), "redirects to None"),
        (plain(404, "404: Not Found"), f"is {URL} the HEC port"),
        (plain(405, "Method Not Allowed"), "the HEC port"),
        (plain(415, "Unsupported Content-Encoding"), "set gzip: false"),
        (plain(418, "I'm a teapot"), "HTTP 418"),
    ],
    ids=["301", "302", "307", "308-no-location", "404", "405", "415", "418"],
)
def test_wrong_url_redirects_and_encodings_hold_with_a_hint(reply: Reply, hint: str) -> None:
    """Redirects (never followed: the token would go along), 404/405 and 415 hold with what to change."""
    outcome = of(reply)
    assert isinstance(outcome, Hold) and hint in outcome.reason
    assert "token=abc" not in outcome.reason  # a query value in a Location header is blanked


def test_no_reason_carries_a_token_from_config_or_reply_text() -> None:
    """No reason repeats the token the config holds, nor a token= query value a server put into its text."""
    replies = [hec(code) for code in TABLE] + [
        plain(status) for status in (301, 400, 401, 403, 404, 413, 415, 429, 500, 502)
    ]
    replies.append(Reply(503, json.dumps({"text": f"busy, see ?token={TOKEN}", "code": 9}).encode()))
    replies.append(Reply(302, b"", location=f"https://h/?token={TOKEN}"))
    for reply in replies:
        for outcome in (of(reply), of(reply, PAIRS, METRICS)):
            text = getattr(outcome, "reason", None) or getattr(outcome, "warning", None) or ""
            assert TOKEN not in text, reply


def test_a_long_server_text_is_cut_to_one_line() -> None:
    """A reply text of many lines and kilobytes becomes a short single-line reason."""
    outcome = of(Reply(503, json.dumps({"text": "line\n" * 2000, "code": 9}).encode()))
    reason = reason_of(outcome)
    assert "\n" not in reason and len(reason) < 400 and "characters" in reason


# ------------------------------------------------------------------------------------------------ /ack


def test_ack_reply_in_the_shape_of_section_4_is_ok() -> None:
    """{"acks":{"0":true,"1":false}} is the acknowledgement answer (§4 item 4); an empty object too."""
    assert classify_ack(Reply(200, b'{"acks":{"0":true,"1":false}}'), "splunk") == ("ok", {"0": True, "1": False})
    assert classify_ack(Reply(200, b'{"acks":{}}'), "splunk") == ("ok", {})


def test_ack_disabled_on_the_token_says_set_ack_false() -> None:
    """Code 14 on /ack: the token has no indexer acknowledgement; the hint says both ways to fix it."""
    state, detail = classify_ack(hec(14), "splunk")
    assert state == "disabled" and isinstance(detail, str)
    assert "set ack: false for sink 'splunk'" in detail and "enable indexer acknowledgement" in detail


@pytest.mark.parametrize(
    "reply",
    [
        plain(404, "Not Found"),
        plain(400, "error: invalid HTTP endpoint"),  # Fluent Bit's Splunk input (§6.3)
        plain(405, "Method Not Allowed"),
        plain(501, "Not Implemented"),
        Reply(404, b'{"code":404,"message":"no route"}'),  # a gateway's own JSON
        hec(12),  # a receiver that routes /ack to its event handler (the OTel receiver, §6.2)
        Reply(400, json.dumps(json.dumps({"text": "Event field is required", "code": 12})).encode()),
    ],
    ids=["404", "fluent-bit-400", "405", "501", "gateway-json-404", "event-handler", "otel"],
)
def test_a_receiver_without_ack_says_set_ack_false(reply: Reply) -> None:
    """No /ack at all (404, Fluent Bit's 400, an event handler's complaint): missing, with the ack: false fix."""
    state, detail = classify_ack(reply, "splunk")
    assert state == "missing" and isinstance(detail, str)
    assert "no indexer acknowledgement endpoint" in detail and "set ack: false for sink 'splunk'" in detail
    assert f"HTTP {reply.status}" in detail


@pytest.mark.parametrize(
    "body",
    [b'{"text":"Success","code":0}', b'"OK"', b"", b"<html>ok</html>", b'{"acks":[0,1]}', b'{"acks":{"0":"yes"}}'],
    ids=["hec-success", "otel-ok", "empty", "html", "acks-list", "acks-not-bool"],
)
def test_a_200_from_ack_without_the_acks_object_is_missing_not_retried(body: bytes) -> None:
    """A 200 on /ack that is not §4's acks object can never confirm a batch: hold with ack: false, not retry."""
    state, detail = classify_ack(Reply(200, body), "splunk")
    assert state == "missing" and isinstance(detail, str)
    assert "without the acks object" in detail and "set ack: false" in detail


def test_ack_token_problems_redirects_and_failures() -> None:
    """/ack refusing the token is a token problem, a redirect a URL problem, and 5xx a passing failure."""
    for reply in (hec(4), hec(1), hec(2), plain(401), plain(403)):
        state, detail = classify_ack(reply, "splunk")
        assert state == "token" and "refused the token on /ack" in str(detail)
    state, detail = classify_ack(plain(302, location="https://other:8088/services/collector/ack"), "splunk")
    assert state == "moved" and "redirects /ack" in str(detail) and "https://other:8088" in str(detail)
    for reply in (hec(9), hec(8), plain(502), hec(26), hec(6)):
        state, detail = classify_ack(reply, "splunk")
        assert state == "error" and f"HTTP {reply.status}" in str(detail)


# ------------------------------------------------------------------------------------------------ /health


def test_health_ok_unhealthy_and_bad_token() -> None:
    """/health: 17 is healthy, 18-20 unhealthy with the reason, 21/22 and 401/403 a bad token."""
    assert classify_health(hec(17), URL) == (True, "")
    assert classify_health(plain(200, '{"text":"Success","code":200}'), URL) == (True, "")  # Fluent Bit's
    for code, state in [(18, "queues are full"), (19, "ack service unavailable"), (20, "ack service unavailable")]:
        ok, why = classify_health(hec(code), URL)
        assert not ok and why.startswith("unhealthy") and state in why
    ok, why = classify_health(plain(503, "Service Unavailable"), URL)
    assert not ok and why.startswith("unhealthy") and "service unavailable" in why
    for reply, problem in [(hec(21), "not known"), (hec(22), "disabled"), (plain(401), "refused"), (hec(4), "known")]:
        ok, why = classify_health(reply, URL)
        assert not ok and why.startswith("bad token") and problem in why and TOKEN not in why


@pytest.mark.parametrize("reply", [plain(404, "Not Found"), plain(400, "error: invalid HTTP endpoint"), plain(501)])
def test_a_receiver_without_health_leaves_it_to_the_token_probe(reply: Reply) -> None:
    """No /health (a plain 404, Fluent Bit's 400 on /health/1.0): not a failure, the token probe decides."""
    ok, note = classify_health(reply, URL)
    assert ok and note == f"no /health endpoint (HTTP {reply.status})"


def test_health_unexpected_answers() -> None:
    """Anything else from /health (a redirect, a teapot, a 400 with an odd HEC code) says check the port."""
    for reply in (plain(302, location="https://x/"), plain(418), hec(6)):
        ok, why = classify_health(reply, URL)
        assert not ok and why.startswith("unexpected answer") and "HEC port" in why


def test_token_probe() -> None:
    """An empty /event post: 400 "No data" (or any 400/2xx) proves the token; the rest says what is wrong."""
    for reply in (hec(5), hec(6), plain(400), hec(0), plain(204)):
        assert classify_token_probe(reply, URL) == (True, ""), reply
    for reply, start, phrase in [
        (hec(4), "bad token", "not known to HEC"),
        (hec(1), "bad token", "disabled"),
        (plain(401), "bad token", "refused"),
        (hec(9), "unhealthy", "busy or failing"),
        (plain(502), "unhealthy", "busy or failing"),
        (plain(404), "unexpected answer", "/services/collector/event (is this the HEC port?)"),
        (plain(405), "unexpected answer", "HTTP 405"),
        (plain(301, location="https://new:8088"), "unexpected answer", "redirects to https://new:8088"),
    ]:
        ok, why = classify_token_probe(reply, URL)
        assert not ok and why.startswith(start) and phrase in why and TOKEN not in why, reply
