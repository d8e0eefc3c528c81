"""How the bridge authenticates to a Homey: an API key, or the Athom cloud login (homey.md 6).

* :class:`ApiKeyAuth`: ``Authorization: Bearer <key>``, no login step; a 401/403 is final for that key. The key is
  re-read from ``api_key_file`` on every call, so a new key takes effect without a restart.
* :class:`CloudAuth`: the refresh token ``hubbridge auth homey`` stored in ``state_dir`` gives an access token,
  that a delegation JWT (audience homey), that a Homey session (``POST /api/manager/users/login``). The session is
  renewed on any 401 (one renewal shared by every caller that saw the same stale token); a rotated refresh token is
  written (atomically, mode 0600) before it is used. The Homey's addresses are tried in the reference's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp

from bridge.errors import HubAuthError, HubUnavailable
from bridge.events import shorten
from bridge.http import transport_problem
from bridge.options import KNOWN_SECRETS
from bridge.sources.homey.api import Auth
from bridge.sources.homey.cloud import AthomCloud, RevokedLogin, address_rank, homey_addresses
from bridge.sources.homey.config import HomeyConfig

__all__ = ["ApiKeyAuth", "Auth", "CloudAuth", "TokenStore", "login_file"]

# Renew the access token this long before it expires, so a call never carries one that dies in flight.
ACCESS_MARGIN = 120.0


def login_file(state_dir: Path, hub: str) -> Path:
    """Where ``hubbridge auth homey`` keeps the cloud login of hub ``hub``."""
    return state_dir / f"homey-{hub}.login.json"


class TokenStore:
    """The stored cloud login of one hub: a small JSON file, mode 0600, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read the stored Homey login {self.path}: {exc}") from None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        """Write ``data`` so that a crash leaves either the old file or the new one, never half of one."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class ApiKeyAuth(Auth):
    """A Personal Access Token of a Homey Pro 2023 / Pro mini / Self-Hosted Server."""

    what = "API key"

    def __init__(self, cfg: HomeyConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(cfg, session)
        assert cfg.api_key is not None
        self.secret = cfg.api_key

    async def token(self) -> str:
        await self.locate([(self.cfg.url, max(2.0, self.cfg.request_timeout))])
        try:
            return self.secret.get()
        except OSError as exc:
            raise HubAuthError(self.hub, f"cannot read api_key_file {self.secret.path}: {exc}") from None

    async def renew(self, stale: str) -> bool:
        return False  # an API key is not renewed: a 401 is final for it (homey.md 2)

    def fix(self, scope: str) -> str:
        where = f"write a new key to {self.secret.path} (read again on the next try)" if self.secret.path else ""
        return f"create a key with at least {scope} (Homey Web App > Settings > API Keys) and give it as api_key" + (
            f", or {where}" if where else ""
        )


class CloudAuth(Auth):
    """The Athom cloud route, from the login ``hubbridge auth homey`` stored."""

    what = "cloud session"

    def __init__(self, cfg: HomeyConfig, session: aiohttp.ClientSession, state_dir: Path) -> None:
        super().__init__(cfg, session)
        self.store = TokenStore(login_file(state_dir, cfg.name))
        self.again = f"run `hubbridge auth homey -c <config> --hub {cfg.name}` again to log in"
        self._session: str | None = None
        self._access: str | None = None
        self._access_until = 0.0
        self._lock = asyncio.Lock()
        self._addresses: list[tuple[str, float]] = []
        self._scrubbed: dict[str, str] = {}
        self.renewals = 0

    def fix(self, scope: str) -> str:
        return f"the Homey user must allow {scope}; {self.again}"

    def _scrub(self, what: str, token: str) -> None:
        """Scrub ``token`` from any log text (bridge.logs), as every configured secret; forget the one it replaces."""
        old = self._scrubbed.get(what)
        if old is not None and old != token:
            KNOWN_SECRETS.discard(old)
        KNOWN_SECRETS.add(token)
        self._scrubbed[what] = token

    def _login(self) -> dict[str, Any]:
        try:
            data = self.store.load()
        except OSError as exc:
            raise HubAuthError(self.hub, f"{exc}; {self.again}") from None
        if not data or not isinstance(data.get("refresh_token"), str):
            raise HubAuthError(
                self.hub,
                f"no api_key and no stored cloud login ({self.store.path}); give api_key, or "
                f"run `hubbridge auth homey -c <config> --hub {self.hub}` once",
            )
        return data

    def _cloud(self, data: dict[str, Any]) -> AthomCloud:
        cloud = self.cfg.cloud
        client_id = cloud.client_id or data.get("client_id")
        secret = cloud.client_secret.get() if cloud.client_secret else data.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            raise HubAuthError(self.hub, f"the stored cloud login has no OAuth client; {self.again}")
        return AthomCloud(
            self.session,
            api_url=cloud.api_url,
            client_id=client_id,
            client_secret=secret,
            hub=self.hub,
            timeout=self.cfg.request_timeout,
        )

    async def token(self) -> str:
        if self._session is None:
            async with self._lock:
                if self._session is None:
                    await self._new_session()
        elif not self.located:
            # The address in use stopped answering; a session works on every address of the Homey (homey.md 6.2).
            await self.locate(self._addresses)
        assert self._session is not None
        return self._session

    async def renew(self, stale: str) -> bool:
        async with self._lock:
            if self._session is not None and self._session != stale:
                return True  # another caller renewed it meanwhile
            self._session = None
            await self._new_session()
        return True

    async def _access_token(self, cloud: AthomCloud, data: dict[str, Any], force: bool) -> str:
        if self._access is not None and not force and time.time() < self._access_until - ACCESS_MARGIN:
            return self._access
        tokens = await cloud.refresh(data["refresh_token"], self.again)
        if tokens.refresh_token != data["refresh_token"]:
            # The old refresh token may stop working now: the new one is on disk before anything uses it.
            data["refresh_token"] = tokens.refresh_token
            try:
                self.store.save(data)
            except OSError as exc:
                raise HubAuthError(
                    self.hub, f"cannot store the renewed cloud login in {self.store.path}: {exc.strerror or exc}"
                ) from None
        self._scrub("access", tokens.access_token)
        self._scrub("refresh", tokens.refresh_token)
        self._access, self._access_until = tokens.access_token, tokens.expires_at
        return tokens.access_token

    async def _new_session(self) -> None:
        data = self._login()
        cloud = self._cloud(data)
        jwt = await cloud.delegation(await self._access_token(cloud, data, force=False))
        if jwt is None:  # the access token died early: one refresh, then it must work
            jwt = await cloud.delegation(await self._access_token(cloud, data, force=True))
            if jwt is None:
                raise RevokedLogin(self.hub, f"the Athom cloud refuses fresh access tokens; {self.again}")
        homey = data.get("homey") if isinstance(data.get("homey"), dict) else {}
        assert isinstance(homey, dict)
        if not self.homey_id and isinstance(homey.get("id"), str):
            self.homey_id = homey["id"]
        self._addresses = self._candidates(homey)
        await self.locate(self._addresses)
        self._session = await self._hub_login(jwt)
        self._scrub("session", self._session)
        self.renewals += 1

    def _candidates(self, homey: dict[str, Any]) -> list[tuple[str, float]]:
        found = homey_addresses(homey)
        if all(url != self.cfg.url for url, _ in found):
            # The configured address takes its place in the reference's order (LAN, forwarded, cloud).
            rank = address_rank(self.cfg.url)
            found.insert(min(rank, len(found)), (self.cfg.url, max(2.0, self.cfg.request_timeout)))
        return found

    async def _hub_login(self, jwt: str) -> str:
        url = f"{self.base_url}/api/manager/users/login"
        try:
            async with self.session.post(
                url,
                json={"token": jwt},
                headers={"X-Homey-ID": self.homey_id} if self.homey_id else None,
                timeout=aiohttp.ClientTimeout(total=self.cfg.request_timeout),
                allow_redirects=False,
            ) as resp:
                text = (await resp.content.read(65536)).decode("utf-8", "replace")
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            problem = transport_problem(exc, self.base_url, self.cfg.request_timeout)
            raise HubUnavailable(self.hub, f"POST /api/manager/users/login: {problem}") from None
        try:
            token = json.loads(text)
        except ValueError:
            token = None
        if status in (401, 403):
            raise HubAuthError(
                self.hub, f"the Homey refused the cloud login (HTTP {status}: {shorten(text, 120)}); {self.again}"
            )
        if status != 200 or not isinstance(token, str) or not token:
            raise HubUnavailable(self.hub, f"POST /api/manager/users/login: unexpected answer (HTTP {status})", status)
        return token
