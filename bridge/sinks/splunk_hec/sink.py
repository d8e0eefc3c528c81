"""The Splunk HTTP Event Collector sink: one POST per batch, classified; indexer acknowledgement when asked.

Protocol facts come from the team reference ``shared/reference/splunk_hec.md`` ("§" numbers point there): one POST
to ``/services/collector/event`` per batch with ``Authorization: Splunk <token>`` (§1.2), the envelopes of
:mod:`.encoder`, the reply classified by :mod:`.classify`. With ``ack: true`` a batch is ``Delivered`` with an ack
future that :class:`~.acks.AckPoller` resolves from ``/services/collector/ack`` (§4); the delivery loop waits for it
and sends the batch again if it never comes. Concurrency, retries and splitting are the delivery loop's.

The token is read with ``Secret.get()`` on every request, so a rotated token file takes effect at once; it is never
put into a log line, an outcome reason or an exception text.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from bridge import __version__
from bridge.backoff import RateLimitedLog
from bridge.http import connector_tls, is_tls_problem, transport_problem
from bridge.journal import Record
from bridge.options import Secret
from bridge.sinks.base import Delivered, DeliveryOptions, Health, Hold, Outcome, Retry, Sink
from bridge.sinks.splunk_hec.acks import AckPoller
from bridge.sinks.splunk_hec.classify import (
    EVENT_PATH,
    Accepted,
    Reply,
    classify,
    classify_ack,
    classify_health,
    classify_token_probe,
)
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig
from bridge.sinks.splunk_hec.encoder import Encoder

log = structlog.get_logger("bridge.sinks.splunk_hec")

ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"
# The health check answers /healthz, so it must be quick even when the request timeout is long.
HEALTH_TIMEOUT = 10.0


def in_flight(config: SplunkHecSinkConfig) -> int:
    """Batches that may await confirmation at once: HEC's reply without ack, Splunk's indexer ack with it.

    Without ack, 2 keeps one request on the wire while the next batch is built. With ack, a batch waits a poll
    interval at least and up to minutes (§4 item 9) while a batch holds about max_wait of events, so many must be
    pending for the sink to keep up.
    """
    if config.max_in_flight is not None:
        return config.max_in_flight
    return 100 if config.ack else 2


class SplunkHecSink(Sink):
    """Delivers journal records to Splunk HEC. See the module docstring and docs/splunk.md."""

    type_name = "splunk_hec"
    Config = SplunkHecSinkConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config.name)
        self.config: SplunkHecSinkConfig = config
        assert config.token is not None  # the config model requires it
        self._token: Secret = config.token
        # Every token value this sink has sent (a rotated file changes it): blanked in every text it gives out.
        self._sent_tokens: set[str] = set()
        base = config.url
        self.event_url = base + EVENT_PATH
        self.ack_url = base + ACK_PATH
        self.health_url = base + HEALTH_PATH
        # §1.3: a GUID channel, made anew at every start. Sent on every request: harmless without ack.
        self.channel = str(uuid.uuid4())
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=config.request_timeout)
        self._health_timeout = aiohttp.ClientTimeout(total=min(config.request_timeout, HEALTH_TIMEOUT))
        self._log = log.bind(sink=config.name)
        self._rate_log = RateLimitedLog(self._log)
        self._encoder = Encoder(config)
        self.acks = AckPoller(config.name, config.ack_poll_interval, self._ack_request)

    @classmethod
    def delivery_options(cls, config: Any) -> DeliveryOptions:
        return dataclasses.replace(
            super().delivery_options(config),
            max_in_flight=in_flight(config),
            # One attempt of send(): the request itself plus a margin for building the body.
            send_timeout=config.request_timeout + 30.0,
            ack_timeout=config.ack_timeout,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def pending_acks(self) -> int:
        """Requests accepted by HEC whose indexing Splunk has not confirmed yet."""
        return self.acks.pending

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"sink {self.name}: start() after close()")
        if self._session is not None:
            return
        self.channel = str(uuid.uuid4())
        tls = connector_tls(self.config.url, self.config.tls, self._log)
        # unsafe=True keeps cookies from IP-address URLs too: a load balancer's sticky-session cookie is what keeps
        # ack polls on the HEC instance that holds the ack state (§4 item 10).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=8),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            raise_for_status=False,
            headers={"User-Agent": f"hubbridge/{__version__}"},
        )
        if self.config.ack:
            self.acks.start()

    async def close(self) -> None:
        await super().close()
        await self.acks.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _headers(self) -> dict[str, str] | str:
        """Request headers, or the reason the token cannot be read."""
        try:
            token = self._token.get()
        except OSError as exc:
            return f"cannot read the token file {self._token.path}: {exc.strerror or exc}"
        except UnicodeDecodeError:
            return f"the token file {self._token.path} is not UTF-8 text"
        if not token:
            return f"the token file {self._token.path} is empty"
        if any(c.isspace() or not c.isprintable() for c in token):
            # aiohttp refuses such a header (ValueError, not a ClientError); HEC tokens are one word (a GUID).
            where = f"the token file {self._token.path}" if self._token.path else "the token in the config"
            return f"{where} holds spaces, line breaks or control characters; a HEC token is one word"
        self._sent_tokens.add(token)
        return {
            "Authorization": f"Splunk {token}",
            "X-Splunk-Request-Channel": self.channel,
            "Content-Type": "application/json",
        }

    async def _request(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None, timeout: aiohttp.ClientTimeout
    ) -> Reply | str:
        """One request; the reply, or one line saying why there is none (never the token)."""
        session = self._session
        if session is None:
            return "the sink is not started"
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                return Reply(
                    resp.status, await resp.read(), resp.headers.get("Retry-After"), resp.headers.get("Location")
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            problem = transport_problem(exc, self.config.url, timeout.total)
            return ("tls:" if is_tls_problem(exc) else "") + problem

    def _scrub(self, text: str) -> str:
        """``text`` with every token this sink sent blanked: a server or proxy may echo the Authorization header."""
        for token in self._sent_tokens:
            if token in text:
                text = text.replace(token, "********")
        return text

    # ------------------------------------------------------------------ sending

    async def send(self, batch: Sequence[Record]) -> Outcome:
        self._check_open()
        outcome = await self._send(batch)
        if isinstance(outcome, Delivered):
            return outcome
        scrubbed = self._scrub(outcome.reason)
        return outcome if scrubbed == outcome.reason else dataclasses.replace(outcome, reason=scrubbed)

    async def _send(self, batch: Sequence[Record]) -> Outcome:
        if not batch:
            return Delivered()
        if self._session is None:
            return Retry("the sink is not started")
        headers = self._headers()
        if isinstance(headers, str):
            return Hold(headers)
        if self.config.ack and self.acks.state != "ok":
            # Before relying on acknowledgements, prove the token has them (one /ack request).
            held = await self._probe_ack(headers)
            if held is not None:
                return held
        body = self._encoder.build(batch)
        if self.config.gzip:
            headers["Content-Encoding"] = "gzip"
        reply = await self._request("POST", self.event_url, headers, body.data, self._timeout)
        if isinstance(reply, str):
            if reply.startswith("tls:"):
                return Hold(reply[4:])
            # Ambiguous (§5.5): HEC may have indexed the batch. Resending may duplicate (same ids), never lose.
            return Retry(reply)
        outcome = classify(reply, body.owners, body.parts, self.config)
        if not isinstance(outcome, Accepted):
            return outcome
        if outcome.warning is not None:
            self._rate_log.warning(
                "near-capacity",
                "HEC accepted the batch but warns it is near capacity",
                reply=self._scrub(outcome.warning),
            )
        if not self.config.ack:
            return Delivered()
        if outcome.ack_id is None:
            # Accepted, but with no ackId to confirm it (§5.1: Vector counts this as delivered too). Re-probe /ack
            # before the next batch: it says whether the token has ack at all (code 14).
            self.acks.state = "unknown"
            self._rate_log.error(
                "no-ackid",
                "HEC accepted a batch without an ackId although ack: true; this batch is not confirmed by the "
                "indexers. Enable indexer acknowledgement on the token, or set ack: false",
            )
            return Delivered()
        return Delivered(ack=self.acks.expect(outcome.ack_id))

    async def _probe_ack(self, headers: dict[str, str]) -> Outcome | None:
        """Ask /ack whether the token has acknowledgement at all. None means go on sending."""
        state, detail = await self._ack_request(headers, self.acks.ids())
        if state == "ok":
            assert isinstance(detail, dict)
            self.acks.resolve(detail)
            return None
        assert isinstance(detail, str)
        if state == "error":
            return Retry(detail)
        return Hold(detail)

    async def _ack_request(self, headers: dict[str, str] | None, ids: list[int]) -> tuple[str, dict[str, Any] | str]:
        """POST /ack with ``ids`` (§4 item 4); what :func:`~.classify.classify_ack` makes of the reply."""
        if headers is None:
            got = self._headers()
            if isinstance(got, str):
                return "error", got
            headers = got
        reply = await self._request("POST", self.ack_url, headers, json.dumps({"acks": ids}).encode(), self._timeout)
        if isinstance(reply, str):
            return "error", reply.removeprefix("tls:")
        state, detail = classify_ack(reply, self.name)
        if state in ("ok", "disabled", "missing"):
            self.acks.state = state
        return state, detail if isinstance(detail, dict) else self._scrub(detail)

    # ------------------------------------------------------------------ health (at start and /healthz)

    async def health(self) -> Health:
        """Prove what sending needs, as one line: the endpoint, the token and (with ``ack: true``) the ack endpoint.

        The detail starts with what is wrong: "bad token", "unhealthy" (HEC up, queues full), "unreachable" (no
        connection, or TLS), "unexpected answer" (not HEC's endpoints at that URL), "ack misconfigured" (code 14,
        or no /ack at all). A receiver without /health is checked by the token probe alone. The runtime logs the
        detail once at start and /healthz shows it; this method itself does not log, so /healthz polls stay quiet.
        """
        health = await self._health()
        return Health(health.ok, self._scrub(health.detail))

    async def _health(self) -> Health:
        url = self.config.url
        headers = self._headers()
        if isinstance(headers, str):
            return Health(False, f"bad token: {headers}")
        reply = await self._request("GET", self.health_url, headers, None, self._health_timeout)
        if isinstance(reply, str):
            return Health(False, f"unreachable: {reply.removeprefix('tls:')}")
        ok, note = classify_health(reply, url)
        if not ok:
            return Health(False, note)
        # /health does not check the token everywhere (and some receivers have none); an empty /event request
        # does (code 5 "No data"), and proves the event endpoint is there.
        probe = await self._request("POST", self.event_url, headers, b"", self._health_timeout)
        if isinstance(probe, str):
            return Health(False, f"unreachable: {probe.removeprefix('tls:')}")
        ok, why = classify_token_probe(probe, url)
        if not ok:
            return Health(False, why)
        if self.config.ack:
            state, detail = await self._ack_request(headers, [])
            assert isinstance(detail, str) or state == "ok"
            if state in ("disabled", "missing"):
                return Health(False, f"ack misconfigured: {detail}")
            if state == "token":
                return Health(False, f"bad token: {detail}")
            if state == "moved":
                return Health(False, f"unexpected answer from {url}: {detail}")
            if state != "ok":
                return Health(False, f"ack unknown: {detail}")
        detail = f"HEC at {url} is healthy" + (" (indexer acknowledgement on)" if self.config.ack else "")
        return Health(True, detail + (f"; {note}, token checked with an empty event post" if note else ""))
