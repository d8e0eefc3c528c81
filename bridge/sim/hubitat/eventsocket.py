"""The ``/eventsocket`` WebSocket: hand-built frames, an ordered sender per socket, pings, dead and dropped sockets."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bridge.sim.hubitat.responses import starting_up_page
from bridge.sim.hubitat.state import HubEvent, HubState


def _q(text: str | None) -> str:
    """Quote one eventsocket field: hand-built JSON sends absent values as the *string* "null" (ref §2.2)."""
    return '"null"' if text is None else encode_basestring(text)


def event_frame(event: HubEvent, *, omit_type: bool) -> str:
    """The text frame for ``event``.

    Hand-built JSON with the spacing of the helog capture (eventsocket_frames.txt lines 1-2, ref §2.2): irregular
    " : " spacing, "null" strings, integer deviceId/hubId/installedAppId. ``omit_type`` is the older build of
    line 4 of the fixture, without a ``type`` key.
    """
    e = event
    if omit_type:
        return (
            f'{{ "source":{_q(e.source)},"name":{_q(e.name)},"displayName" : {_q(e.display_name)}, '
            f'"value" : {_q(e.value)}, "unit":{_q(e.unit)},"deviceId":{e.int_device_id},"hubId":0,'
            f'"installedAppId":0,"descriptionText" : {_q(e.description)}}}'
        )
    return (
        f'{{ "source":{_q(e.source)},"name":{_q(e.name)},"displayName" : {_q(e.display_name)}, '
        f'"value" : {_q(e.value)}, "type" : {_q(e.event_type)}, "unit":{_q(e.unit)},'
        f'"deviceId":{e.int_device_id},"hubId":0,"installedAppId":0,'
        f'"descriptionText" : {_q(e.description)}}}'
    )


@dataclass(slots=True, eq=False)
class _EventSocket:
    """One accepted /eventsocket connection with its own ordered send queue (publishing only enqueues)."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: deque[tuple[str, bool]] = field(default_factory=deque)  # (frame, verbatim)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set when the handler has returned
    dead: bool = False  # "zombie" after a simulated reboot: open TCP, never another byte (ref §2.3)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def enqueue(self, frame: str, *, verbatim: bool = False) -> None:
        """Queue ``frame`` after the frames already queued. The split/duplicate quirks apply to it unless
        ``verbatim``, which sends it once, as it is."""
        self.queue.append((frame, verbatim))
        self.idle.clear()
        self.wakeup.set()

    def abort(self) -> None:
        self.dead = True
        self.idle.set()
        if self.transport is not None:
            self.transport.abort()


