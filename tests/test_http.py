"""What every HTTP client shares (bridge.http): Retry-After, secrets out of texts, transport errors in words."""

from __future__ import annotations

import ssl
import time
from email.utils import formatdate

import aiohttp
import pytest
import structlog
from aiohttp.client_reqrep import ConnectionKey

from bridge.http import connector_tls, parse_retry_after, redact, transport_problem
from bridge.options import TlsOptions


def test_retry_after_reads_seconds_and_dates() -> None:
    """Retry-After as seconds or an HTTP date; nonsense and negatives never become a wait."""
    assert parse_retry_after("7") == 7.0 and parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("nan") is None
    assert parse_retry_after("-3") == 0.0
    assert 55 <= (parse_retry_after(formatdate(time.time() + 60, usegmt=True)) or 0) <= 61


def test_query_secrets_are_blanked() -> None:
    """Tokens in a URL's query string never survive into an error text."""
    text = "GET http://hub/apps/api/12/devices/all?access_token=abc123&x=1 failed (token=zz9, api_key=q)"
    assert redact(text) == "GET http://hub/apps/api/12/devices/all?access_token=***&x=1 failed (token=***, api_key=***)"


def test_tls_is_verified_unless_switched_off_and_switching_it_off_is_loud() -> None:
    """https peers are verified by default; verify: false still encrypts but logs one loud warning naming the URL."""
    log = structlog.get_logger("test")
    with structlog.testing.capture_logs() as logs:
        assert connector_tls("http://hub.local", TlsOptions(verify=False), log) is True  # plain HTTP: nothing to do
        verified = connector_tls("https://hub.local", TlsOptions(), log)
        assert logs == []
        unverified = connector_tls("https://hub.local:8443", TlsOptions(verify=False), log)
    assert isinstance(verified, ssl.SSLContext) and verified.verify_mode == ssl.CERT_REQUIRED
    assert verified.check_hostname
    assert isinstance(unverified, ssl.SSLContext) and unverified.verify_mode == ssl.CERT_NONE
    (warning,) = logs
    assert warning["log_level"] == "warning" and "TLS VERIFICATION IS OFF" in warning["event"]
    assert warning["url"] == "https://hub.local:8443"


def _key() -> ConnectionKey:
    return ConnectionKey("127.0.0.1", 8088, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (TimeoutError(), "no answer from https://hec:8088 within 30s"),
        (
            aiohttp.ClientConnectorSSLError(
                _key(), ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
            ),
            "does not speak TLS on that port",
        ),
        (aiohttp.ClientConnectorError(_key(), ConnectionRefusedError(111, "Connection refused")), "Connection refused"),
        (aiohttp.ServerDisconnectedError(), "closed the connection without answering"),
    ],
)
def test_transport_errors_say_what_is_likely_wrong(exc: BaseException, says: str) -> None:
    """A timeout, https:// to a plain-HTTP port, a refused connection and a dropped one each read as what they are."""
    assert says in transport_problem(exc, "https://hec:8088", timeout=30)
