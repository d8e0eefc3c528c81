"""``HomeySim``: a Homey on 127.0.0.1 (REST, Socket.IO, the user login), and ``AthomCloudSim``: api.athom.com.

REST (homey.md 2, 3, 10.1): ``/api/manager/<manager>/...`` with ``Authorization: Bearer``, per-scope JSON errors
``{error, error_description}`` (401 for an unknown or expired token, 403 for a missing scope, with the parent
rule), the unauthenticated ping with ``X-Homey-ID``/``X-Homey-Version``, ``/system/`` (404 on ``/system/info``),
id-keyed maps for devices, zones, variables and apps, both trailing-slash forms, ``PUT .../capability/:id``.
The cloud route (6.2, 10.2): ``POST /api/manager/users/login`` takes a delegation JWT the cloud issued and
answers a session token as a JSON string; sessions expire after ``session_lifetime``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bridge.sim.homey.realtime import RealtimeServer
from bridge.sim.homey.state import Credential, HomeyState, covers, session_token

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _error(status: int, error: str, description: str) -> web.Response:
    return _json({"error": error, "error_description": description, "stack": None}, status)


class HomeySim:
    """A simulated Homey Pro. Switches and counters are public attributes; see the module docstring."""

    def __init__(
        self,
        *,
        api_keys: dict[str, list[str]] | None = None,
        devices: list[dict[str, Any]] | None = None,
        variables: list[dict[str, Any]] | None = None,
        homey_id: str = "5f2a0c1b9d8e7f6a5b4c3d2e",
        version: str = "12.4.0",
        seed: int = 0,
        cloud: AthomCloudSim | None = None,
    ) -> None:
        self.homey_id = homey_id
        self.version = version
        self.state = HomeyState(devices, variables, seed)
        self.keys: dict[str, Credential] = {
            k: Credential(list(s)) for k, s in (api_keys or {session_token(): ["homey"]}).items()
        }
        self.api_key = next(iter(self.keys))
        self.sessions: dict[str, Credential] = {}
        self.cloud = cloud
        self.session_lifetime = 24 * 3600.0
        self.realtime = RealtimeServer(self)
        self.state.emit = self.realtime.emit
        self.response_delay = 0.0
        # Fault: answer every REST call under /api/manager/ (but the ping and the login) with this exact body.
        self.raw_response: tuple[int, str, str] | None = None  # (status, content type, body)
        self.requests: list[tuple[str, str]] = []
        self.refused: list[int] = []  # statuses of refused requests (401/403)
        self.logins = 0
        self.url = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._expiry: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._observe])
        self.realtime.attach(app)
        app.router.add_get("/api/manager/system/ping", self._ping)
        app.router.add_post("/api/manager/users/login", self._login)
        app.router.add_route("*", "/api/manager/{manager}/{tail:.*}", self._manager)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.url = f"http://{host}:{self.port}"
        self._expiry = asyncio.create_task(self._expire_loop(), name="homey-sim.expiry")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._expiry is not None:
            self._expiry.cancel()
        await self.realtime.kick()
        await runner.cleanup()

    async def __aenter__(self) -> HomeySim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ credentials

    def credential(self, token: str | None) -> Credential | None:
        if token is None:
            return None
        cred = self.keys.get(token) or self.sessions.get(token)
        return cred if cred is not None and cred.alive() else None

    def expire_sessions(self) -> None:
        """Every session ends now (as after ~24 h, homey.md 6.2)."""
        for cred in self.sessions.values():
            cred.expires = time.time() - 1

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            for token, cred in list(self.sessions.items()):
                if not cred.alive():
                    del self.sessions[token]
                    await self.realtime.expire(token)

    # ------------------------------------------------------------------ HTTP

    @web.middleware
    async def _observe(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.response_delay and not request.path.startswith("/socket.io"):
            await asyncio.sleep(self.response_delay)
        resp = await handler(request)
        if resp.status in (401, 403):
            self.refused.append(resp.status)
        return resp

    def _headers(self, resp: web.StreamResponse) -> web.StreamResponse:
        resp.headers["X-Homey-ID"] = self.homey_id
        resp.headers["X-Homey-Version"] = self.version
        return resp

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        asked = request.query.get("id")
        ok = asked in (None, "", self.homey_id)
        return self._headers(_json(bool(ok)))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_body", "Expected JSON {token}")
        jwt = body.get("token") if isinstance(body, dict) else None
        if self.cloud is None or not isinstance(jwt, str) or not self.cloud.take_jwt(jwt):
            return _error(401, "invalid_token", "Invalid delegation token")
        token = session_token()
        self.sessions[token] = Credential(["homey"], time.time() + self.session_lifetime, kind="OAUTH")
        self.logins += 1
        return self._headers(_json(token))

    def _auth(self, request: web.Request, scope: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        cred = self.credential(token)
        if cred is None:
            return _error(401, "invalid_token", "The token is invalid or has expired")
        if not covers(cred.scopes, scope):
            return _error(403, "Missing Scopes", f"Missing Scopes: {scope}")
        return None

    async def _manager(self, request: web.Request) -> web.StreamResponse:
        if self.raw_response is not None:
            status, ctype, body = self.raw_response
            return web.Response(status=status, text=body, content_type=ctype)
        manager = request.match_info["manager"]
        parts = [p for p in request.match_info["tail"].split("/") if p]
        method = request.method
        st = self.state
        if manager == "sessions" and parts == ["session", "me"]:
            header = request.headers.get("Authorization", "")
            cred = self.credential(header[7:] if header.startswith("Bearer ") else None)
            if cred is None:
                return _error(401, "invalid_token", "The token is invalid or has expired")
            return self._headers(
                _json({"id": cred.id, "type": cred.kind, "scopes": cred.scopes, "intersectedScopes": cred.scopes})
            )
        routes: dict[tuple[str, str], tuple[str, Callable[[], Any]]] = {
            ("system", ""): ("homey.system.readonly", self._system_info),
            ("devices", "device"): ("homey.device.readonly", lambda: st.devices),
            ("zones", "zone"): ("homey.zone.readonly", lambda: st.zones),
            ("logic", "variable"): ("homey.logic.readonly", lambda: st.variables),
            ("apps", "app"): ("homey.app.readonly", lambda: {}),
            ("insights", "log"): ("homey.insights.readonly", lambda: {}),
        }
        if method == "GET" and len(parts) <= 1:
            key = (manager, parts[0] if parts else "")
            if key not in routes:
                return _error(404, "Not Found", f"Not Found: /api/manager/{manager}/{'/'.join(parts)}")
            scope, get = routes[key]
            denied = self._auth(request, scope)
            return denied or self._headers(_json(get()))
        if manager == "devices" and parts[:1] == ["device"] and len(parts) >= 2:
            did = parts[1]
            if method == "GET" and len(parts) == 2:
                denied = self._auth(request, "homey.device.readonly")
                if denied:
                    return denied
                if did not in st.devices:
                    return _error(404, "Not Found", f"Device not found: {did}")
                return self._headers(_json(st.devices[did]))
            if method == "PUT" and len(parts) == 4 and parts[2] == "capability":
                return await self._set_capability(request, did, parts[3])
        return _error(404, "Not Found", f"Not Found: /api/manager/{manager}/{'/'.join(parts)}")

    def _system_info(self) -> dict[str, Any]:
        return {
            "cloudId": self.homey_id,
            "homeyVersion": self.version,
            "homeyModelId": "homey5q",
            "homeyModelName": "Homey Pro (Early 2023)",
            "homeyPlatformVersion": 2,
            "hostname": "Homey",
            "uptime": 5465,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "cloudConnected": True,
        }

    async def _set_capability(self, request: web.Request, did: str, cap: str) -> web.StreamResponse:
        denied = self._auth(request, "homey.device.control")
        if denied:
            return denied
        device = self.state.devices.get(did)
        entry = (device.get("capabilitiesObj") or {}).get(cap) if device else None
        if entry is None:
            return _error(404, "Not Found", f"Capability not found: {cap}")
        if not entry.get("setable"):
            return _error(400, "Not Setable", f"Capability {cap} is not setable")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_body", "Expected JSON {value}")
        if not isinstance(body, dict) or "value" not in body:
            return _error(400, "invalid_body", "Missing value")
        await self.state.set_capability(did, cap, body["value"], transaction_id=body.get("transactionId"))
        return self._headers(_json(None))

    # ------------------------------------------------------------------ activity

    async def random_activity(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.state.random_change()


class AthomCloudSim:
    """api.athom.com and accounts.athom.com for the cloud route (homey.md 6.2), on one loopback server.

    Refresh tokens rotate on every refresh (the old one stops working); ``revoke()`` ends every grant;
    ``access_lifetime`` is the ``expires_in`` handed out (3660 s, as captured).
    """

    def __init__(self, *, client_id: str = "sim-client", client_secret: str = "sim-client-secret") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = {"user@example.com": "correct horse"}
        self.homeys: list[dict[str, Any]] = []
        self.access_lifetime = 3660.0
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}
        self.codes: set[str] = set()
        self.user_tokens: set[str] = set()
        self.jwts: set[str] = set()
        self.refreshes = 0
        self.delegations = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add_homey(self, sim: HomeySim, *, name: str = "Homey Pro", local_secure: str | None = None) -> None:
        """List ``sim`` among the user's Homeys, with its addresses as /user/me gives them."""
        entry: dict[str, Any] = {
            "id": sim.homey_id,
            "_id": sim.homey_id,
            "name": name,
            "apiVersion": 3,
            "platform": "local",
            "platformVersion": 2,
            "softwareVersion": sim.version,
            "localUrl": sim.url,
            "remoteUrl": sim.url,
            "role": "owner",
            "model": "homey5q",
            "modelName": "Homey Pro (Early 2023)",
        }
        if local_secure:
            entry["localUrlSecure"] = local_secure
        self.homeys.append(entry)
        sim.cloud = self

    def issue_code(self) -> str:
        code = secrets.token_hex(12)
        self.codes.add(code)
        return code

    def revoke(self) -> None:
        self.refresh_tokens.clear()
        self.access_tokens.clear()

    def take_jwt(self, jwt: str) -> bool:
        if jwt in self.jwts:
            self.jwts.discard(jwt)
            return True
        return False

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_get("/user/me", self._me)
        app.router.add_post("/delegation/token", self._delegation)
        app.router.add_post("/login", self._account_login)
        app.router.add_get("/oauth2/authorise", self._authorise)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.url = f"http://{host}:{int(runner.addresses[0][1])}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> AthomCloudSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _grant(self) -> web.Response:
        access, refresh = secrets.token_hex(19), secrets.token_hex(20)
        self.access_tokens[access] = time.time() + self.access_lifetime
        self.refresh_tokens.add(refresh)
        return _json(
            {
                "access_token": access,
                "expires_in": self.access_lifetime,
                "refresh_token": refresh,
                "token_type": "bearer",
            }
        )

    async def _token(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if header != f"Basic {expected}":
            return _json({"code": 401, "error": "invalid_client", "error_description": "Invalid client"}, 401)
        form = await request.post()
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code") in self.codes:
            self.codes.discard(str(form.get("code")))
            return self._grant()
        if grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            self.refresh_tokens.discard(str(form.get("refresh_token")))  # rotated: the old one is spent
            self.refreshes += 1
            return self._grant()
        return _json({"code": 400, "error": "invalid_grant", "error_description": "Invalid grant"}, 400)

    def _bearer(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        until = self.access_tokens.get(header[7:]) if header.startswith("Bearer ") else None
        return until is not None and time.time() < until

    async def _me(self, request: web.Request) -> web.StreamResponse:
        if not self._bearer(request):
            return _json({"code": 401, "error": "invalid_token", "error_description": "Invalid token"}, 401)
        return _json(
            {
                "_id": "5c1a0000000000000000user",
                "firstname": "Sim",
                "lastname": "User",
                "email": next(iter(self.users)),
                "homeys": self.homeys,
            }
        )

    async def _delegation(self, request: web.Request) -> web.StreamResponse:
        if not self._bearer(request) or request.query.get("audience") != "homey":
            return _json({"code": 401, "error": "invalid_token", "error_description": "Invalid token"}, 401)
        jwt = "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.jwts.add(jwt)
        self.delegations += 1
        return _json(jwt)

    async def _account_login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if self.users.get(str(form.get("email"))) != form.get("password"):
            return _json({"error": "invalid_credentials", "error_description": "Invalid email or password"}, 401)
        token = secrets.token_hex(16)
        self.user_tokens.add(token)
        return _json({"token": token})

    async def _authorise(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("user_token") not in self.user_tokens:
            return _error(401, "invalid_request", "Unknown client or user")
        code = self.issue_code()
        raise web.HTTPFound(f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q.get('state', '')})}")
