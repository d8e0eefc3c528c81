"""The bridge's HTTP listener under hostile input: whoever can reach the port must not be able to flood the log.

The bridge runs as a real subprocess (``hubbridge run``, JSON logs on stderr) with a Hubitat hub (the simulator,
in this process) and its POST-URL route; the tests send broken gzip bodies and malformed HTTP over raw sockets,
then stop the bridge with SIGTERM and read everything it logged. A flood must give a handful of short lines (one
per kind of problem, rate-limited), no traceback, and the listener must keep serving ``/healthz`` and valid POSTs.
The last tests drive :class:`bridge.server.Server` in-process, with a route that does what any source may do.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import structlog
from aiohttp import web

from bridge.server import Server
from bridge.sim.hubitat import HubitatSim
from tests.helpers import sim_hub
from tests.test_cli import BridgeProcess, bridges, json_lines, write_config

__all__ = ["bridges"]  # the fixture, shared with tests/test_cli.py

TOKEN = "listener-test-token"
SECRET = "hook/Secret+5d2b="  # base64-style: quoting changes it, so a quoted copy in a log would be a leak too
FLOOD = 200
# One valid POST-URL body: the Maker API shape (a device event of the simulator's Loft Fan).
VALID = {"content": {"name": "switch", "value": "off", "displayName": "Loft Fan", "deviceId": "176", "unit": None}}


@pytest.fixture
async def sim() -> AsyncIterator[HubitatSim]:
    async with HubitatSim(access_token=TOKEN) as hub:
        yield hub


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A connection per request: the listener closes one whose body was broken, as it should.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


class Listener:
    """A running bridge with one Hubitat hub whose POST-URL route is mounted; ``port`` is its listener."""

    def __init__(self, bridge: BridgeProcess, port: int, http: aiohttp.ClientSession) -> None:
        self.bridge, self.port, self.http = bridge, port, http

    @property
    def post_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hubitat/home/{quote(SECRET, safe='')}"

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
            return resp.status, await resp.json()

    async def still_serving(self) -> None:
        """``/healthz`` answers 200 and a valid POST-URL request is committed (200)."""
        status, body = await self.healthz()
        assert status == 200, body
        async with self.http.post(self.post_url, json=VALID) as resp:
            assert resp.status == 200, await resp.text()

    async def raw(self, request: bytes) -> bytes:
        """Send ``request`` on a fresh connection; the first line of the answer (b"" if the bridge just closed)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(10):
                return await reader.readline()
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    async def finish(self) -> list[dict[str, Any]]:
        """SIGTERM, exit 0, and every line the bridge logged after it was running (all JSON, no traceback)."""
        assert await self.bridge.stop() == 0, self.bridge.stderr
        stderr = self.bridge.stderr
        assert "Traceback" not in stderr, stderr
        entries = json_lines(stderr)
        start = next(i for i, e in enumerate(entries) if e.get("event") == "bridge running")
        for line in self.bridge.lines:
            assert len(line) < 600, f"a log line is not short: {line[:300]}..."
        return entries[start + 1 :]


@pytest.fixture
async def listener(tmp_path: Path, sim: HubitatSim, bridges: Any, http: aiohttp.ClientSession) -> Listener:
    hub = sim_hub(sim.url, TOKEN, app_id=sim.app_id, eventsocket=False, webhook_secret=SECRET)
    b = await bridges(write_config(tmp_path, hubs=[hub]))
    listener = Listener(b, await b.running(), http)

    async def all_ok() -> bool:  # the hub polled once (its POST-URL route is live) and the sink is ready
        status, body = await listener.healthz()
        return status == 200 and body["status"] == "ok"

    async with asyncio.timeout(15):
        while not await all_ok():
            await asyncio.sleep(0.02)
    return listener


def problems(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("level") in ("warning", "error", "critical")]


