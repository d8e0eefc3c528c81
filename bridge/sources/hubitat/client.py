"""Maker API over HTTP (hubitat.md 1.1-1.3): bounded concurrency, a timeout on every request, errors in plain words.

Maker API answers JSON with ``Content-Type: text/html``, so bodies are parsed whatever the header says; a bad
token is an XML 401; a wrong app id is a bare 404. Error texts never carry the token, although it travels in the
query string.

Through the cloud relay (``https://cloud.hubitat.com/api/<hubUID>/apps/<id>/...``, hubitat.md 1.1 and 3) the relay
answers some requests itself. Which statuses it uses is not documented [INF]: 429 (rate limit, with Retry-After),
502/503 (the hub is not connected to the cloud) and 504/408 (the hub did not answer the relay in time) are taken
as the relay's own, each told apart in its own line; the hub's own pages (a 500, "starting up") pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from bridge.errors import HubAuthError, HubProtocolError, HubUnavailable
from bridge.events import shorten
from bridge.http import parse_retry_after, transport_problem
from bridge.jsontext import NotJson, loads
from bridge.metrics import hub_request
from bridge.sources.hubitat.config import HubitatConfig
from bridge.sources.hubitat.storm import StormWatch

# What the cloud relay answers itself [INF] (module docstring): never the hub's own verdict.
RELAY_STATUSES = frozenset({408, 429, 502, 503, 504})
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

    def __init__(self, cfg: HubitatConfig, session: aiohttp.ClientSession, storm: StormWatch | None = None) -> None:
        self.cfg = cfg
        self.session = session
        self.storm = storm
        self.base = cfg.maker_base
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
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
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
        starting = "starting up" in text.lower()
        relay = self.cfg.cloud and not starting and status in RELAY_STATUSES
        if self.storm is not None and not relay:
            await self.storm.answered(status, starting=starting)  # a run of 5xx is the hub struggling
        if relay:
            self._relay_error(where, status, text, retry_after)
        if starting or status in (502, 503, 504):
            raise HubUnavailable(hub, f"{where}: the hub is starting up or overloaded (HTTP {status})", status)
        if status >= 500:
            raise HubUnavailable(hub, f"{where}: HTTP {status} {_snippet(text)}", status)
        if status == 404 and path == "devices/all" and self.cfg.cloud:
            raise HubProtocolError(
                hub,
                f"{where}: no Maker API app {self.cfg.app_id} answers through the cloud relay for hub "
                f"{self.cfg.hub_uid} (HTTP 404); check app_id and the hub UID in url, and that Maker API's "
                '"Allow Access via Remote / Cloud" is on',
                status,
            )
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

    def _relay_error(self, where: str, status: int, text: str, retry_after: float | None) -> None:
        """Raise the line for an answer the cloud relay gave itself (not the hub), if this is one."""
        hub = self.cfg.name
        said = f" {_snippet(text, 60)}" if text.strip() else ""
        if status == 429:
            wait = f"; waiting {retry_after:g}s as it asks" if retry_after is not None else ""
            raise HubUnavailable(
                hub,
                f"{where}: the Hubitat cloud relay is rate-limiting this bridge (HTTP 429{said}){wait}; "
                "a longer poll_interval keeps under its limit",
                status,
                retry_after,
            )
        if status in (502, 503):
            raise HubUnavailable(
                hub,
                f"{where}: the Hubitat cloud relay cannot reach hub {self.cfg.hub_uid} (HTTP {status}{said}): the hub "
                "is offline or not connected to the Hubitat cloud",
                status,
            )
        if status in (504, 408):
            raise HubUnavailable(
                hub,
                f"{where}: the Hubitat cloud relay timed out waiting for hub {self.cfg.hub_uid} (HTTP {status}{said}); "
                "the hub or its internet connection is slow",
                status,
            )

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
