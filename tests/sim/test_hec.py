"""Tests for the Splunk HEC simulator (bridge.sim.hec), over real sockets with an aiohttp client.

Expected replies come from /work/shared/reference/splunk_hec.md (§ numbers below point there).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import signal
import socket
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.sim.hec import CODE_TABLE, FLUENT_BIT_NO_ENDPOINT, HecSim

TOKEN = "sim-hec-token"
ACK_TOKEN = "11111111-2222-3333-4444-555555555555"
CHANNEL = "0b5a7c1e-3f2d-4e6a-9b8c-7d6e5f4a3b2c"
OTHER_CHANNEL = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
EVENT = "/services/collector/event"
RAW = "/services/collector/raw"
ACK = "/services/collector/ack"
HEALTH = "/services/collector/health"

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Splunk {TOKEN}"}
ACK_AUTH = {"Authorization": f"Splunk {ACK_TOKEN}"}


@pytest.fixture
async def sim() -> AsyncIterator[HecSim]:
    async with HecSim(ack_tokens=(ACK_TOKEN,)) as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as c:
        yield c


def env(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"time": 1700000000.5, "host": "h", "sourcetype": "hubbridge", "event": {"id": f"e{i}"}, **extra}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def batch(*objs: dict[str, Any], sep: str = "") -> bytes:
    return sep.join(json.dumps(o) for o in objs).encode()


async def post(
    client: aiohttp.ClientSession,
    sim: HecSim,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    path: str = EVENT,
    **kw: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    hdrs = AUTH if headers is None else headers
    async with client.post(sim.url + path, data=body, headers=hdrs, **kw) as resp:
        text = await resp.text()
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = text
        return resp.status, data, resp


def hec(code: int, **extra: Any) -> dict[str, Any]:
    """The reply HEC sends for ``code`` (§3.1/§3.2)."""
    body: dict[str, Any] = {"text": CODE_TABLE[code][1], "code": code}
    for key, value in extra.items():
        body[key.replace("_", "-") if key == "invalid_event_number" else key] = value
    return body


# ---------------------------------------------------------------------------------------------- auth §1.2


async def test_success_body_is_exact(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """A good post gets exactly {"text":"Success","code":0} as application/json and fills in the index."""
    async with client.post(sim.url + EVENT, data=batch(env(1)), headers=AUTH) as resp:
        assert resp.status == 200
        assert await resp.read() == b'{"text":"Success","code":0}'
        assert resp.content_type == "application/json"
    assert sim.ids() == ["e1"]
    assert sim.indexed[0]["index"] == "main"  # default index filled in


async def test_basic_auth_with_token_as_password(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """HTTP Basic with the token as password (any user) is accepted; a bad password or encoding is refused."""
    for user in ("x", ""):
        status, body, _ = await post(client, sim, batch(env(user)), headers=basic(user, TOKEN))
        assert (status, body) == (200, hec(0))
    status, body, _ = await post(client, sim, batch(env(1)), headers=basic("x", "nope"))
    assert (status, body) == (403, hec(4))
    bad = {"Authorization": "Basic !!!notbase64"}
    assert (await post(client, sim, batch(env(1)), headers=bad))[:2] == (401, hec(3))
    no_password = {"Authorization": "Basic " + base64.b64encode(b"user-only").decode()}
    assert (await post(client, sim, batch(env(1)), headers=no_password))[:2] == (401, hec(3))


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, 2),
        ({"Authorization": f"Bearer {TOKEN}"}, 401, 3),
        ({"Authorization": f"splunk {TOKEN}"}, 401, 3),  # keyword is case-sensitive [3P]
        ({"Authorization": "Splunk "}, 401, 3),
        ({"Authorization": TOKEN}, 401, 3),
        ({"Authorization": "Splunk wrong-token"}, 403, 4),
    ],
)
async def test_auth_failures(
    sim: HecSim, client: aiohttp.ClientSession, headers: dict[str, str], status: int, code: int
) -> None:
    """Missing, malformed and unknown Authorization headers get 401/2, 401/3 and 403/4, and index nothing."""
    assert (await post(client, sim, batch(env(1)), headers=headers))[:2] == (status, hec(code))
    assert sim.indexed == []
    assert sim.requests[-1].status == status and sim.requests[-1].code == code


async def test_auth_checked_before_body(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Authentication is answered before anything about the body."""
    assert (await post(client, sim, b"", headers={}))[:2] == (401, hec(2))
    assert (await post(client, sim, b"{bad", headers={"Authorization": "Splunk x"}))[:2] == (403, hec(4))