async def test_broken_gzip_bodies_give_a_few_short_lines(listener: Listener) -> None:
    """200 POSTs whose gzip body is garbage are each refused with 400, and the log gets a few lines, not 80 each."""
    body = b"this is not gzip" * 8
    path = f"/hubitat/home/{quote(SECRET, safe='')}".encode()
    request = (
        b"POST " + path + b" HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    for _ in range(FLOOD):
        assert (await listener.raw(request)).startswith(b"HTTP/1.1 400")
    await listener.still_serving()
    entries = await listener.finish()
    lines = problems(entries)
    assert 1 <= len(lines) <= 3, f"{len(lines)} lines for {FLOOD} broken bodies: {lines}"


MALFORMED = {
    "negative Content-Length": b"POST /hubitat/home/x HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n",
    "oversized header": b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n",
    "NUL in the path": b"GET /heal\x00thz HTTP/1.1\r\nHost: h\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n",
}


async def test_malformed_http_gives_a_line_per_kind_and_keeps_serving(listener: Listener) -> None:
    """200 malformed requests over raw sockets (4 kinds) are each refused, giving a few lines, no traceback."""
    for n in range(FLOOD):
        request = list(MALFORMED.values())[n % len(MALFORMED)]
        answer = await listener.raw(request)
        assert answer in (b"",) or answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
    await listener.still_serving()
    entries = await listener.finish()
    lines = problems(entries)
    rejected = [e for e in lines if e.get("event") == "rejected a malformed request"]
    assert 1 <= len(rejected) <= len(MALFORMED), f"{len(rejected)} lines for {FLOOD} requests: {rejected}"
    assert len(lines) <= len(MALFORMED) + 1, lines
    for entry in rejected:
        assert "\n" not in entry.get("error", ""), f"one line, not a block: {entry}"


async def test_malformed_request_never_logs_the_webhook_secret(listener: Listener) -> None:
    """A malformed request that carries the POST-URL path (a hub bug, say) is refused without logging the secret."""
    quoted = quote(SECRET, safe="").encode()
    for request in (
        b"POST /hubitat/home/" + quoted + b"\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /hubitat/home/" + quoted + b"/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /hubitat/home/" + quoted + b" HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    ):
        await listener.raw(request)
    await listener.still_serving()
    entries = await listener.finish()
    assert [e for e in entries if e.get("event") == "rejected a malformed request"], "the requests were logged"
    for text in (SECRET, quote(SECRET, safe=""), quote(SECRET)):
        assert text not in listener.bridge.stderr, f"the secret is in the log as {text!r}"


# ------------------------------------------------------------------------------------------------ in-process


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A listener on a free port with two routes of the kind a source mounts: one reads its body, one is buggy."""

    async def reads_body(request: web.Request) -> web.Response:
        return web.Response(text=f"{len(await request.read())} bytes")

    async def buggy(request: web.Request) -> web.Response:
        raise KeyError("a bug in a handler")

    srv = Server("127.0.0.1", 0, lambda: (True, {"status": "ok"}))
    srv.add_route("POST", "/reads", reads_body)
    srv.add_route("GET", "/buggy", buggy)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_route_reading_a_broken_gzip_body_is_400_and_one_line(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """A route that reads its body without guarding gets a broken gzip body: 400 and one line, no traceback."""
    url = f"http://127.0.0.1:{server.port}/reads"
    with structlog.testing.capture_logs() as logs:
        for _ in range(20):
            async with http.post(url, data=b"garbage" * 10, headers={"Content-Encoding": "gzip"}) as resp:
                assert resp.status == 400
        async with http.post(url, data=b"fine") as resp:
            assert await resp.text() == "4 bytes"
    lines = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert len(lines) == 1, lines
    assert "exc_info" not in lines[0] and "exception" not in lines[0], lines[0]
    assert "gzip" in json.dumps(lines[0]), lines[0]


async def test_buggy_handler_is_500_and_logged_once(server: Server, http: aiohttp.ClientSession) -> None:
    """A bug in a route answers 500 and is logged once (with its traceback, to be fixed), not once per request."""
    url = f"http://127.0.0.1:{server.port}/buggy"
    with structlog.testing.capture_logs() as logs:
        for _ in range(20):
            async with http.get(url) as resp:
                assert resp.status == 500
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
            assert resp.status == 200
    lines = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert len(lines) == 1, lines
    assert lines[0]["path"] == "/buggy"
    assert lines[0].get("exc_info") is True, "the one line carries the traceback (log.exception)"


async def test_busy_port_is_a_listen_error(server: Server) -> None:
    """Starting a second listener on a port in use raises ListenError with the address and what to do."""
    from bridge.errors import ListenError

    other = Server("127.0.0.1", server.port, lambda: (True, {}))
    with pytest.raises(ListenError, match=rf"127\.0\.0\.1:{server.port}: the address is already in use"):
        await other.start()
    with socket.create_connection(("127.0.0.1", server.port)):
        pass  # the first listener is untouched
