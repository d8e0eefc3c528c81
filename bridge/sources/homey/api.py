"""The Homey Web API over HTTP (homey.md 1.3, 2, 3): bearer auth, JSON errors, bounded concurrency, timeouts.

Every call is ``/api/manager/<manager>/<path>`` with ``Authorization: Bearer <token>`` and ``X-Homey-ID``. Errors
come as JSON ``{error, error_description}``; a 401 with an API key is final for that key, while a session from
the cloud route is renewed once (the :class:`~bridge.sources.homey.auth.Auth` decides) and the call retried.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp

from bridge.errors import HubAuthError, HubProtocolError, HubUnavailable
from bridge.events import shorten
from bridge.http import transport_problem
from bridge.jsontext import NotJson, loads
from bridge.metrics import hub_request

# A device map of a few hundred devices is a few megabytes at most.
MAX_BODY = 32 * 1024 * 1024
_SCOPE = re.compile(r"homey(?:\.[a-z]+)+")


class Auth:
    """Where the Homey is and what token to send: the base of :class:`~bridge.sources.homey.auth.ApiKeyAuth` and
    :class:`~bridge.sources.homey.auth.CloudAuth`."""

    what = "token"

    def __init__(self, cfg: Any, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.hub: str = cfg.name
        self.session = session
        self.base_url: str = cfg.url  # the address in use (shown on /healthz)
        self.homey_id: str | None = cfg.homey_id
        self.located = False

    async def token(self) -> str:
        """The bearer token to send now."""
        raise NotImplementedError

    async def renew(self, stale: str) -> bool:
        """``stale`` was refused (401): get a new token if this kind of auth can; True if there is one to retry."""
        raise NotImplementedError

    def fix(self, scope: str) -> str:
        """How the user fixes a refusal (the missing permission is ``scope``)."""
        raise NotImplementedError

    def lost(self) -> None:
        """The address in use stopped answering: find one again (by ping) before the next call."""
        self.located = False

    async def locate(self, candidates: list[tuple[str, float]]) -> None:
        """Use the first of ``candidates`` (url, ping timeout) that answers the ping as this Homey."""
        if self.located:
            return
        problems = []
        for url, timeout in candidates:
            try:
                self.homey_id = await ping(self.session, url, self.homey_id, timeout)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problems.append(f"{url}: {transport_problem(exc, url, timeout)}")
                continue
            except ValueError as exc:
                problems.append(str(exc))
                continue
            self.base_url, self.located = url, True
            return
        raise HubUnavailable(self.hub, "no address of the Homey answers the ping: " + "; ".join(problems))


def _snippet(text: str, n: int = 120) -> str:
    return repr(shorten(" ".join(text.split()), n))


def error_text(body: str) -> str:
    """The hub's error in words: ``error_description`` or ``error`` of a JSON body, else the text itself."""
    try:
        obj = loads(body)
    except NotJson:
        return shorten(" ".join(body.split()), 160)
    if isinstance(obj, dict):
        for key in ("error_description", "error", "message"):
            if isinstance(obj.get(key), str) and obj[key]:
                return shorten(obj[key], 160)
    return shorten(" ".join(body.split()), 160)


class HomeyApi:
    """GETs under ``<base>/api/manager/`` of one Homey, authenticated by ``auth``."""

    def __init__(self, hub: str, auth: Auth, session: aiohttp.ClientSession, timeout: float, limit: int) -> None:
        self.hub = hub
        self.auth = auth
        self.session = session
        self.request_timeout = timeout
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.limit = asyncio.Semaphore(limit)

    async def get(self, path: str, *, scope: str) -> Any:
        """GET ``/api/manager/<path>`` as JSON. ``scope`` is the permission it needs (named when refused)."""
        # Timed for /metrics by endpoint template: ``devices/device/{id}``, never a device's uuid.
        with hub_request(self.hub, endpoint(path)):
            return await self._get_json(path, scope)

    async def _get_json(self, path: str, scope: str) -> Any:
        token = await self.auth.token()
        status, text = await self._get(path, token)
        if status == 401 and await self.auth.renew(token):
            status, text = await self._get(path, await self.auth.token())
        where = f"GET /api/manager/{path}"
        if status in (401, 403):
            said = error_text(text)
            named = _SCOPE.search(said)
            missing = named.group(0) if named else scope
            if status == 403:
                hint = f"the {self.auth.what} lacks the permission {missing}"
            else:
                hint = f"the hub refused the {self.auth.what}"
            raise HubAuthError(self.hub, f"{where}: {hint} (HTTP {status}: {said}); {self.auth.fix(missing)}")
        if status in (502, 503, 504) or status >= 500:
            raise HubUnavailable(self.hub, f"{where}: HTTP {status} {_snippet(text)}", status)
        if status >= 400:
            raise HubProtocolError(self.hub, f"{where}: HTTP {status} {_snippet(error_text(text))}", status)
        try:
            return loads(text)
        except NotJson as exc:
            kind = "an HTML page" if text.lstrip()[:1] == "<" else f"malformed JSON ({exc})"
            raise HubProtocolError(self.hub, f"{where}: expected JSON, got {kind}: {_snippet(text)}", status) from None

    async def _get(self, path: str, token: str) -> tuple[int, str]:
        base = self.auth.base_url
        headers = {"Authorization": f"Bearer {token}"}
        if self.auth.homey_id:
            headers["X-Homey-ID"] = self.auth.homey_id
        async with self.limit:
            try:
                async with self.session.get(
                    f"{base}/api/manager/{path}", headers=headers, timeout=self.timeout, allow_redirects=False
                ) as resp:
                    body = await read_body(resp, self.hub, path)
                    return resp.status, body.decode("utf-8", errors="replace")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = transport_problem(exc, base, self.request_timeout)
                self.auth.lost()
                raise HubUnavailable(self.hub, f"GET /api/manager/{path}: {problem}") from None


def endpoint(path: str) -> str:
    """``path`` as a metrics label: the manager and collection kept, an id after them replaced by ``{id}``."""
    parts = path.split("/")
    return "/".join([*parts[:2], "{id}"] if len(parts) > 2 else parts)


async def read_body(resp: aiohttp.ClientResponse, hub: str, where: str) -> bytes:
    """The body, refused beyond MAX_BODY (a hub never sends that much; something else answered)."""
    if resp.content_length is not None and resp.content_length > MAX_BODY:
        raise HubProtocolError(hub, f"{where}: answer of {resp.content_length} bytes is over {MAX_BODY}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise HubProtocolError(hub, f"{where}: answer is over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def ping(session: aiohttp.ClientSession, base: str, homey_id: str | None, timeout: float) -> str:
    """``GET /api/manager/system/ping`` (no auth, homey.md 1.3): the ``X-Homey-ID`` of the Homey at ``base``.

    Raises ``OSError``-like ``aiohttp`` errors / TimeoutError when nothing answers, ValueError when something
    answers that is not a Homey (no ``X-Homey-ID``) or is another Homey (``false``).
    """
    headers = {"X-Homey-ID": homey_id} if homey_id else {}
    async with session.get(
        f"{base}/api/manager/system/ping",
        params={"id": homey_id} if homey_id else None,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
        allow_redirects=False,
    ) as resp:
        body = (await resp.content.read(4096)).decode("utf-8", "replace").strip()
        found = resp.headers.get("X-Homey-ID")
        if not found:
            raise ValueError(f"{base} answered (HTTP {resp.status}) but is not a Homey (no X-Homey-ID header)")
        if body == "false" or (homey_id and found.lower() != homey_id.lower()):
            raise ValueError(f"{base} is another Homey ({found}), not {homey_id}")
        return found
