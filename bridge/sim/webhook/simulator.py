"""A webhook receiver that behaves as told: what Node-RED, Home Assistant or a relay service looks like to the sink.

A real aiohttp server on 127.0.0.1 (port 0 by default). Every request is recorded with its headers, body, the
time it arrived and whether its Standard Webhooks signature verified (when the simulator knows the secrets). What
it answers is programmable:

* ``script``: replies used one per request, in order (status, body, delay, ``Retry-After``, or a connection
  reset without an answer); once used up, ``default`` answers;
* ``reject``: a predicate on a request's events; a request holding an event it matches gets ``reject_status``
  (a receiver that refuses one kind of content), whatever the script says;
* ``require_signature``: a request whose signature does not verify gets 401, as a receiver checking it would.

``delivered()`` lists the events of the requests answered 2xx, in arrival order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from bridge.sinks.webhook.signing import secret_key, verify

# Standard Webhooks: receivers refuse timestamps further than this from their clock (replay protection).
TOLERANCE = 300.0


@dataclass(frozen=True, slots=True)
class Reply:
    """One programmed answer. ``reset``: close the connection without answering."""

    status: int = 200
    body: str = ""
    delay: float = 0.0
    retry_after: str | None = None
    reset: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Received:
    """One request as the simulator saw it, and what it answered (0: the connection was reset)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float
    verified: bool | None
    status: int = 0
    peer: int | None = None  # the client's port: one per connection, so keep-alive shows as few ports

    def events(self) -> list[dict[str, Any]]:
        """The events the request carried: one object, or each item of an array (none if the body is not JSON)."""
        return events_of(self.body)


def events_of(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    return [e for e in items if isinstance(e, dict)]


class WebhookSim:
    """The receiver. ``async with WebhookSim(secrets=[...]) as sim:``, then post to ``sim.url``."""

    def __init__(
        self,
        *,
        secrets: Sequence[str] = (),
        path: str = "/hook",
        require_signature: bool = False,
        record_bodies: bool = True,
    ) -> None:
        self.path = path
        self.keys = [secret_key(s) for s in secrets]
        self.require_signature = require_signature
        self.record_bodies = record_bodies
        self.script: list[Reply] = []
        self.default = Reply()
        self.reject: Callable[[dict[str, Any]], bool] | None = None
        self.reject_status = 422
        self.received: list[Received] = []
        self.count = 0  # requests answered 2xx
        self.event_count = 0  # events in them
        self.on_delivered: Callable[[list[dict[str, Any]]], None] | None = None
        self._delivered: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("WebhookSim already started")
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> WebhookSim:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def delivered(self) -> list[dict[str, Any]]:
        """Events of the requests answered 2xx, in arrival order (repeats included)."""
        return list(self._delivered)

    def _verify(self, headers: dict[str, str], body: bytes) -> bool | None:
        if not self.keys:
            return None
        msg_id, ts, sig = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
        if not (msg_id and ts and sig):
            return False
        try:
            if abs(time.time() - int(ts)) > TOLERANCE:
                return False
        except ValueError:
            return False
        return verify(self.keys, msg_id, ts, body, sig)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        rec = Received(
            request.method,
            request.path,
            headers,
            body if self.record_bodies else b"",
            time.time(),
            self._verify(headers, body),
        )
        self.received.append(rec)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        rec.peer = peer[1] if peer else None
        events = events_of(body) if self.reject is not None else []
        if request.path != self.path:
            reply = Reply(404, "Not Found")
        else:
            reply = self.script.pop(0) if self.script else self.default
        if request.path != self.path:
            pass
        elif self.require_signature and rec.verified is not True:
            reply = Reply(401, "invalid signature")
        elif self.reject is not None and any(self.reject(e) for e in events):
            reply = Reply(self.reject_status, "refused: " + json.dumps([e.get("id") for e in events if self.reject(e)]))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.reset:
            # Close without an answer; aiohttp then fails to write the returned response and moves on quietly.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        rec.status = reply.status
        if 200 <= reply.status < 300:
            if not events:
                events = events_of(body)
            self.count += 1
            self.event_count += len(events)
            if self.record_bodies:
                self._delivered.extend(events)
            if self.on_delivered is not None:
                self.on_delivered(events)
        headers_out = dict(reply.headers)
        if reply.retry_after is not None:
            headers_out["Retry-After"] = reply.retry_after
        return web.Response(status=reply.status, text=reply.body, headers=headers_out)