async def test_query_string_token(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """?token= is refused with 400/16 unless the token allows query-string auth, and is redacted in records."""
    # §1.2: only with allowQueryStringAuth; otherwise 400/16.
    status, body, _ = await post(client, sim, batch(env(1)), headers={}, params={"token": TOKEN})
    assert (status, body) == (400, hec(16))
    status, body, _ = await post(client, sim, batch(env(1)), headers={}, params={"token": "unknown"})
    assert (status, body) == (403, hec(4))
    sim.add_token("qs-token", query_auth=True)
    status, body, _ = await post(client, sim, batch(env(2)), headers={}, params={"token": "qs-token"})
    assert (status, body) == (200, hec(0))
    assert sim.ids() == ["e2"]
    assert sim.requests[-1].query == {"token": "<redacted>"}


async def test_disabled_revoked_and_rotated_tokens(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Disabled tokens get 403/1, revoked ones 403/4, and a newly added token works at once."""
    sim.disable_token(TOKEN)
    assert (await post(client, sim, batch(env(1))))[:2] == (403, hec(1))
    sim.enable_token(TOKEN)
    assert (await post(client, sim, batch(env(2))))[:2] == (200, hec(0))
    sim.add_token("new-token")
    sim.revoke_token(TOKEN)
    assert (await post(client, sim, batch(env(3))))[:2] == (403, hec(4))
    new = {"Authorization": "Splunk new-token"}
    assert (await post(client, sim, batch(env(4)), headers=new))[:2] == (200, hec(0))
    assert sim.ids() == ["e2", "e4"]


async def test_token_is_redacted_in_records(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Recorded requests never hold the token, only the auth scheme."""
    await post(client, sim, batch(env(1)))
    await post(client, sim, batch(env(1)), headers=basic("u", TOKEN))
    assert sim.requests[0].headers["authorization"] == "Splunk <redacted>"
    assert sim.requests[1].headers["authorization"] == "Basic <redacted>"
    assert all(TOKEN not in repr(r) for r in sim.requests)


# ------------------------------------------------------------------------------------------ endpoints §1.1


@pytest.mark.parametrize("path", ["/services/collector", EVENT, EVENT + "/1.0"])
async def test_event_endpoint_aliases(sim: HecSim, client: aiohttp.ClientSession, path: str) -> None:
    """/services/collector, /event and /event/1.0 all take JSON events."""
    assert (await post(client, sim, batch(env(1)), path=path))[:2] == (200, hec(0))
    assert sim.requests[-1].path == path and sim.requests[-1].n_events == 1


async def test_unknown_path_and_wrong_method(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Unknown paths are 404 and a wrong method on a known path is 405 with Allow."""
    assert (await post(client, sim, batch(env(1)), path="/services/collector/nope"))[0] == 404
    async with client.get(sim.url + EVENT, headers=AUTH) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
    assert [r.status for r in sim.requests] == [404, 405]


async def test_raw_endpoint(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """/raw indexes one event per non-empty line with query-string metadata and always needs a GUID channel."""
    params = {"channel": CHANNEL, "host": "hub1", "sourcetype": "st", "index": "main"}
    for path in (RAW, RAW + "/1.0"):
        status, body, _ = await post(client, sim, b"line one\r\n\nline two\n", path=path, params=params)
        assert (status, body) == (200, hec(0))
    assert [e["event"] for e in sim.indexed] == ["line one", "line two"] * 2
    assert sim.indexed[0] == {"event": "line one", "host": "hub1", "sourcetype": "st", "index": "main"}
    # §7: /raw needs a channel even without ack, and it must be a GUID.
    assert (await post(client, sim, b"x", path=RAW))[:2] == (400, hec(10))
    assert (await post(client, sim, b"x", path=RAW, params={"channel": "nope"}))[:2] == (400, hec(11))
    assert (await post(client, sim, b"", path=RAW, params={"channel": CHANNEL}))[:2] == (400, hec(5))


# ----------------------------------------------------------------------------------------------- body §2


@pytest.mark.parametrize("sep", ["", "\n", " ", "\r\n", "\t \n  "])
async def test_concatenated_envelopes(sim: HecSim, client: aiohttp.ClientSession, sep: str) -> None:
    """Concatenated envelopes are parsed whatever whitespace (or none) separates them."""
    body = sep + batch(env(1), env(2), env(3), sep=sep).decode() + sep
    assert (await post(client, sim, body))[:2] == (200, hec(0))
    assert sim.ids() == ["e1", "e2", "e3"]
    assert sim.requests[-1].n_events == 3


async def test_gzip_body(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """gzip bodies are decoded (and recorded decoded); a body that is not gzip is 400/6."""
    raw = batch(env(1), env(2), sep="\n")
    headers = {**AUTH, "Content-Encoding": "gzip"}
    assert (await post(client, sim, gzip.compress(raw), headers=headers))[:2] == (200, hec(0))
    assert sim.ids() == ["e1", "e2"]
    assert sim.requests[-1].body_bytes == raw  # recorded decompressed
    assert (await post(client, sim, b"not gzip", headers=headers))[:2] == (400, hec(6))


async def test_other_encodings_are_415(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Content encodings other than gzip get 415 without a HEC body."""
    headers = {**AUTH, "Content-Encoding": "deflate"}
    status, _, _ = await post(client, sim, zlib.compress(batch(env(1))), headers=headers)
    assert status == 415
    assert sim.indexed == [] and sim.requests[-1].code is None


@pytest.mark.parametrize("body", [b"", b"  \n "])
async def test_no_data(sim: HecSim, client: aiohttp.ClientSession, body: bytes) -> None:
    """An empty or blank body is 400/5, the probe some clients send."""
    # §5.4: hass-splunk's check() probes with an empty POST and expects 400/5.
    assert (await post(client, sim, body))[:2] == (400, hec(5))


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (b'{"event": "x"', 6),  # truncated
        (b'{"event": NaN}', 6),
        (b"[1, 2]", 6),  # arrays are not unpacked (§2.2: concatenation only)
        (b'"just a string"', 6),
        (b'{"host": "h"}', 12),
        (b'{"event": null}', 12),
        (b'{"event": ""}', 13),
        (b'{"event": {}}', 13),
        (b'{"event": "x", "index": "secret"}', 7),
        (b'{"event": "x", "index": 5}', 7),
        (b'{"event": "x", "time": "yesterday"}', 6),
        (b'{"event": "x", "time": true}', 6),
        (b'{"event": "x", "fields": {"a": {"b": 1}}}', 15),
        (b'{"event": "x", "fields": {"a": [{"b": 1}]}}', 15),
        (b'{"event": "x", "fields": "flat?"}', 15),
    ],
)
async def test_partial_acceptance(sim: HecSim, client: aiohttp.ClientSession, bad: bytes, code: int) -> None:
    """A bad envelope stops the batch: the ones before it are indexed and its 0-based number is returned."""
    # §3.1: the events before the bad one are indexed; nothing after it; 0-based invalid-event-number.
    sim.allowed_indexes = frozenset({"main", "home"})
    body = batch(env(0), env(1, index="home"), sep="\n") + b"\n" + bad + batch(env(3))
    status, reply, _ = await post(client, sim, body)
    assert (status, reply) == (CODE_TABLE[code][0], hec(code, invalid_event_number=2))
    assert sim.ids() == ["e0", "e1"]
    assert [e["index"] for e in sim.indexed] == ["main", "home"]
    assert sim.requests[-1].n_events == 2


async def test_first_event_bad_indexes_nothing(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """When the first envelope is bad nothing is indexed and invalid-event-number is 0."""
    status, reply, _ = await post(client, sim, b'{"nope": 1}' + batch(env(1)))
    assert (status, reply) == (400, hec(12, invalid_event_number=0))
    assert sim.indexed == []


async def test_trailing_garbage_after_good_events(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Garbage after good envelopes is reported at the position after them."""
    status, reply, _ = await post(client, sim, batch(env(0), env(1)) + b"}")
    assert (status, reply) == (400, hec(6, invalid_event_number=2))
    assert sim.ids() == ["e0", "e1"]


async def test_invalid_utf8_points_at_its_event(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Invalid UTF-8 makes its own envelope the invalid one; those before it are indexed."""
    body = batch(env(0)) + b'{"event": "\xff\xfe"}' + batch(env(2))
    assert (await post(client, sim, body))[:2] == (400, hec(6, invalid_event_number=1))
    assert sim.ids() == ["e0"]


async def test_accepted_values(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Numeric-string times, non-object events, null time and flat fields with arrays are accepted."""
    objs: list[dict[str, Any]] = [
        {"event": "text", "time": "1700000000.123"},  # numeric string time (§2.1, Splunk's loggers)
        {"event": 42, "time": 1700000000},
        {"event": {"id": "x"}, "time": None, "fields": {"room": "hall", "tags": ["a", "b"], "n": 1}},
        {"event": 0, "index": "main"},
    ]
    assert (await post(client, sim, batch(*objs)))[:2] == (200, hec(0))
    assert [e["event"] for e in sim.indexed] == ["text", 42, {"id": "x"}, 0]
    assert sim.ids() == ["x"]


async def test_allowed_indexes_from_constructor(client: aiohttp.ClientSession) -> None:
    """allowed_indexes restricts the index (the default index is always allowed)."""
    async with HecSim(default_index="home", allowed_indexes=["metrics"]) as s:
        ok = batch({"event": "a"}, {"event": "b", "index": "metrics"}, {"event": "c", "index": "home"})
        assert (await post(client, s, ok))[:2] == (200, hec(0))
        assert [e["index"] for e in s.indexed] == ["home", "metrics", "home"]
        status, reply, _ = await post(client, s, batch({"event": "d", "index": "main"}))
        assert (status, reply) == (400, hec(7, invalid_event_number=0))


async def test_request_over_max_content_length_is_413(client: aiohttp.ClientSession) -> None:
    """max_content_length is measured on the wire bytes: too big is 413, the same batch gzipped fits."""
    async with HecSim(max_content_length=2000) as s:
        big = batch(*(env(i) for i in range(40)))
        assert len(big) > 2000
        status, _, _ = await post(client, s, big)
        assert status == 413 and s.indexed == []
        # §1.4: the limit measures the bytes on the wire, so the same batch gzipped fits.
        headers = {**AUTH, "Content-Encoding": "gzip"}
        assert (await post(client, s, gzip.compress(big), headers=headers))[:2] == (200, hec(0))
        assert len(s.indexed) == 40


async def test_event_over_max_event_size(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """An envelope over max_event_size is invalid; those before it are indexed."""
    sim.max_event_size = 100
    body = batch(env(0), {"event": "x" * 200}, env(2))
    assert (await post(client, sim, body))[:2] == (400, hec(6, invalid_event_number=1))
    assert sim.ids() == ["e0"]


async def test_reject_event_if(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """reject_event_if refuses an envelope HEC-style (400/6 with its number) and records the reason."""
    sim.reject_event_if = lambda e: "poison" if e["event"].get("id") == "e2" else None
    status, reply, _ = await post(client, sim, batch(*(env(i) for i in range(5)), sep="\n"))
    assert (status, reply) == (400, hec(6, invalid_event_number=2))
    assert sim.ids() == ["e0", "e1"]
    assert [(e["event"]["id"], reason) for e, reason in sim.rejections] == [("e2", "poison")]
    # A client resending from invalid-event-number + 1 gets the rest in.
    assert (await post(client, sim, batch(env(3), env(4))))[:2] == (200, hec(0))
    assert sim.ids() == ["e0", "e1", "e3", "e4"]


# -------------------------------------------------------------------------------------------- metrics §2.3


async def test_metrics(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Metric envelopes are indexed and told apart from events by metrics() and events()."""
    single = {"time": 1.0, "event": "metric", "fields": {"metric_name": "power", "_value": 3.5, "room": "x"}}
    multi = {"time": 2.0, "event": "metric", "fields": {"metric_name:t": 21.5, "metric_name:h": 40, "r": "y"}}
    assert (await post(client, sim, batch(env(1), single, multi, env(2))))[:2] == (200, hec(0))
    assert sim.metrics() == [{**single, "index": "main"}, {**multi, "index": "main"}]
    assert [e["event"]["id"] for e in sim.events()] == ["e1", "e2"]
    assert sim.ids() == ["e1", "e2"]


# ------------------------------------------------------------------------------------------------ ack §4


async def ack_query(
    client: aiohttp.ClientSession, sim: HecSim, ids: list[int], channel: str = CHANNEL
) -> tuple[int, Any]:
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": channel}
    status, body, _ = await post(client, sim, json.dumps({"acks": ids}), headers=headers, path=ACK)
    return status, body


async def test_ack_ids_per_channel_and_true_once(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """ackIds count from 0 per channel, /ack reports true once and then forgets the id."""
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
    for expected in (0, 1):
        status, body, _ = await post(client, sim, batch(env(expected)), headers=headers)
        assert (status, body) == (200, {"text": "Success", "code": 0, "ackId": expected})
    # The channel may come as a query parameter instead (§1.3); ids count per channel from 0.
    status, body, _ = await post(client, sim, batch(env(9)), headers=ACK_AUTH, params={"channel": OTHER_CHANNEL})
    assert body["ackId"] == 0
    assert sim.requests[-1].channel == OTHER_CHANNEL and sim.requests[-1].ack_id == 0
    assert await ack_query(client, sim, [0, 1, 7]) == (200, {"acks": {"0": True, "1": True, "7": False}})
    # §4 item 5: after true, HEC forgets the id.
    assert await ack_query(client, sim, [0, 1]) == (200, {"acks": {"0": False, "1": False}})
    assert await ack_query(client, sim, [0], OTHER_CHANNEL) == (200, {"acks": {"0": True}})


async def test_ack_delayed(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """With ack_delay an ackId reports false until the delay has passed, then true."""
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
    sim.ack_delay = 3600.0
    assert (await post(client, sim, batch(env(1)), headers=headers))[1]["ackId"] == 0
    assert await ack_query(client, sim, [0]) == (200, {"acks": {"0": False}})
    sim.ack_delay = 0.05  # decided when an id is issued: id 0 keeps its hour
    assert (await post(client, sim, batch(env(2)), headers=headers))[1]["ackId"] == 1
    async with asyncio.timeout(15):
        while await ack_query(client, sim, [1]) != (200, {"acks": {"1": True}}):
            await asyncio.sleep(0.01)  # polling /ack, as a client does
    assert await ack_query(client, sim, [0]) == (200, {"acks": {"0": False}})


async def test_ack_never(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """ackIds issued while ack_never is set never report true, even after it is switched off."""
    sim.ack_never = True
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
    await post(client, sim, batch(env(1)), headers=headers)
    sim.ack_never = False  # a lost ack stays lost
    await post(client, sim, batch(env(2)), headers=headers)
    assert await ack_query(client, sim, [0, 1]) == (200, {"acks": {"0": False, "1": True}})
    assert await ack_query(client, sim, [0]) == (200, {"acks": {"0": False}})
    assert sim.ids() == ["e1", "e2"]  # indexed all the same; only the ack is lost


async def test_ack_channel_required_and_guid(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """Ack tokens need a channel (400/10) that is a GUID (400/11), on events and on /ack."""
    assert (await post(client, sim, batch(env(1)), headers=ACK_AUTH))[:2] == (400, hec(10))
    bad = {**ACK_AUTH, "X-Splunk-Request-Channel": "not-a-guid"}
    assert (await post(client, sim, batch(env(1)), headers=bad))[:2] == (400, hec(11))
    assert (await post(client, sim, b'{"acks":[0]}', headers=ACK_AUTH, path=ACK))[:2] == (400, hec(10))
    assert (await post(client, sim, b'{"acks":[0]}', headers=bad, path=ACK))[:2] == (400, hec(11))
    assert sim.indexed == []


async def test_ack_disabled_for_token(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """/ack with a non-ack token is 400/14, and such a token's channel is ignored on events."""
    headers = {**AUTH, "X-Splunk-Request-Channel": CHANNEL}
    assert (await post(client, sim, b'{"acks":[0]}', headers=headers, path=ACK))[:2] == (400, hec(14))
    # §1.3: a channel sent with a non-ack token is ignored: no ackId, no GUID check.
    assert (await post(client, sim, batch(env(1)), headers=headers))[:2] == (200, hec(0))
    odd = {**AUTH, "X-Splunk-Request-Channel": "whatever"}
    assert (await post(client, sim, batch(env(2)), headers=odd))[:2] == (200, hec(0))


async def test_ack_bad_query_bodies(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """/ack bodies that are not {"acks":[ints]} are 400/6, an empty one 400/5, no token 401/2."""
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
    for body in (b"{", b'{"acks": "0"}', b'{"acks": [-1]}', b"[0]"):
        assert (await post(client, sim, body, headers=headers, path=ACK))[:2] == (400, hec(6))
    assert (await post(client, sim, b"", headers=headers, path=ACK))[:2] == (400, hec(5))
    assert (await post(client, sim, b'{"acks":[0]}', headers={}, path=ACK))[:2] == (401, hec(2))


async def test_add_token_with_ack(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """add_token(ack=True) makes a token that gets ackIds."""
    sim.add_token("rotated", ack=True)
    headers = {"Authorization": "Splunk rotated", "X-Splunk-Request-Channel": CHANNEL}
    assert (await post(client, sim, batch(env(1)), headers=headers))[1]["ackId"] == 0


# ------------------------------------------------------------------------------------------ fault injection


async def test_fail_next_with_retry_after(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """fail_next answers the next posts with the fault and Retry-After, then normally again."""
    sim.fail_next(2, 503, retry_after=3)
    for _ in range(2):
        status, body, resp = await post(client, sim, batch(env(1)))
        assert (status, body) == (503, hec(9))
        assert resp.headers["Retry-After"] == "3"
    status, body, resp = await post(client, sim, batch(env(1)))
    assert (status, body) == (200, hec(0)) and "Retry-After" not in resp.headers
    assert sim.ids() == ["e1"]
    # Refused bodies are still recorded, so a test can check the resend was identical.
    assert [r.body_bytes for r in sim.requests] == [batch(env(1))] * 3


@pytest.mark.parametrize(
    ("status", "code", "expected_code"),
    [(500, None, 8), (429, None, 26), (429, 27, 27), (503, 23, 23), (400, 6, 6)],
)
async def test_fail_next_codes(
    sim: HecSim, client: aiohttp.ClientSession, status: int, code: int | None, expected_code: int
) -> None:
    """fail_next pairs each status with Splunk's code unless a code is given."""
    sim.fail_next(1, status, code)
    assert (await post(client, sim, batch(env(1))))[:2] == (status, hec(expected_code))
    assert sim.indexed == [] and sim.requests[-1].code == expected_code


async def test_fail_next_proxy_status_has_no_hec_body(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """A status without a HEC code gets a proxy-style plain-text body."""
    sim.fail_next(1, 502, retry_after=1.5)
    status, body, resp = await post(client, sim, batch(env(1)))
    assert (status, body) == (502, "502 Bad Gateway")
    assert resp.headers["Retry-After"] == "1.5"
    assert sim.requests[-1].code is None


async def test_fail_next_partial_busy(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """invalid_event_number makes a fault partial: the first k envelopes are indexed."""
    # §3.1 observed: {"text":"Server is busy","code":9,"invalid-event-number":10}
    sim.fail_next(1, 503, 9, invalid_event_number=3)
    status, body, _ = await post(client, sim, batch(*(env(i) for i in range(5))))
    assert (status, body) == (503, hec(9, invalid_event_number=3))
    assert sim.ids() == ["e0", "e1", "e2"]


async def test_fail_next_success_warning_still_indexes(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """A 2xx fault (warning codes 24/25) indexes normally; unknown codes are refused."""
    sim.fail_next(1, 200, 24)
    assert (await post(client, sim, batch(env(1))))[:2] == (200, hec(24))
    assert sim.ids() == ["e1"]
    with pytest.raises(ValueError, match="unknown HEC code"):
        sim.fail_next(1, 500, 99)


async def test_fail_next_does_not_touch_health_or_ack(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """fail_next only affects event posts, not /health."""
    sim.fail_next(1, 500)
    async with client.get(sim.url + HEALTH) as resp:
        assert resp.status == 200
    assert (await post(client, sim, batch(env(1))))[0] == 500


async def test_outage(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """outage makes posts and ack queries 503/9 and health 503/18 until it is switched off."""
    sim.outage = True
    assert (await post(client, sim, batch(env(1))))[:2] == (503, hec(9))
    assert (await ack_query(client, sim, [0])) == (503, hec(9))
    async with client.get(sim.url + HEALTH) as resp:
        assert (resp.status, await resp.json()) == (503, hec(18))
    assert sim.indexed == []
    sim.outage = False
    assert (await post(client, sim, batch(env(1))))[:2] == (200, hec(0))


async def test_drop_before_body(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """drop_before_body closes the connection unanswered, before anything is indexed."""
    sim.drop_before_body = 1
    with pytest.raises(aiohttp.ClientError):
        await post(client, sim, batch(env(1)))
    assert sim.indexed == []
    assert sim.requests[-1].status == 0 and sim.drop_before_body == 0
    assert (await post(client, sim, batch(env(1))))[:2] == (200, hec(0))


async def test_drop_after_body_indexes_then_resend_duplicates(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """drop_after_body indexes then closes unanswered, so a resend duplicates."""
    sim.drop_after_body = 1
    body = batch(env(1), env(2))
    with pytest.raises(aiohttp.ClientError):
        await post(client, sim, body)
    assert sim.ids() == ["e1", "e2"]  # indexed although the client never heard back
    assert sim.requests[-1].status == 0 and sim.requests[-1].n_events == 2
    assert (await post(client, sim, body))[:2] == (200, hec(0))  # the client's resend
    assert sim.ids() == ["e1", "e2", "e1", "e2"]  # duplicates share ids


async def test_drop_after_body_with_ack_consumes_ack_id(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """A post dropped after its body still consumed an ackId."""
    sim.drop_after_body = 1
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
    with pytest.raises(aiohttp.ClientError):
        await post(client, sim, batch(env(1)), headers=headers)
    assert (await post(client, sim, batch(env(1)), headers=headers))[1]["ackId"] == 1


async def test_response_delay_indexes_before_answering(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """response_delay holds the answer after indexing: indexed but not yet confirmed."""
    sim.response_delay = 3600.0
    sending = asyncio.ensure_future(post(client, sim, batch(env(1))))
    await sim.wait_indexed(1)
    assert sim.ids() == ["e1"] and not sending.done()  # the ambiguous failure: indexed, not confirmed
    sending.cancel()


async def test_busy_probability_is_seeded(client: aiohttp.ClientSession) -> None:
    """busy_probability answers some posts 503/9, the same ones for the same seed."""
    outcomes = []
    for _ in range(2):
        async with HecSim(seed=7) as s:
            s.busy_probability = 0.5
            outcomes.append([(await post(client, s, batch(env(i))))[0] for i in range(20)])
            assert len(s.indexed) == outcomes[-1].count(200)
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 503}


# ----------------------------------------------------------------------------------------------- health


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [("ok", 200, 17), ("unhealthy", 503, 18), ("ack_unavailable", 503, 19), ("queues_full_ack_unavailable", 503, 20)],
)
async def test_health_states(sim: HecSim, client: aiohttp.ClientSession, state: str, status: int, code: int) -> None:
    """health_status switches /health and /health/1.0 between 200/17 and the 503 states."""
    sim.health_status = state
    for path in (HEALTH, HEALTH + "/1.0"):
        async with client.get(sim.url + path) as resp:
            assert (resp.status, await resp.json()) == (status, hec(code))


async def test_health_token_results(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """/health checks a token when one is sent: unknown 400/21, disabled 400/22; bad states are refused."""
    async with client.get(sim.url + HEALTH, headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, hec(17))
    async with client.get(sim.url + HEALTH, headers={"Authorization": "Splunk bad"}) as resp:
        assert (resp.status, await resp.json()) == (400, hec(21))
    sim.disable_token(TOKEN)
    async with client.get(sim.url + HEALTH + "/1.0", headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (400, hec(22))
    with pytest.raises(ValueError, match="health_status"):
        sim.health_status = "sad"


# --------------------------------------------------------------------------------------------- helpers


async def test_wait_indexed_and_clear(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """wait_indexed returns once enough envelopes are indexed, times out otherwise; clear() forgets them."""
    waiter = asyncio.create_task(sim.wait_indexed(3, timeout=2))
    await post(client, sim, batch(env(1), env(2)))
    assert not waiter.done()
    await post(client, sim, batch(env(3)))
    await waiter
    with pytest.raises(asyncio.TimeoutError):
        await sim.wait_indexed(4, timeout=0.05)
    sim.clear()
    assert sim.indexed == [] and sim.requests == []


async def test_on_index_callback_and_start_twice(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """on_index sees every indexed envelope; starting twice is an error."""
    seen: list[dict[str, Any]] = []
    sim.on_index = seen.append
    await post(client, sim, batch(env(1), env(2)))
    assert seen == sim.indexed
    with pytest.raises(RuntimeError):
        await sim.start()


async def test_restart_on_same_port(client: aiohttp.ClientSession) -> None:
    """A stopped simulator refuses connections and can be started again on the same port."""
    sim = HecSim()
    await sim.start()
    port = sim.port
    await sim.stop()
    with pytest.raises(aiohttp.ClientError):
        await post(client, sim, batch(env(1)))
    await sim.start(port=port)
    try:
        assert sim.port == port
        assert (await post(client, sim, batch(env(2))))[:2] == (200, hec(0))
        assert sim.ids() == ["e2"]
    finally:
        await sim.stop()


async def test_cli_prints_indexed_events(client: aiohttp.ClientSession) -> None:
    """python -m bridge.sim.hec serves, prints one line per indexed event, and exits 0 on SIGINT."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.sim.hec",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        assert f"http://127.0.0.1:{port}" in banner and TOKEN not in banner
        url = f"http://127.0.0.1:{port}{EVENT}"
        async with client.post(url, data=batch(env(1, sourcetype="st")), headers=AUTH) as resp:
            assert resp.status == 200
        line = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        assert line.startswith("[main] ") and "sourcetype=st" in line and '"id": "e1"' in line
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 5) == 0


# ------------------------------------------------------------------------------- servers without ack or health


async def test_without_ack_endpoint_ack_is_a_plain_404(client: aiohttp.ClientSession) -> None:
    """ack_endpoint=False: /ack answers 404 "Not Found" in plain text, for any method and any token."""
    async with HecSim(ack_tokens=(ACK_TOKEN,), ack_endpoint=False) as s:
        assert s.ack_endpoint is False
        headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
        for hdrs in (headers, AUTH, {}):
            status, body, resp = await post(client, s, b'{"acks":[0]}', headers=hdrs, path=ACK)
            assert (status, body, resp.content_type) == (404, "Not Found", "text/plain")
        async with client.get(s.url + ACK, headers=headers) as resp:
            assert (resp.status, await resp.text()) == (404, "Not Found")  # no such path: 404, not 405
        assert [(r.path, r.status, r.code) for r in s.requests] == [(ACK, 404, None)] * 4


async def test_without_ack_endpoint_events_never_get_an_ack_id(client: aiohttp.ClientSession) -> None:
    """ack_endpoint=False: ack tokens post like plain ones, channel or not, and no reply carries an ackId."""
    async with HecSim(ack_tokens=(ACK_TOKEN,), ack_endpoint=False) as s:
        for headers in ({**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}, ACK_AUTH, AUTH):
            status, body, _ = await post(client, s, batch(env(1)), headers=headers)
            assert (status, body) == (200, hec(0))
        assert all(r.ack_id is None for r in s.requests) and len(s.indexed) == 3
        # /raw needs a channel on every HEC, with or without acknowledgement.
        assert (await post(client, s, b"line", headers=ACK_AUTH, path=RAW))[:2] == (400, hec(10))
        assert (await post(client, s, b"line", path=RAW, params={"channel": CHANNEL}))[:2] == (200, hec(0))


async def test_ack_endpoint_can_be_switched_at_runtime(sim: HecSim, client: aiohttp.ClientSession) -> None:
    """ack_endpoint is a plain attribute: off, acks vanish; on again, ids issued before still answer."""
    headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
    assert (await post(client, sim, batch(env(1)), headers=headers))[1]["ackId"] == 0
    sim.ack_endpoint = False
    assert (await post(client, sim, batch(env(2)), headers=headers))[:2] == (200, hec(0))
    assert (await ack_query(client, sim, [0]))[0] == 404
    sim.ack_endpoint = True
    assert await ack_query(client, sim, [0]) == (200, {"acks": {"0": True}})
    assert (await post(client, sim, batch(env(3)), headers=headers))[1]["ackId"] == 1


async def test_without_health_endpoint_health_is_a_plain_404(client: aiohttp.ClientSession) -> None:
    """health_endpoint=False: /health and /health/1.0 answer 404 "Not Found"; events still work."""
    async with HecSim(health_endpoint=False) as s:
        assert s.health_endpoint is False
        for path in (HEALTH, HEALTH + "/1.0"):
            async with client.get(s.url + path, headers=AUTH) as resp:
                assert (resp.status, await resp.text(), resp.content_type) == (404, "Not Found", "text/plain")
        assert (await post(client, s, b"", path=HEALTH))[:2] == (404, "Not Found")  # not 405 either
        assert (await post(client, s, batch(env(1))))[:2] == (200, hec(0))
        s.health_endpoint = True
        async with client.get(s.url + HEALTH) as resp:
            assert (resp.status, await resp.json()) == (200, hec(17))
        assert [r.status for r in s.requests] == [404, 404, 404, 200, 200]


async def test_a_switched_off_endpoint_can_answer_like_fluent_bit(client: aiohttp.ClientSession) -> None:
    """no_endpoint_reply=FLUENT_BIT_NO_ENDPOINT: a missing /ack or /health is Fluent Bit's plain 400, not a 404."""
    async with HecSim(ack_tokens=(ACK_TOKEN,), ack_endpoint=False, health_endpoint=False) as s:
        s.no_endpoint_reply = FLUENT_BIT_NO_ENDPOINT
        headers = {**ACK_AUTH, "X-Splunk-Request-Channel": CHANNEL}
        status, body, resp = await post(client, s, b'{"acks":[0]}', headers=headers, path=ACK)
        assert (status, body, resp.content_type) == (400, "error: invalid HTTP endpoint", "text/plain")
        async with client.get(s.url + HEALTH + "/1.0", headers=AUTH) as resp:
            assert (resp.status, await resp.text()) == (400, "error: invalid HTTP endpoint")
        assert (await post(client, s, batch(env(1))))[:2] == (200, hec(0))  # events are unaffected
        assert [(r.path, r.status, r.code) for r in s.requests] == [
            (ACK, 400, None),
            (HEALTH + "/1.0", 400, None),
            (EVENT, 200, 0),
        ]
