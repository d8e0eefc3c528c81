"""The webhook relay sink: each change (or a batch of them) POSTed as JSON, signed by Standard Webhooks.

The sink is its encoding (:meth:`WebhookSink.encode`: the contract object exactly as the journal stored it, or a
JSON array of them) and its outcome table (:mod:`.classify`). Concurrency (``max_in_flight``, in order per device
and attribute), retries, splitting, dead letters and ``max_retry_time`` are the delivery loop's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from bridge import __version__
from bridge.http import connector_tls, is_tls_problem, transport_problem
from bridge.journal import Record
from bridge.options import Secret, shown_url
from bridge.sinks.base import Delivered, DeliveryOptions, Health, Hold, Outcome, Retry, Sink
from bridge.sinks.webhook.classify import classify, gone_reason
from bridge.sinks.webhook.config import WebhookSinkConfig
from bridge.sinks.webhook.signing import batch_id, secret_key, sign

log = structlog.get_logger("bridge.sinks.webhook")


class WebhookSink(Sink):
    """Delivers journal records to an HTTP endpoint. See docs/webhooks.md."""

    type_name = "webhook"
    Config = WebhookSinkConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config.name)
        self.config: WebhookSinkConfig = config
        self.url = config.url
        self._shown = shown_url(config.url)
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._log = log.bind(sink=config.name)
        # Set by a 410: the receiver removed the hook. Nothing is sent until a restart with a fixed config.
        self.gone = False
        self.requests = 0

    @classmethod
    def delivery_options(cls, config: Any) -> DeliveryOptions:
        return DeliveryOptions(
            max_events=config.max_events if config.batch else 1,
            max_bytes=config.max_bytes,
            max_wait=config.max_wait if config.batch else 0.0,
            retry_initial=config.retry.initial,
            retry_max=config.retry.max,
            max_in_flight=config.max_in_flight,
            send_timeout=config.timeout + 10.0,
            max_retry_time=config.max_retry_time,
            ordered_keys=config.max_in_flight > 1,
        )

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"sink {self.name}: start() after close()")
        if self._session is not None:
            return
        if self.config.secret is None:
            self._log.warning("webhook requests are unsigned (no secret configured)", url=self._shown)
        tls = connector_tls(self.url, self.config.tls, self._log)
        # One keep-alive connection per request in flight; aiohttp reuses them across requests.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=self.config.max_in_flight, keepalive_timeout=60),
            raise_for_status=False,
            headers={"User-Agent": f"hubbridge/{__version__}"},
        )

    async def close(self) -> None:
        await super().close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def health(self) -> Health:
        # No request: a webhook has no side-effect-free endpoint, and a probe POST would trigger a flow. Check the
        # secret instead, which would otherwise only fail at the first event.
        keys = self._keys()
        if isinstance(keys, str):
            return Health(False, keys)
        signed = "signed" if keys else "UNSIGNED (no secret)"
        return Health(
            True,
            f"posting to {self._shown}, {signed}, " + ("batches" if self.config.batch else "one event per request"),
        )

    def _keys(self) -> list[bytes] | str:
        """The signing keys, newest first, or why they cannot be read (never the secret itself)."""
        keys = []
        for what, secret in (("secret", self.config.secret), ("previous_secret", self.config.previous_secret)):
            if secret is None:
                continue
            where = f"{what} file {secret.path}" if secret.path else what
            try:
                keys.append(secret_key(secret.get()))
            except OSError as exc:
                return f"cannot read the {where}: {exc.strerror or exc}"
            except ValueError as exc:
                return f"the {where} of sink {self.name} is not usable: {exc}"
        return keys

    def encode(self, batch: Sequence[Record]) -> tuple[str, bytes]:
        """The message id and body of one request: one contract object, or a JSON array of them."""
        ids = [r.id for r in batch]
        if self.config.batch:
            return batch_id(ids), ("[" + ",".join(r.body for r in batch) + "]").encode("utf-8")
        return batch_id(ids), batch[0].body.encode("utf-8")

    def _headers(self, msg_id: str, body: bytes) -> dict[str, str] | str:
        keys = self._keys()
        if isinstance(keys, str):
            return keys
        try:
            headers = {name: value.get() for name, value in self.config.headers.items()}
        except OSError as exc:
            return f"cannot read a header value's file: {exc.strerror or exc}"
        if any(c in v for v in headers.values() for c in "\r\n\0"):
            return "a header value (from its file) holds a line break or NUL; give it on one line"
        headers["Content-Type"] = "application/json"
        headers["webhook-id"] = msg_id
        if keys:
            timestamp = int(time.time())
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(keys, msg_id, timestamp, body)
        return headers

    async def send(self, batch: Sequence[Record]) -> Outcome:
        self._check_open()
        if not batch:
            return Delivered()
        if self.gone:
            return Hold(gone_reason(self.url))
        session = self._session
        if session is None:
            return Retry("the sink is not started")
        msg_id, body = self.encode(batch)
        headers = self._headers(msg_id, body)
        if isinstance(headers, str):
            return Hold(headers)
        self.requests += 1
        try:
            async with session.request(
                self.config.method, self.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                reply = await resp.read()
                outcome = classify(
                    resp.status, reply, self.url, resp.headers.get("Retry-After"), resp.headers.get("Location")
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            problem = transport_problem(exc, self._shown, self.config.timeout)
            return Hold(problem) if is_tls_problem(exc) else Retry(problem)
        if isinstance(outcome, Hold) and outcome.reason == gone_reason(self.url):
            self.gone = True
            self._log.error("the webhook receiver answered 410 Gone: sink disabled, its backlog kept", url=self._shown)
        return self._scrub(outcome)

    def _scrub(self, outcome: Outcome) -> Outcome:
        """A receiver may echo a header (a token) into its error body: blank every header value in the reason."""
        reason = getattr(outcome, "reason", None)
        if not reason:
            return outcome
        clean = reason
        for value in self.config.headers.values():
            text = value.get() if isinstance(value, Secret) else str(value)
            if text and text in clean:
                clean = clean.replace(text, "********")
        return outcome if clean == reason else dataclasses.replace(outcome, reason=clean)
