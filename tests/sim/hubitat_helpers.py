"""Client-side helpers for the Hubitat simulator tests: Maker API calls, eventsocket reads, a webhook receiver."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from bridge.sim.hubitat import HubitatSim

TOKEN = "sim-token"


async def get(
    http: aiohttp.ClientSession, sim: HubitatSim, path: str, token: str | None = TOKEN
) -> tuple[int, str, aiohttp.ClientResponse]:
    """GET a Maker API path; (status, body text, response)."""
    params = {} if token is None else {"access_token": token}
    async with http.get(f"{sim.url}/apps/api/{sim.app_id}/{path}", params=params) as resp:
        return resp.status, await resp.text(), resp


async def get_bytes(
    http: aiohttp.ClientSession, sim: HubitatSim, path: str
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    """GET a Maker API path; (status, body bytes, response)."""
    async with http.get(f"{sim.url}/apps/api/{sim.app_id}/{path}", params={"access_token": TOKEN}) as resp:
        return resp.status, await resp.read(), resp


async def api(http: aiohttp.ClientSession, sim: HubitatSim, path: str) -> Any:
    """GET a Maker API path that must answer 200; its JSON."""
    status, text, _ = await get(http, sim, path)
    assert status == 200, text
    return json.loads(text)


async def recv_text(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> str:
    """The next text frame (pings and pongs skipped); fails after ``timeout`` seconds without one."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is WSMsgType.TEXT:
            assert isinstance(msg.data, str)
            return msg.data
        assert msg.type in (WSMsgType.PING, WSMsgType.PONG), msg


async def next_text_is(ws: aiohttp.ClientWebSocketResponse, sim: HubitatSim, marker: str = "--marker--") -> None:
    """Nothing was queued on ``ws`` before now: a marker frame injected now is the next text frame.

    The simulator's per-socket queue is ordered, so this proves the absence of a frame without waiting for one.
    """
    assert sim.inject_frame(marker) >= 1
    assert await recv_text(ws) == marker


class Receiver:
    """A webhook receiver on loopback that records POST bodies, their concurrency and their connections."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.raw: list[bytes] = []
        self.content_types: list[str] = []
        self.peers: list[Any] = []
        self.active = self.max_active = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    @property
    def bodies(self) -> list[Any]:
        """The bodies received, parsed as JSON."""
        return [json.loads(b) for b in self.raw]

    async def handle(self, request: web.Request) -> web.Response:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.content_types.append(request.headers.get("Content-Type", ""))
            self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
            self.raw.append(await request.read())
            return web.Response(status=self.status, text="OK")
        finally:
            self.active -= 1

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook?x=1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class GatedHub(HubitatSim):
    """HubitatSim whose Maker API handler waits for ``gate`` (open by default), to hold requests in flight.

    It overrides ``_handle_maker`` and calls the simulator's own, the way other test suites subclass it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0

    async def _handle_maker(self, request: web.Request) -> web.StreamResponse:
        self.held += 1
        try:
            await self.gate.wait()
        finally:
            self.held -= 1
        return await super()._handle_maker(request)
