"""The Homey realtime stream over Socket.IO (homey.md 5), with python-socketio as the client.

One connection at a time: connect ``/``; ``handshakeClient`` ``{token, homeyId}``; CONNECT the namespace the
answer names (``/api``) on the same Engine.IO session with ``{token: <handshake token>}`` (python-socketio has no
public call for joining a namespace after ``connect()``, so :class:`_Client` sends that CONNECT packet itself);
``subscribe`` to the devices, zones and logic managers and to each ``homey:device:<id>``. Capability and
variable events go to the runner's queue in arrival order; device and zone events keep labels and rooms current.

A connection is given up when a namespace drops, when the hub answers nothing (a probe over the socket after
``realtime_timeout`` of silence) or when a reconciliation poll proves that changes were missed (events stopped
on a live socket, homey.md 8.2). Reconnects use capped jittered backoff; every (re)connect asks for a
reconciliation poll, which brings what changed while no stream was up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import socketio
from socketio import packet

from bridge.backoff import Backoff
from bridge.errors import HubAuthError, HubError
from bridge.events import Event, Reading, shorten
from bridge.sources import base
from bridge.sources.homey.values import capability_event, device_readings, parse_device, text, variable_reading

if TYPE_CHECKING:
    from bridge.sources.homey.hub import HomeySource

# The hub may accept the namespace and tear it down at once (homey.md 5.3, 8.3): a join counts after this long.
NAMESPACE_STABILITY = 0.025
SUBSCRIBE_TIMEOUT = 10.0
# Subscriptions in flight at once (a 300-device hub needs 300 subscribes after each connect).
SUBSCRIBE_CONCURRENCY = 16
MISSED_GRACE = 5.0
# Events received but not yet handed to the runner, at most. The runner's queue pushes back while the journal
# cannot take more, but python-socketio reads on regardless: beyond this the stream is dropped (and reconciled
# by a poll after the reconnect) instead of growing without bound.
INBOX_MAX = 50_000
# A pushed event's share of the runner's queue budget (bytes); a capability event is about this size on the wire.
EVENT_SIZE = 200


def _retrieved(future: asyncio.Future[list[Event]]) -> None:
    # A commit that failed (the bridge stopping) is the runner's to report; here it only must not warn as unread.
    if not future.cancelled():
        future.exception()


def _end(down: asyncio.Future[str] | None, why: str) -> None:
    """End the connection ``down`` belongs to (a late callback of an old connection changes nothing)."""
    if down is not None and not down.done():
        down.set_result(why)


class StreamDown(Exception):
    """This connection is over (the reason is the message); reconnect."""


class _Client(socketio.AsyncClient):  # type: ignore[misc]
    """python-socketio's client plus the namespace join after the handshake (homey.md 5.5)."""

    async def join(self, namespace: str, auth: dict[str, Any], timeout: float) -> None:
        await self._send_packet(self.packet_class(packet.CONNECT, data=auth, namespace=namespace))
        async with asyncio.timeout(timeout):
            while namespace not in self.namespaces:
                if namespace in self.failed_namespaces:
                    raise StreamDown(f"the hub refused the {namespace} namespace")
                self._connect_event.clear()
                await self._connect_event.wait()


