"""HTTP responses built the way the hub builds them: its headers, chunked bodies, error and starting-up pages."""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Final

from aiohttp import web

from bridge.sim.hubitat.fixtures import fixture_text

TEXT_HTML: Final = "text/html;charset=utf-8"  # ref §1.1 / §7: the hub labels JSON as text/html
APPLICATION_JSON: Final = "application/json;charset=utf-8"
STARTING_UP_TEXT: Final = "Your hub is starting up"  # ref §4 "Monitoring practice", §5.10


async def hub_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook. ref §1.1: no Server header, a HUBSESSION cookie on every response, Expires
    in 1970."""
    response.headers.popall("Server", None)
    if response.status != 101:
        response.headers["Expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
        response.headers.add("Set-Cookie", f"HUBSESSION={uuid.uuid4()}; Path=/")


def body(data: str | bytes, content_type: str, status: int = 200) -> web.Response:
    """A hub response: ``data`` (text is UTF-8 encoded) with ``content_type``, chunked (ref §1.1: no
    Content-Length)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    resp = web.Response(body=raw, status=status, headers={"Content-Type": content_type})
    resp.enable_chunked_encoding()
    return resp


def error_page(status: int) -> web.Response:
    """The hub's HTML error page for ``status``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    text = (
        f"<!DOCTYPE html><html><head><title>Error {status}</title></head>"
        f"<body><h2>HTTP ERROR {status}</h2><p>{phrase}</p></body></html>"
    )
    return body(text, TEXT_HTML, status)


def not_found() -> web.Response:
    return error_page(404)


def starting_up_page(status: int) -> web.Response:
    """What every endpoint answers while the hub boots (ref §4), with HTTP ``status``."""
    text = (
        "<!DOCTYPE html><html><head><title>Hubitat Elevation</title></head>"
        f"<body><h1>{STARTING_UP_TEXT}</h1><p>Please wait...</p></body></html>"
    )
    return body(text, TEXT_HTML, status)


def invalid_token() -> web.Response:
    """error_invalid_token.xml verbatim (ref §1.1): XML, not JSON, with HTTP 401."""
    return body(fixture_text("error_invalid_token.xml").strip(), "application/xml;charset=UTF-8", 401)
