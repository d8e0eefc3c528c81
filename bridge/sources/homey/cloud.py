"""The Athom cloud (api.athom.com, homey.md 6.2): OAuth tokens, the user's Homeys, delegation tokens.

Steps A-D of the cloud route. ``/oauth2/token`` takes the client credentials as HTTP Basic auth and the grant
form-encoded; a refresh may hand out a new refresh token (the old one then stops working), so the caller stores
what :meth:`AthomCloud.refresh` returns before it uses it. ``/delegation/token?audience=homey`` answers a JSON
string, the JWT the Homey exchanges for a session (step E, in ``auth``).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

from bridge.errors import HubAuthError, HubUnavailable
from bridge.http import transport_problem
from bridge.jsontext import NotJson, loads
from bridge.sources.homey.api import error_text, read_body

# The Homey addresses /user/me gives, in the order homey-api tries them (homey.md 1.2), each with its ping timeout.
ADDRESS_ORDER = (
    ("localUrlSecure", 1.2),
    ("localUrl", 1.0),
    ("remoteUrlForwarded", 2.0),
    ("remoteUrl", 5.0),
)


class RevokedLogin(HubAuthError):
    """The refresh token (or the code, or the password) was refused: only a new ``hubbridge auth homey`` helps."""


@dataclass(slots=True)
class Tokens:
    """An OAuth answer: the access token, when it expires (epoch seconds), and the refresh token to keep."""

    access_token: str
    expires_at: float
    refresh_token: str


class AthomCloud:
    """Calls to the Athom cloud API for one OAuth client."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        client_id: str,
        client_secret: str,
        hub: str = "-",
        timeout: float = 15.0,
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.hub = hub
        self.timeout = timeout

    async def _call(
        self, method: str, path: str, *, bearer: str | None = None, form: dict[str, str] | None = None
    ) -> tuple[int, Any, str]:
        url = f"{self.api_url}{path}"
        if bearer:
            headers = {"Authorization": f"Bearer {bearer}"}
        else:
            pair = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode("ascii")
            headers = {"Authorization": f"Basic {pair}"}
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                data=form,
                json=None if form is not None or method == "GET" else {},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as resp:
                text = (await read_body(resp, self.hub, path)).decode("utf-8", "replace")
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            problem = transport_problem(exc, self.api_url, self.timeout)
            raise HubUnavailable(self.hub, f"Athom cloud {method} {path}: {problem}") from None
        try:
            body = loads(text)
        except NotJson:
            body = None
        if status >= 500:
            raise HubUnavailable(self.hub, f"Athom cloud {method} {path}: HTTP {status} {error_text(text)}", status)
        return status, body, text

    def _tokens(self, status: int, body: Any, text: str, what: str, again: str) -> Tokens:
        if status in (400, 401, 403):
            said = error_text(text)
            raise RevokedLogin(self.hub, f"the Athom cloud refused the {what} (HTTP {status}: {said}); {again}")
        if (
            status != 200
            or not isinstance(body, dict)
            or not isinstance(body.get("access_token"), str)
            or not isinstance(body.get("refresh_token"), str)
        ):
            raise HubUnavailable(self.hub, f"Athom cloud /oauth2/token: unexpected answer (HTTP {status})", status)
        expires = body.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else 3600.0
        return Tokens(body["access_token"], time.time() + lifetime, body["refresh_token"])

    async def exchange_code(self, code: str, redirect_uri: str) -> Tokens:
        """Step B with an authorization code (valid for 30 s)."""
        status, body, text = await self._call(
            "POST",
            "/oauth2/token",
            form={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        )
        return self._tokens(status, body, text, "authorization code", "codes are valid for 30 seconds; try again")

    async def refresh(self, refresh_token: str, again: str) -> Tokens:
        """Step B with the refresh token. The answer's refresh token replaces the old one (it may rotate)."""
        status, body, text = await self._call(
            "POST", "/oauth2/token", form={"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        return self._tokens(status, body, text, "stored login (refresh token)", again)

    async def user(self, access_token: str) -> dict[str, Any]:
        """Step C: ``/user/me`` with the user's Homeys."""
        status, body, text = await self._call("GET", "/user/me", bearer=access_token)
        if status != 200 or not isinstance(body, dict):
            raise HubAuthError(self.hub, f"Athom cloud /user/me: HTTP {status} {error_text(text)}")
        return body

    async def delegation(self, access_token: str) -> str | None:
        """Step D: a delegation JWT for audience homey; None when the access token is no longer valid (401)."""
        status, body, text = await self._call("POST", "/delegation/token?audience=homey", bearer=access_token)
        if status == 401:
            return None
        if status != 200 or not isinstance(body, str) or not body:
            raise HubAuthError(self.hub, f"Athom cloud /delegation/token: HTTP {status} {error_text(text)}")
        return body


async def password_code(
    session: aiohttp.ClientSession,
    *,
    accounts_url: str,
    client_id: str,
    redirect_uri: str,
    email: str,
    password: str,
    timeout: float = 15.0,
) -> str:
    """The headless login of homey.md 6.2 (step A without a browser): an authorization code for email/password.

    ``POST <accounts>/login`` gives a user token; ``/oauth2/authorise?...&user_token=`` answers 302 to the
    redirect URI with ``code``. Raises :class:`RevokedLogin` when the account refuses the credentials.
    """
    base = accounts_url.rstrip("/")
    limit = aiohttp.ClientTimeout(total=timeout)
    async with session.post(
        f"{base}/login", data={"email": email, "password": password, "otptoken": ""}, timeout=limit
    ) as resp:
        text = (await resp.content.read(65536)).decode("utf-8", "replace")
        if resp.status != 200:
            raise RevokedLogin("-", f"Athom accounts refused the login (HTTP {resp.status}: {error_text(text)})")
    try:
        user_token = loads(text).get("token")
    except (NotJson, AttributeError):
        user_token = None
    if not isinstance(user_token, str):
        raise RevokedLogin("-", "Athom accounts answered the login without a token")
    query = urlencode(
        {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "user_token": user_token}
    )
    async with session.get(f"{base}/oauth2/authorise?{query}", allow_redirects=False, timeout=limit) as resp:
        location = resp.headers.get("Location", "")
        status = resp.status
    code = parse_qs(urlsplit(location).query).get("code", [""])[0]
    if status not in (301, 302, 303) or not code:
        raise RevokedLogin("-", f"Athom accounts did not hand out an authorization code (HTTP {status})")
    return code


def authorise_url(accounts_url: str, client_id: str, redirect_uri: str) -> str:
    """Where a user logs in with a browser (step A); the code comes back in the redirect."""
    query = urlencode({"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code"})
    return f"{accounts_url.rstrip('/')}/oauth2/authorise?{query}"


def homey_addresses(homey: dict[str, Any]) -> list[tuple[str, float]]:
    """The addresses of one Homey of ``/user/me``, in the order to try them, with their ping timeouts."""
    out: list[tuple[str, float]] = []
    for key, timeout in ADDRESS_ORDER:
        value = homey.get(key)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            out.append((value.rstrip("/"), timeout))
    return out


def address_rank(url: str) -> int:
    """Where a configured ``url`` falls in the reference order: homeylocal.com, a LAN address, forwarded, cloud."""
    host = urlsplit(url).hostname or ""
    if host.endswith(".homey.homeylocal.com"):
        return 2 if urlsplit(url).port is not None else 0
    if host.endswith(".connect.athom.com"):
        return 3
    return 1
