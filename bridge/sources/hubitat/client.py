"""Maker API over HTTP (hubitat.md 1.1-1.3): bounded concurrency, a timeout on every request, errors in plain words.

Maker API answers JSON with ``Content-Type: text/html``, so bodies are parsed whatever the header says; a bad
token is an XML 401; a wrong app id is a bare 404. Error texts never carry the token, although it travels in the
query string.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from bridge.errors import HubAuthError, HubProtocolError, HubUnavailable
from bridge.events import shorten
from bridge.http import transport_problem
from bridge.metrics import hub_request
from bridge.sources.hubitat.config import HubitatConfig
from bridge.sources.hubitat.values import NotJson, loads

# /devices/all of a few hundred devices is well under a megabyte; anything this large is not a hub answer.
MAX_BODY = 32 * 1024 * 1024


def _snippet(text: str, n: int = 80) -> str:
    return repr(shorten(" ".join(text.split()), n))


def _timed(hub: str, path: str, shown: str | None) -> contextlib.AbstractContextManager[None]:
    """Request metrics by endpoint template (``devices/{id}``): never a path with an id, a URL or a token in it."""
    first, _, rest = path.partition("/")
    endpoint = f"{first}/{{id}}" if first == "devices" and rest != "all" else first if shown or not rest else path
    return hub_request(hub, endpoint)


class MakerApi:
    """GETs under ``<url>/apps/api/<app_id>/`` for one hub."""

    def __init__(self, cfg: HubitatConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session
        self.base = f"{cfg.url}/apps/api/{cfg.app_id}"
        self.limit = asyncio.Semaphore(cfg.max_concurrency)
        self.timeout = aiohttp.ClientTimeout(total=cfg.request_timeout)

    async def get(self, path: str, *, shown: str | None = None) -> Any:
        """GET ``<base>/<path>`` and parse the body as JSON.

        ``shown`` replaces ``path`` in error texts when the path carries a secret (the POST-URL registration).
        """
        with _timed(self.cfg.name, path, shown):
            return await self._get(path, shown)

    async def _get(self, path: str, shown: str | None) -> Any:
        hub = self.cfg.name
        where = f"GET {shown or path}"
        try:
            token = self.cfg.access_token.get()
        except OSError as exc:
            raise HubAuthError(
                hub, f"cannot read access_token_file {self.cfg.access_token.path}: {exc.strerror or exc}"
            ) from None
        async with self.limit:
            try:
                async with self.session.get(
                    f"{self.base}/{path}",
                    params={"access_token": token},
                    timeout=self.timeout,
                    allow_redirects=False,
                ) as resp:
                    body = await self._read(resp, where)
                    status = resp.status
                    location = resp.headers.get("Location", "?")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = transport_problem(exc, self.cfg.url, self.cfg.request_timeout)
                raise HubUnavailable(hub, f"{where}: {problem}") from None
        text = body.decode("utf-8", errors="replace")
        if status == 401:
            raise HubAuthError(
                hub,
                f"{where}: Maker API refused the access token (401 {_snippet(text)}); check access_token and that "
                f"app {self.cfg.app_id} is the Maker API instance it belongs to",
            )
        if "starting up" in text.lower() or status in (502, 503, 504):
            raise HubUnavailable(hub, f"{where}: the hub is starting up or overloaded (HTTP {status})", status)
        if status >= 500:
            raise HubUnavailable(hub, f"{where}: HTTP {status} {_snippet(text)}", status)
        if status == 404 and path == "devices/all":
            raise HubProtocolError(
                hub,
                f"{where}: the hub has no Maker API app {self.cfg.app_id} (HTTP 404); check app_id: it is the number "
                "after /apps/api/ in the URLs Maker API shows",
                status,
            )
        if 300 <= status < 400:
            raise HubProtocolError(
                hub,
                f"{where}: the hub redirects (HTTP {status}) to {location!r}; "
                "is url the hub's own address (http:// or https:// as the hub serves it)?",
                status,
            )
        if status >= 400:
            raise HubProtocolError(hub, f"{where}: HTTP {status} {_snippet(text)}", status)
        try:
            return loads(text)
        except NotJson as exc:
            kind = "an HTML page" if text.lstrip()[:1] == "<" else f"malformed JSON ({exc})"
            raise HubProtocolError(hub, f"{where}: expected JSON, got {kind}: {_snippet(text)}", status) from None

    async def _read(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        if resp.content_length is not None and resp.content_length > MAX_BODY:
            raise HubProtocolError(self.cfg.name, f"{where}: answer of {resp.content_length} bytes is over {MAX_BODY}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > MAX_BODY:
                raise HubProtocolError(self.cfg.name, f"{where}: answer is over {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
