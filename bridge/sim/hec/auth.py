"""HEC authentication (§1.2): tokens and their settings, the Authorization header forms, query-string tokens."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from aiohttp import web


@dataclass(slots=True)
class Token:
    ack: bool = False  # useACK (§4)
    enabled: bool = True
    query_auth: bool = False  # allowQueryStringAuth (§1.2)


class AuthError(Exception):
    """Authentication failed with HEC ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def redact_auth(value: str) -> str:
    """An Authorization header value safe to record: the scheme only."""
    scheme, sep, _ = value.partition(" ")
    return f"{scheme} <redacted>" if sep else "<redacted>"


def token_from_header(auth: str) -> str | None:
    """The token in an Authorization header, or None when the header is malformed."""
    # "Splunk <token>", case-sensitive keyword ([3P] in §1.2; Vector matches it exactly too).
    if auth.startswith("Splunk "):
        token = auth[7:]
        return token or None
    scheme, _, rest = auth.partition(" ")
    # HTTP Basic with the token as password and any user name (§1.2). Auth schemes are
    # case-insensitive in HTTP, unlike the "Splunk" keyword above.
    if scheme.lower() == "basic" and rest:
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def authenticate(tokens: dict[str, Token], request: web.Request) -> Token:
    """§1.2: the token from the header (Splunk or Basic) or, when allowed, the query string; AuthError if none."""
    auth = request.headers.get("Authorization")
    if auth is not None:
        token = token_from_header(auth)
        if token is None:
            raise AuthError(3)  # malformed, incl. "Bearer" and lower-case "splunk" (§1.2)
        info = tokens.get(token)
        if info is None:
            raise AuthError(4)
        if not info.enabled:
            raise AuthError(1)
        return info
    query_token = request.query.get("token")
    if query_token is None:
        raise AuthError(2)
    info = tokens.get(query_token)
    if info is None:
        raise AuthError(4)
    if not info.enabled:
        raise AuthError(1)
    if not info.query_auth:
        raise AuthError(16)  # allowQueryStringAuth is off by default (§1.2)
    return info
