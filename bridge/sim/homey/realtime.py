"""The simulated Homey's Socket.IO server (homey.md 5): python-socketio on the same aiohttp app as the REST API.

Sequence (5.2): connect ``/``; ``handshakeClient`` ``{token, homeyId}`` acked ``(null, {token, namespace: "/api",
success: true})`` or an error object with ``statusCode: 401``; CONNECT ``/api`` on the same Engine.IO session with
``{token: <handshake token>}``; ``subscribe`` ``<uri>`` acked ``(null)``; broadcasts ``(uri, event, data)``.
python-socketio's server speaks Engine.IO 4 only (5.1), so this serves EIO4 clients such as python-socketio's.

Faults: ``drop_namespace`` (tear ``/api`` down right after it connected, homey.md 8.3), ``silent`` (a live socket
on which nothing more arrives, acks included, 8.2), ``events_stop`` (events stop, acks still work, 8.2),
``end_sessions`` (a session that expires takes its sockets down) and :meth:`kick` (``io server disconnect``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

import socketio

from bridge.sim.homey.state import covers

if TYPE_CHECKING:
    from bridge.sim.homey.simulator import HomeySim

URI_SCOPES = {
    "homey:manager:devices": "homey.device.readonly",
    "homey:manager:zones": "homey.zone.readonly",
    "homey:manager:logic": "homey.logic.readonly",
}


class RealtimeServer:
    """Socket.IO for one simulated Homey."""

    def __init__(self, sim: HomeySim) -> None:
        self.sim = sim
        self.sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
        # Engine.IO session -> (namespace token, the credential's token)
        self._handshakes: dict[str, tuple[str, str]] = {}
        self._api_sids: dict[str, str] = {}  # /api sid -> credential token
        self.drop_namespace = 0  # how many of the next /api connects are torn down right after
        self.silent = False
        self.events_stop = False
        self.end_sessions = False
        self.handshakes = 0
        self.subscriptions: list[str] = []
        self.emitted = 0
        sio = self.sio
        sio.on("connect", self._root_connect, namespace="/")
        sio.on("handshakeClient", self._handshake, namespace="/")
        sio.on("connect", self._api_connect, namespace="/api")
        sio.on("disconnect", self._api_disconnect, namespace="/api")
        sio.on("subscribe", self._subscribe, namespace="/api")
        sio.on("unsubscribe", self._unsubscribe, namespace="/api")
        sio.on("api", self._api_call, namespace="/api")

    def attach(self, app: Any) -> None:
        self.sio.attach(app)

    @property
    def clients(self) -> int:
        """``/api`` sockets connected now."""
        return len(self._api_sids)

    async def _root_connect(self, sid: str, environ: Any, auth: Any = None) -> bool:
        return True

    async def _handshake(self, sid: str, data: Any) -> Any:
        if self.silent:
            await asyncio.sleep(3600)
        token = data.get("token") if isinstance(data, dict) else None
        cred = self.sim.credential(token) if isinstance(token, str) else None
        if cred is None or (isinstance(data, dict) and data.get("homeyId") not in (None, self.sim.homey_id)):
            return ({"error": "invalid_token", "error_description": "Invalid session token", "statusCode": 401},)
        eio = self.sio.manager.eio_sid_from_sid(sid, "/")
        ns_token = secrets.token_hex(16)
        self._handshakes[eio] = (ns_token, str(token))
        self.handshakes += 1
        return (None, {"token": ns_token, "namespace": "/api", "success": True})

    async def _api_connect(self, sid: str, environ: Any, auth: Any = None) -> None:
        eio = self.sio.manager.eio_sid_from_sid(sid, "/api")
        given = auth.get("token") if isinstance(auth, dict) else None
        expected = self._handshakes.get(eio)
        if expected is None or given != expected[0]:
            raise socketio.exceptions.ConnectionRefusedError({"message": "Invalid handshake", "statusCode": 401})
        self._api_sids[sid] = expected[1]
        if self.drop_namespace > 0:
            self.drop_namespace -= 1
            asyncio.get_running_loop().call_later(
                0.01, lambda: asyncio.ensure_future(self.sio.disconnect(sid, namespace="/api"))
            )

    async def _api_disconnect(self, sid: str, *args: Any) -> None:
        self._api_sids.pop(sid, None)

    def _allowed(self, sid: str, scope: str) -> bool:
        token = self._api_sids.get(sid)
        cred = self.sim.credential(token) if token else None
        return cred is not None and covers(cred.scopes, scope)

    async def _subscribe(self, sid: str, uri: Any) -> Any:
        if self.silent:
            await asyncio.sleep(3600)
        if not isinstance(uri, str):
            return ("Invalid URI",)
        scope = URI_SCOPES.get(uri, "homey.device.readonly" if uri.startswith("homey:device:") else "homey")
        if not self._allowed(sid, scope):
            return ({"error": "Missing Scopes", "error_description": f"Missing Scopes: {scope}", "statusCode": 403},)
        await self.sio.enter_room(sid, uri, namespace="/api")
        self.subscriptions.append(uri)
        return (None,)

    async def _unsubscribe(self, sid: str, uri: Any) -> None:
        if isinstance(uri, str):
            await self.sio.leave_room(sid, uri, namespace="/api")

    async def _api_call(self, sid: str, data: Any) -> Any:
        if self.silent:
            await asyncio.sleep(3600)
        op = data.get("operation") if isinstance(data, dict) else None
        if op == "ping":
            return (None, True)
        if op == "getDevices":
            return (None, self.sim.state.devices)
        return ({"error": "Not Found", "error_description": f"unknown operation {op!r}", "statusCode": 404},)

    async def emit(self, uri: str, event: str, data: Any) -> None:
        if self.silent or self.events_stop:
            return
        self.emitted += 1
        await self.sio.emit(uri, (event, data), room=uri, namespace="/api")

    async def kick(self) -> None:
        """Disconnect every client from the server side (``io server disconnect``)."""
        for sid in list(self._api_sids):
            await self.sio.disconnect(sid, namespace="/api")

    async def expire(self, token: str) -> None:
        """A session ended: with ``end_sessions``, its sockets go too."""
        if self.end_sessions:
            for sid, tok in list(self._api_sids.items()):
                if tok == token:
                    await self.sio.disconnect(sid, namespace="/api")
