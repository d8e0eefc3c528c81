"""Fault injection of the Hubitat simulator: raw Maker API bodies, slow device details, raw frames and POSTs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from bridge.sim.hubitat import HubitatSim, fixture_text
from tests.helpers import wait_until
from tests.sim.hubitat_helpers import Receiver, api, get, get_bytes, next_text_is, recv_text

NAN_DEVICES = '[{"id":"130","attributes":{"temperature":NaN}}]'
LONE_SURROGATE = '[{"active":true,"id":1,"name":"\\ud800"}]'  # JSON text with an escape for a lone surrogate
DEEP = "[" * 1000 + "]" * 1000
HTML_PAGE = "<!DOCTYPE html><html><body><h1>Login</h1></body></html>"


@pytest.fixture
async def sim() -> AsyncIterator[HubitatSim]:
    async with HubitatSim() as hub:
        yield hub


# ----------------------------------------------------------------------------------------------------------------
# raw_responses
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("devices/all", 200, NAN_DEVICES),
        ("modes", 200, LONE_SURROGATE),
        ("hsm", 200, DEEP),
        ("devices/130", 200, HTML_PAGE),
        ("devices/130", 502, HTML_PAGE),
        ("devices/4242", 200, "{}"),
    ],
)
async def test_raw_response_is_served_verbatim_with_hub_headers(
    sim: HubitatSim, http: aiohttp.ClientSession, path: str, status: int, text: str
) -> None:
    """raw_responses[path] = (status, text) serves exactly that text and status, with the hub's usual headers."""
    sim.raw_responses[path] = (status, text)
    got_status, body, resp = await get_bytes(http, sim, path)
    assert (got_status, body) == (status, text.encode())
    assert resp.headers["Content-Type"] == "text/html;charset=utf-8"
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert resp.headers["Expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert "HUBSESSION=" in resp.headers["Set-Cookie"] and "Server" not in resp.headers
    sim.html_content_type = False
    assert (await get_bytes(http, sim, path))[2].headers["Content-Type"] == "application/json;charset=utf-8"


async def test_raw_response_only_replaces_its_own_path(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """A raw response replaces one path (query and trailing slash ignored) and goes away with its key."""
    sim.raw_responses["devices/all"] = (200, NAN_DEVICES)
    assert (await get(http, sim, "devices/all?prettyPrint=true"))[1] == NAN_DEVICES
    assert (await get(http, sim, "devices/all/"))[1] == NAN_DEVICES
    assert [d["id"] for d in await api(http, sim, "devices")] == sim.devices()
    assert (await api(http, sim, "devices/130"))["id"] == "130"
    del sim.raw_responses["devices/all"]
    assert [d["id"] for d in await api(http, sim, "devices/all")] == sim.devices()


async def test_raw_response_comes_after_the_token_check_and_replaces_the_route(
    sim: HubitatSim, http: aiohttp.ClientSession
) -> None:
    """A bad token still gets the XML 401, and a raw answer for a command path does not run the command."""
    sim.raw_responses["devices/all"] = (200, NAN_DEVICES)
    assert (await get(http, sim, "devices/all", token="wrong"))[:2] == (
        401,
        fixture_text("error_invalid_token.xml").strip(),
    )
    sim.raw_responses["devices/130/on"] = (200, "{}")
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        assert (await get(http, sim, "devices/130/on"))[:2] == (200, "{}")
        await next_text_is(ws, sim)
    assert sim.value("130", "switch") == "off"


async def test_raw_response_bytes_and_lone_surrogates(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """Bytes are sent as they are; a lone surrogate in text goes out as its raw (invalid UTF-8) bytes."""
    sim.raw_responses["hsm"] = (200, b'{"hsm":"\xff\xfe"}')
    assert (await get_bytes(http, sim, "hsm"))[1] == b'{"hsm":"\xff\xfe"}'
    sim.raw_responses["modes"] = (200, '[{"name":"\ud800"}]')
    assert (await get_bytes(http, sim, "modes"))[1] == b'[{"name":"\xed\xa0\x80"}]'


# ----------------------------------------------------------------------------------------------------------------
# detail_delay
# ----------------------------------------------------------------------------------------------------------------


async def test_detail_delay_holds_only_device_details(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """detail_delay holds /devices/<id> answers while every other Maker API path answers at once."""
    sim.detail_delay = 3600.0
    detail = asyncio.ensure_future(get(http, sim, "devices/130"))
    await wait_until(lambda: ("GET", "/apps/api/12/devices/130") in sim.requests, "the detail request arrived")
    for path in ("devices", "devices/all", "devices/*", "devices/130/events", "devices/130/attribute/switch", "modes"):
        assert (await get(http, sim, path))[0] == 200, path
    assert not detail.done()
    detail.cancel()
    sim.detail_delay = 0.01
    assert (await api(http, sim, "devices/130"))["id"] == "130"  # answered once the delay is over


async def test_detail_delay_applies_to_raw_and_unknown_details(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """The delay covers every /devices/<id> answer, raw or 404, and comes after the token check."""
    sim.detail_delay = 3600.0
    assert (await get(http, sim, "devices/130", token="wrong"))[0] == 401
    sim.raw_responses["devices/130"] = (200, HTML_PAGE)
    raw = asyncio.ensure_future(get(http, sim, "devices/130"))
    unknown = asyncio.ensure_future(get(http, sim, "devices/4242"))
    await wait_until(lambda: sim.max_in_flight >= 2, "both detail requests are in the hub")
    assert (await get(http, sim, "hsm"))[0] == 200
    assert not raw.done() and not unknown.done()
    raw.cancel()
    unknown.cancel()


# ----------------------------------------------------------------------------------------------------------------
# inject_frame
# ----------------------------------------------------------------------------------------------------------------


async def test_inject_frame_reaches_every_socket_in_order(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """inject_frame queues one verbatim text frame on every open socket, in order with the normal frames."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws1, http.ws_connect(f"{sim.url}/eventsocket") as ws2:
        sim.set_attribute("6", "contact", "closed")
        assert sim.inject_frame('{"value": NaN}') == 2
        sim.set_attribute("6", "contact", "open")
        for ws in (ws1, ws2):
            assert json.loads(await recv_text(ws))["value"] == "closed"
            assert await recv_text(ws) == '{"value": NaN}'
            assert json.loads(await recv_text(ws))["value"] == "open"
    assert sim.events_emitted == 2  # an injected frame is not a hub event


async def test_inject_frame_is_never_split_or_duplicated(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """The split and duplicate quirks apply to hub frames only; an injected frame arrives once, whole."""
    async with http.ws_connect(f"{sim.url}/eventsocket") as ws:
        sim.split_frame_rate = 1.0
        sim.duplicate_frame_rate = 1.0
        sim.inject_frame(DEEP)
        sim.inject_frame(LONE_SURROGATE)
        assert await recv_text(ws) == DEEP
        assert await recv_text(ws) == LONE_SURROGATE


async def test_inject_frame_skips_dead_sockets(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """No socket, or only zombies after reboot(dead_sockets=True): nothing is queued and 0 is returned."""
    assert sim.inject_frame("nobody listens") == 0
    async with http.ws_connect(f"{sim.url}/eventsocket") as zombie:
        assert sim.inject_frame("alive") == 1
        assert await recv_text(zombie) == "alive"
        await sim.reboot(downtime=0.01, dead_sockets=True)
        assert sim.inject_frame("too late") == 0


# ----------------------------------------------------------------------------------------------------------------
# post_raw
# ----------------------------------------------------------------------------------------------------------------


async def test_post_raw_is_sent_in_order_with_webhook_posts(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """post_raw POSTs its body exactly, queued behind and ahead of the hub's own POSTs, and records the result."""
    async with Receiver() as receiver:
        await api(http, sim, f"postURL/{quote(receiver.url, safe='')}")
        sim.set_attribute("6", "contact", "closed")
        sim.post_raw(b'{"content": {"value": NaN}')
        sim.post_raw('{"content":{"name":"é"}}')
        sim.set_attribute("6", "contact", "open")
        await sim.wait_posts_idle(5)
        assert receiver.raw[1:3] == [b'{"content": {"value": NaN}', '{"content":{"name":"é"}}'.encode()]
        assert [json.loads(receiver.raw[i])["content"]["value"] for i in (0, 3)] == ["closed", "open"]
        assert receiver.content_types == ["application/json"] * 4
    assert sim.raw_post_results == [(b'{"content": {"value": NaN}', 200), ('{"content":{"name":"é"}}'.encode(), 200)]
    assert [b["content"]["value"] for b, _ in sim.post_results] == ["closed", "open"]


async def test_post_raw_is_never_dropped_nor_retried(sim: HubitatSim, http: aiohttp.ClientSession) -> None:
    """post_drop_rate does not apply to raw POSTs, and a failed one is recorded once, not retried."""
    async with Receiver(status=500) as receiver:
        sim.posted_url = receiver.url
        sim.post_drop_rate = 1.0
        sim.post_raw(b"first")
        sim.post_raw(b"second")
        await sim.wait_posts_idle(5)
        assert receiver.raw == [b"first", b"second"]
    assert sim.raw_post_results == [(b"first", 500), (b"second", 500)]
    assert sim.post_results == []


def test_post_raw_needs_a_registered_url() -> None:
    """Without a registered postURL there is nowhere to send: post_raw raises RuntimeError."""
    with pytest.raises(RuntimeError, match="postURL"):
        HubitatSim().post_raw(b"{}")