class EventSocketMixin(HubState):
    """The eventsocket push channel of :class:`~bridge.sim.hubitat.HubitatSim`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A stream of its own so that frame quirks stay reproducible whatever the webhook does.
        self._frame_rng = random.Random(self._seed)
        # --- quirks -------------------------------------------------------------------------------------------
        self.duplicate_frame_rate: float = 0.0  # frames sent twice (no de-duplication, ref §2.2, §5.5)
        self.split_frame_rate: float = 0.0  # one JSON object across two text frames (ref §2.2)
        self.ping_interval: float | None = None  # server-initiated pings (ref §2.3)
        # --- faults -------------------------------------------------------------------------------------------
        self.silent: bool = False  # sockets stay open but carry no frame and answer no ping
        # --- observation --------------------------------------------------------------------------------------
        self.eventsocket_connections: int = 0
        # --- plumbing -----------------------------------------------------------------------------------------
        self._sockets: dict[_EventSocket, None] = {}  # insertion-ordered set

    def _publish(self, event: HubEvent) -> None:
        if self._sockets and not self.silent:
            frame = event_frame(event, omit_type=self.omit_event_type)
            for sock in self._sockets:
                if not sock.dead:
                    sock.enqueue(frame)
        super()._publish(event)

    def inject_frame(self, text: str) -> int:
        """Send ``text`` as one text frame on every open eventsocket, verbatim: never split or duplicated.

        It is queued behind the frames already queued on each socket, so it arrives in order with the normal
        traffic. Sockets that are dead (after ``reboot(dead_sockets=True)``) are skipped, and while ``silent`` is
        set the frame is swallowed like any other. Returns the number of sockets it was queued on.
        """
        count = 0
        for sock in self._sockets:
            if not sock.dead:
                sock.enqueue(text, verbatim=True)
                count += 1
        return count

    async def push_burst(self, changes: Iterable[tuple[str, str, Any]], timeout: float = 60.0) -> None:
        """Apply many changes (each published unless unchanged) and wait until every frame was written to
        every connected eventsocket. Raises :class:`TimeoutError` if the clients cannot keep up in time."""
        for device_id, attribute, value in changes:
            self.set_attribute(device_id, attribute, value)
        await self.wait_eventsockets_idle(timeout)

    async def wait_eventsockets_idle(self, timeout: float = 10.0) -> None:
        """Wait until every connected eventsocket has written all queued frames."""
        async with asyncio.timeout(timeout):
            for sock in list(self._sockets):
                await sock.idle.wait()

    async def drop_eventsockets(self) -> None:
        """Abruptly close every eventsocket (TCP abort, no close frame), as a crashing/rebooting hub does."""
        socks = list(self._sockets)
        for sock in socks:
            sock.abort()
        # Let the handlers notice so `eventsocket` bookkeeping is settled when this returns.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                for sock in socks:
                    await sock.finished.wait()

    def _kill_eventsockets(self) -> None:
        """Make every open socket a zombie: it stays open but never carries another frame or pong (ref §2.3)."""
        for sock in self._sockets:
            sock.dead = True
            sock.queue.clear()
            sock.idle.set()

    async def _close_eventsockets(self) -> None:
        await asyncio.gather(*(self._close_socket(s) for s in list(self._sockets)), return_exceptions=True)

    async def _close_socket(self, sock: _EventSocket) -> None:
        for task in sock.tasks:
            task.cancel()
        try:
            async with asyncio.timeout(0.2):  # a client that is not reading must not hold up stop()
                await sock.ws.close(code=WSCloseCode.GOING_AWAY)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        sock.abort()

    async def _handle_eventsocket(self, request: web.Request) -> web.StreamResponse:
        # No auth on the upgrade (ref §2.1: every client examined connects without credentials).
        if self.starting_up:
            return starting_up_page(self.starting_up_status)
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=0.5)
        await ws.prepare(request)
        self.eventsocket_connections += 1
        sock = _EventSocket(ws=ws, transport=request.transport)
        sock.idle.set()
        self._sockets[sock] = None
        sock.tasks = [asyncio.create_task(self._sender(sock)), asyncio.create_task(self._pinger(sock))]
        try:
            async for msg in ws:
                # autoping is off so that a silent/dead hub can *not* answer pings (ref §2.3 dead sockets).
                if msg.type is WSMsgType.PING and not (self.silent or sock.dead):
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
                # Text from clients (danTapps sends '{}' as a probe, ref §2.1) is ignored.
        except ConnectionError:
            pass
        finally:
            self._sockets.pop(sock, None)
            sock.idle.set()
            for task in sock.tasks:
                task.cancel()
            sock.finished.set()
            await asyncio.gather(*sock.tasks, return_exceptions=True)
        return ws

    async def _sender(self, sock: _EventSocket) -> None:
        queue, ws = sock.queue, sock.ws
        try:
            while True:
                if not queue:
                    sock.idle.set()
                    sock.wakeup.clear()
                    await sock.wakeup.wait()
                    continue
                frame, verbatim = queue.popleft()
                if self.silent or sock.dead:
                    continue  # a dead socket swallows everything
                if verbatim:
                    await ws.send_str(frame)
                    continue
                copies = 2 if self.duplicate_frame_rate and self._frame_rng.random() < self.duplicate_frame_rate else 1
                for _ in range(copies):  # no de-duplication on the eventsocket (ref §2.2, §5.5)
                    if self.split_frame_rate and len(frame) > 1 and self._frame_rng.random() < self.split_frame_rate:
                        # One JSON object across two text frames (helog `toleratesSplitJson`, ref §2.2).
                        cut = self._frame_rng.randint(1, len(frame) - 1)
                        await ws.send_str(frame[:cut])
                        await ws.send_str(frame[cut:])
                    else:
                        await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            pass  # peer went away; the handler's reader notices and cleans up
        finally:
            sock.dead = True  # stop queueing frames nobody will send
            queue.clear()
            sock.idle.set()

    async def _pinger(self, sock: _EventSocket) -> None:
        # Server-initiated pings (node-red expects one every 120 s, ref §2.3); interval is re-read each round so
        # tests may switch it on/off at any time.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                interval = self.ping_interval
                if interval is None or interval <= 0:
                    await asyncio.sleep(0.1)
                    continue
                await asyncio.sleep(interval)
                if self.ping_interval is not None and not (self.silent or sock.dead) and not sock.ws.closed:
                    await sock.ws.ping()
