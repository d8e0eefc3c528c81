"""What every HTTP client of the bridge shares: the TLS context, Retry-After, and transport errors in plain words.

Sources (hub APIs) and sinks (HEC, webhooks) all talk HTTP through aiohttp; the same mistakes (``https://`` to a
plain-HTTP port, an untrusted certificate, a refused connection) must read the same everywhere, say what is likely
wrong, and never carry a token from a URL's query string.
"""

from __future__ import annotations

import math
import re
import ssl
import time
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from bridge.options import TlsOptions

_QUERY_SECRET = re.compile(r"(access_token|token|api_key|key|secret|password)=[^&\s'\",;)]*", re.IGNORECASE)
# What OpenSSL says when the other side answered the TLS hello with something that is not TLS (plain HTTP).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "packet length too long")


def ssl_context(tls: TlsOptions) -> ssl.SSLContext:
    """Verification on by default (system CAs, or ``ca_file`` instead); ``verify: false`` turns it off."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connector_tls(url: str, tls: TlsOptions, log: Any) -> ssl.SSLContext | bool:
    """What aiohttp's connector takes as ``ssl`` for ``url``; one loud warning when verification is off."""
    if not url.startswith("https:"):
        return True
    if not tls.verify:
        log.warning(
            "TLS VERIFICATION IS OFF: the server's certificate is not checked, so anyone on the network path can "
            "read the token and the events. Use tls.ca_file instead of verify: false",
            url=url,
        )
    return ssl_context(tls)


def parse_retry_after(value: str | None) -> float | None:
    """RFC 9110 ``Retry-After``: delta-seconds or an HTTP-date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def redact(text: str) -> str:
    """``text`` with every ``token=...``-style query value blanked (aiohttp puts whole URLs into its errors)."""
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def is_tls_problem(exc: BaseException) -> bool:
    """Whether ``exc`` is about TLS (certificate or handshake): configuration, not a passing outage."""
    return isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError)


def transport_problem(exc: BaseException, url: str, timeout: float | None = None) -> str:
    """One line saying why a request to ``url`` failed below HTTP, and what is likely wrong."""
    if isinstance(exc, TimeoutError):
        return f"no answer from {url} within {timeout:g}s" if timeout else f"no answer from {url} in time"
    text = redact(str(exc) or type(exc).__name__)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = redact(str(getattr(exc, "certificate_error", exc)))
        return (
            f"the TLS certificate of {url} is not trusted ({cert}); give the CA that signed it as tls.ca_file "
            "(tls.verify: false only for tests)"
        )
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        if any(marker in text for marker in _NOT_TLS):
            return (
                f"{url} does not speak TLS on that port (it answered the TLS handshake with plain HTTP); "
                "use http:// for it, or the port where it serves https"
            )
        return f"TLS handshake with {url} failed: {text}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve the host of {url}: {text}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror if exc.os_error is not None and exc.os_error.strerror else text
        return f"cannot connect to {url}: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{url} closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"{url} sent a broken answer ({text})"
    return f"request to {url} failed: {type(exc).__name__}: {text}"
