"""What the NATS sink and the JetStream source share: the connection options, connecting, and errors in plain words.

``url`` takes one server or several, comma-separated (``nats://a:4222,nats://b:4222``), as NATS clients do; the
client learns the rest of a cluster from the server it reached and moves to another node when one goes away.
Credentials come from secrets (``password_file``, ``token_file``) or a ``.creds`` file; TLS (``tls://`` or a ``tls:``
section) is verified by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import nats
import structlog
from nats.aio.client import Client as NatsClient
from pydantic import AfterValidator, field_validator, model_validator

from bridge.backoff import RateLimitedLog
from bridge.http import ssl_context
from bridge.options import Duration, Model, SecretField, TlsOptions, readable_file, shown_url

log = structlog.get_logger("bridge.nats")

# nats-py logs every failed reconnect with a traceback; our own lines say it once per change.
logging.getLogger("nats").setLevel(logging.CRITICAL)

# Connections being closed on purpose: their "disconnected" is not a problem worth a line.
_closing: weakref.WeakSet[NatsClient] = weakref.WeakSet()

# A stream or consumer name: NATS forbids whitespace, dots, wildcards and path separators in them.
NATS_NAME = r"^[A-Za-z0-9_-]{1,64}$"


def _servers(value: str) -> str:
    urls = [u.strip() for u in value.split(",") if u.strip()]
    if not urls:
        raise ValueError("expected nats://host:4222 (or several, comma-separated)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError(f"expected nats://host:4222 or tls://host:4222, got {shown_url(url)!r}")
        if parts.username or parts.password:
            raise ValueError("the url holds credentials; give username/password, token or credentials_file instead")
    return ",".join(urls)


class NatsOptions(Model):
    """How to reach a NATS server or cluster (mixed into the sink's and the source's config)."""

    url: Annotated[str, AfterValidator(_servers)]
    username: str | None = None
    password: SecretField | None = None
    token: SecretField | None = None
    # A NATS .creds file (JWT and NKey seed), as `nsc` writes them.
    credentials_file: Annotated[Path, AfterValidator(readable_file)] | None = None
    tls: TlsOptions = TlsOptions()
    connect_timeout: Duration = 5.0

    @field_validator("connect_timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be above 0s")
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> Any:
        if self.password is not None and self.username is None:
            raise ValueError("password is given without username")
        ways = [self.username is not None, self.token is not None, self.credentials_file is not None]
        if sum(ways) > 1:
            raise ValueError("give one of username/password, token or credentials_file")
        return self

    @property
    def servers(self) -> list[str]:
        return self.url.split(",")

    @property
    def shown(self) -> str:
        return ",".join(shown_url(u) for u in self.servers)


async def connect(options: NatsOptions, name: str, who: dict[str, str]) -> NatsClient:
    """A connection that, once made, reconnects for ever (the caller's operations fail meanwhile and are retried).

    Raises the client's errors (``nats.errors.NoServersError``, ``OSError``...) when no server answers now, after
    trying each server a few times.
    """
    rate_log = RateLimitedLog(log.bind(**who), window=300.0)
    tls = None
    if options.tls.ca_file is not None or not options.tls.verify or any(u.startswith("tls:") for u in options.servers):
        if not options.tls.verify:
            log.warning("TLS VERIFICATION IS OFF: the NATS server's certificate is not checked", **who)
        tls = ssl_context(options.tls)

    async def error_cb(exc: Exception) -> None:
        rate_log.warning(("nats", type(exc).__name__), "NATS connection problem", error=problem(exc, options))

    async def disconnected_cb() -> None:
        if client in _closing:
            return
        rate_log.warning("disconnected", "disconnected from NATS; reconnecting", url=options.shown)

    async def reconnected_cb() -> None:
        rate_log.forget("disconnected")
        log.info("reconnected to NATS", url=str(client.connected_url.netloc if client.connected_url else ""), **who)

    client = await nats.connect(
        servers=options.servers,
        name=name,
        user=options.username,
        password=options.password.get() if options.password is not None else None,
        token=options.token.get() if options.token is not None else None,
        user_credentials=str(options.credentials_file) if options.credentials_file else None,
        tls=tls,
        connect_timeout=max(1, round(options.connect_timeout)),
        allow_reconnect=True,
        # Bounded for the first connection (with -1 nats-py would try for ever before returning), unbounded after.
        max_reconnect_attempts=2,
        reconnect_time_wait=0.25,
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
    )
    client.options["max_reconnect_attempts"] = -1  # read at each reconnect: once connected, never give up
    return client


async def close(client: NatsClient) -> None:
    """Close ``client`` quietly (bounded; never raises)."""
    _closing.add(client)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await client.close()


def problem(exc: BaseException, options: NatsOptions) -> str:
    """One line for an error of the NATS client, never holding a secret."""
    kind = type(exc).__name__
    if isinstance(exc, nats.errors.NoServersError):
        text = f"no NATS server answered at {options.shown}"
    elif isinstance(exc, nats.errors.AuthorizationError):
        text = f"the NATS server at {options.shown} refused our credentials"
    elif isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        text = "no answer from NATS in time"
    elif isinstance(exc, nats.errors.NoRespondersError):
        text = "JetStream did not answer (no stream leader right now, or JetStream is not enabled)"
    elif isinstance(exc, nats.js.errors.APIError):
        text = f"JetStream refused: {exc.description or exc.code} (err_code {exc.err_code})"
    else:
        text = f"{kind}: {exc}" if str(exc) else kind
    for secret in (options.password, options.token):
        if secret is not None:
            text = text.replace(secret.get(), "***")
    return text


def subject_covers(pattern: str, subject: str) -> bool:
    """Whether the stream subject ``pattern`` takes every subject ``subject`` (itself maybe a wildcard) stands for."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return i < len(s)
        if i >= len(s):
            return False
        if s[i] == ">":
            return False
        if token != "*" and token != s[i]:
            return False
    return len(p) == len(s)