class Realtime:
    """The realtime stream of one Homey source."""

    def __init__(self, source: HomeySource) -> None:
        self.source = source
        self.hub = source.hub
        self.cfg = source.cfg
        self.live = False
        self.connects = 0
        self._sio: _Client | None = None
        self._inbox: deque[tuple[str, str, Any, float]] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # nothing received is waiting to be handed to the runner
        self._drained.set()
        self._last_push: asyncio.Future[list[Event]] | None = None
        self._down: asyncio.Future[str] | None = None
        self._subscribed: set[str] = set()
        self._live_since = 0.0  # epoch seconds: since when every device was subscribed
        self._last_frame = 0.0
        self._fetching: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ the connection loop

    async def run(self) -> None:
        floor = base.HUB_RETRY_FLOOR
        backoff = Backoff(floor, self.cfg.backoff_max, floor=min(floor, self.cfg.backoff_max))
        consumer = asyncio.create_task(self._consume(), name=f"hub[{self.cfg.name}].realtime.consume")
        try:
            while True:
                started = time.monotonic()
                why = await self._connection()
                self._set_down(why)
                # A connection that stayed up a while resets the backoff; one that fails at once backs off.
                if time.monotonic() - started > max(30.0, 2 * floor):
                    backoff.reset()
                wait = backoff.next()
                self.hub.rate_log.warning("realtime-down", "realtime stream down; reconnecting", reason=why)
                self.hub.log.debug("realtime reconnect", retry_in=round(wait, 2))
                await asyncio.sleep(wait)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            await self.close()

    def _set_down(self, why: str) -> None:
        self.live = False
        self._subscribed.clear()
        self.hub.stream_state("realtime", False, shorten(why, 200))

    async def close(self) -> None:
        sio, self._sio = self._sio, None
        for task in list(self._fetching):
            task.cancel()
        if sio is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await sio.disconnect()

    async def _connection(self) -> str:
        """One connection from connect to its end; returns why it ended."""
        loop = asyncio.get_running_loop()
        self._down = loop.create_future()
        try:
            await self._connect()
            self.connects += 1
            self.live = True
            self.hub.stream_state("realtime", True, f"connected to {self.source.auth.base_url}")
            self.hub.rate_log.forget("realtime-down")
            self.hub.log.info("realtime connected", url=self.source.auth.base_url, subscribed=len(self._subscribed))
            self.hub.reconcile("realtime connected")
            return await self._watch()
        except StreamDown as exc:
            return str(exc)
        except HubAuthError as exc:
            self.hub.rate_log.error("realtime-auth", "realtime: the hub refused the credentials", error=str(exc))
            return str(exc)
        except HubError as exc:
            return str(exc)
        except (socketio.exceptions.SocketIOError, OSError) as exc:
            return f"cannot connect the realtime stream to {self.source.auth.base_url}: {exc or type(exc).__name__}"
        except TimeoutError:
            return "the hub did not answer the realtime handshake in time"
        finally:
            await self.close()

    async def _connect(self) -> None:
        auth = self.source.auth
        token = await auth.token()
        for attempt in range(2):
            # handle_sigint=False: python-socketio would take over SIGINT and cancel the bridge's main task; the
            # bridge's own handler stops everything in order (and commits what is queued).
            sio = self._sio = _Client(reconnection=False, logger=False, engineio_logger=False, handle_sigint=False)
            sio.on("*", self._on_event, namespace="/api")
            down = self._down
            sio.on("disconnect", lambda *a, d=down: _end(d, "the hub closed the /api namespace"), namespace="/api")
            sio.on("disconnect", lambda *a, d=down: _end(d, "the realtime connection closed"), namespace="/")
            timeout = min(SUBSCRIBE_TIMEOUT, self.cfg.request_timeout)
            await sio.connect(
                auth.base_url, transports=["websocket"], namespaces=["/"], wait_timeout=timeout, retry=False
            )
            answer = await sio.call("handshakeClient", {"token": token, "homeyId": auth.homey_id}, timeout=timeout)
            result = answer[1] if isinstance(answer, tuple) and len(answer) > 1 and answer[0] is None else None
            if isinstance(result, dict) and isinstance(result.get("namespace"), str):
                break
            err = answer[0] if isinstance(answer, tuple) else answer
            status = err.get("statusCode") or err.get("code") if isinstance(err, dict) else None
            await self.close()
            if status == 401 and attempt == 0 and await auth.renew(token):
                token = await auth.token()
                continue
            raise StreamDown(f"the hub refused the realtime handshake: {shorten(str(err), 200)}")
        assert isinstance(result, dict)
        await sio.join(result["namespace"], {"token": result.get("token")}, timeout)
        await asyncio.sleep(NAMESPACE_STABILITY)
        if self._down is not None and self._down.done():
            raise StreamDown(self._down.result())
        self._last_frame = time.monotonic()
        uris = ["homey:manager:devices", "homey:manager:zones"]
        if self.cfg.variables:
            uris.append("homey:manager:logic")
        await self._subscribe(uris, optional=True)
        await self._subscribe([f"homey:device:{did}" for did in self.source.devices])
        self._live_since = time.time()

    async def _subscribe(self, uris: list[str], optional: bool = False) -> None:
        sio = self._sio
        assert sio is not None
        limit = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)

        async def one(uri: str) -> None:
            async with limit:
                answer = await sio.call("subscribe", uri, namespace="/api", timeout=SUBSCRIBE_TIMEOUT)
            err = answer[0] if isinstance(answer, tuple) else answer
            if err is None:
                self._subscribed.add(uri)
            elif optional:
                self.hub.rate_log.warning(f"subscribe-{uri}", "realtime: cannot subscribe", uri=uri, error=str(err))
            else:
                raise StreamDown(f"the hub refused the subscription to {uri}: {shorten(str(err), 160)}")

        await asyncio.gather(*(one(u) for u in uris if u not in self._subscribed))

    def _lost(self, why: str) -> None:
        _end(self._down, why)

    async def _watch(self) -> str:
        """Wait for the end of the connection; probe the hub after ``realtime_timeout`` without a frame."""
        assert self._down is not None
        limit = self.cfg.realtime_timeout
        while True:
            quiet = time.monotonic() - self._last_frame
            if quiet >= limit:
                sio = self._sio
                assert sio is not None
                try:
                    await sio.call(
                        "api",
                        {"uri": "homey:manager:system", "operation": "ping", "args": {}},
                        namespace="/api",
                        timeout=min(10.0, limit),
                    )
                except (TimeoutError, socketio.exceptions.SocketIOError):
                    return f"no realtime frame for {limit:g}s and no answer to a probe: a dead stream"
                self._last_frame = time.monotonic()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit - quiet):
                    return await asyncio.shield(self._down)

    # ------------------------------------------------------------------ what a poll tells the stream

    def polled(self, devices: dict[str, Any]) -> None:
        """After a poll: subscribe to devices it found that the stream does not follow yet."""
        sio = self._sio
        if not self.live or sio is None:
            return
        missing = [f"homey:device:{did}" for did in devices if f"homey:device:{did}" not in self._subscribed]
        if missing:
            self._spawn(self._subscribe_later(missing))

    async def _subscribe_later(self, uris: list[str]) -> None:
        try:
            await self._subscribe(uris)
        except (StreamDown, TimeoutError, socketio.exceptions.SocketIOError) as exc:
            self._lost(f"subscribing to new devices failed: {exc}")

    def check_missed(self, events: list[Event]) -> None:
        """A reconciliation found changes the live stream should have brought: the stream is dead, recycle it."""
        if not self.live:
            return
        horizon = time.time() - MISSED_GRACE
        missed = [
            ev
            for ev in events
            if ev.kind == "device"
            and ev.source == "reconcile"
            and ev.attribute != "available"
            and ev.previous is not None
            and f"homey:device:{ev.device_id}" in self._subscribed
            and self._live_since < ev.time < horizon
        ]
        if missed:
            ev = missed[0]
            self.hub.log.warning(
                "realtime missed changes a poll found; reconnecting",
                missed=len(missed),
                example=f"{ev.device} {ev.attribute}={ev.value!r}",
            )
            self._lost(f"the stream missed {len(missed)} change(s) a reconciliation poll found")

    # ------------------------------------------------------------------ events

    def _on_event(self, uri: str, *args: Any) -> None:
        # Called in arrival order; all work happens in _consume, in that same order.
        self._last_frame = time.monotonic()
        if len(self._inbox) >= INBOX_MAX:
            self._lost("events arrive faster than they can be recorded; a reconciliation poll follows the reconnect")
            return
        if len(args) >= 2 and isinstance(args[0], str):
            self._inbox.append((uri, args[0], args[1], self._last_frame))
            self._drained.clear()
            self._wake.set()

    async def _consume(self) -> None:
        inbox = self._inbox
        while True:
            while not inbox:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
            batch: list[Reading] = []
            while inbox and len(batch) < 500:
                uri, event, data, observed = inbox.popleft()
                reading = self._reading(uri, event, data, observed)
                if reading is not None:
                    batch.append(reading)
            if batch:
                future = await self.hub.push(batch, size=EVENT_SIZE * len(batch))
                if future is not None:
                    future.add_done_callback(_retrieved)
                    self._last_push = future

    async def flushed(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until every event received so far is committed.

        A poll calls this before it hands over its readings: its readings are observed when it started, so a
        realtime event received before that but committed after them would count as stale and be dropped, though
        it is a real change the hub reported (the poll only saw the value after it).
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._drained.wait()
                last = self._last_push
                if last is not None and not last.done():
                    await asyncio.wait({last})

    def _reading(self, uri: str, event: str, data: Any, observed: float) -> Reading | None:
        src = self.source
        if event == "capability":
            ev = capability_event(uri, data)
            return src.capability_reading(ev, observed) if ev is not None else None
        if uri == "homey:manager:logic" and event in ("variable.create", "variable.update") and isinstance(data, dict):
            return variable_reading(data, "realtime", time.time(), observed)
        if uri == "homey:manager:zones" and isinstance(data, dict) and (zid := text(data.get("id"))):
            if event == "zone.delete":
                src.zones.pop(zid, None)
            elif (name := text(data.get("name"))) is not None:
                src.zones[zid] = name
            return None
        if uri == "homey:manager:devices" and isinstance(data, dict) and (did := text(data.get("id"))):
            return self._device_event(event, did, data, observed)
        return None

    def _device_event(self, event: str, did: str, data: dict[str, Any], observed: float) -> Reading | None:
        src = self.source
        if event == "device.delete":
            src.devices.pop(did, None)
            uri = f"homey:device:{did}"
            if uri in self._subscribed and self._sio is not None:
                self._subscribed.discard(uri)
                self._spawn(self._sio.emit("unsubscribe", uri, namespace="/api"))
            return None
        if event == "device.create" and not isinstance(data.get("capabilitiesObj"), dict):
            # capabilitiesObj is null on create (homey.md 8.5): fetch the device for its values and types.
            self._spawn(self._fetch_device(did))
            return None
        if event in ("device.create", "device.update"):
            old = src.devices.get(did)
            device = parse_device(did, data)
            if old is not None and not device.capabilities:
                device.capabilities = old.capabilities  # a partial update: keep what the poll learned
            src.devices[did] = device
            if f"homey:device:{did}" not in self._subscribed:
                self.polled({did: device})
            # Values come from capability events; an update that carries it says whether the device is available
            # (a partial one without the key says nothing about it).
            if "available" not in data:
                return None
            return device_readings(device, {}, src.room_of(device), "realtime", observed)[-1]
        return None

    async def _fetch_device(self, did: str) -> None:
        src = self.source
        try:
            obj = await src.api.get(f"devices/device/{did}", scope="homey.device.readonly")
        except HubError as exc:
            self.hub.rate_log.warning("device-fetch", "cannot fetch a new device", device_id=did, error=str(exc))
            return
        if not isinstance(obj, dict):
            return
        device = parse_device(did, obj)
        src.devices[did] = device
        self.polled({did: device})
        readings = device_readings(device, obj, src.room_of(device), "realtime", time.monotonic())
        await self.hub.push(readings, size=EVENT_SIZE * len(readings), track=False)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._fetching.add(task)
        task.add_done_callback(self._fetching.discard)
