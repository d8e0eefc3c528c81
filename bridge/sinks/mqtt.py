"""The MQTT sink (``type: mqtt``): one QoS 1 publish per event, the broker's PUBACK as the delivery confirmation.

Each event goes to the topic its template gives (default ``hubbridge/{hub}/{device}/{attribute}``) with the
contract object (``payload: event``) or just its value as JSON (``payload: value``) and, as MQTT 5 user property
``event_id``, its id, so a subscriber can drop the repeats an at-least-once delivery brings. A batch is published
at once (up to ``max_inflight`` messages awaiting PUBACK) and is delivered only when every PUBACK arrived; the
delivery loop moves the cursor on nothing less. The connection is a persistent session (clean start off, a session
expiry interval), so the broker keeps what it queued for this client across a reconnect; whatever had no PUBACK
when the connection dropped is published again from the journal, with the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator, model_validator

from bridge.events import dumps
from bridge.http import ssl_context
from bridge.journal import Record
from bridge.options import (
    BatchOptions,
    Duration,
    Name,
    RetryOptions,
    SecretField,
    SinkConfigBase,
    TlsOptions,
    shown_url,
)
from bridge.sinks.base import Delivered, DeliveryOptions, Health, Hold, Outcome, Partial, Rejected, Retry, Sink
from bridge.sinks.topics import check_template, mqtt_topics

log = structlog.get_logger("bridge.sinks.mqtt")

# paho's own logger repeats every connection problem as a traceback; our outcome lines say it once.
logging.getLogger("aiomqtt").setLevel(logging.CRITICAL)

# PUBACK reason codes (MQTT 5 section 3.4.2.1) at or above 0x80 are failures, though aiomqtt resolves the publish
# anyway: these say the broker will never take this message, the rest (quota exceeded...) are worth a retry.
_PUBACK_REFUSED = {0x87: "not authorized", 0x90: "topic name invalid", 0x95: "packet too large", 0x99: "payload format"}

_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_PUBLISH_PROPERTIES.ContentType = "application/json"
_PUBLISH_PROPERTIES.UserProperty = ("event_id", "")

# CONNACK reason codes that retrying will not fix (MQTT 5 section 3.2.2.2; 4 and 5 are the MQTT 3.1.1 codes).
_REFUSED = {
    4: "bad user name or password",
    5: "not authorized",
    134: "bad user name or password",
    135: "not authorized",
    138: "banned",
}


class MqttSinkConfig(SinkConfigBase):
    """An MQTT broker (docs/scale.md): ``mqtt://host:1883``, or ``mqtts://host:8883`` for TLS."""

    type: Literal["mqtt"]
    url: str
    topic: str = "hubbridge/{hub}/{device}/{attribute}"
    payload: Literal["event", "value"] = "event"
    # The broker keeps the last value of each topic for subscribers that connect later.
    retain: bool = False
    qos: Literal[1, 2] = 1
    username: str | None = None
    password: SecretField | None = None
    # The session's name at the broker; unset: hubbridge-<sink name>. Two bridges must not share one.
    client_id: Name | None = None
    # How long the broker keeps this client's session while it is away.
    session_expiry: Duration = 86400.0
    keepalive: Duration = 30.0
    # Publishes awaiting PUBACK at once (the broker's receive maximum may lower it).
    max_inflight: int = Field(default=100, ge=1, le=65535)
    tls: TlsOptions = TlsOptions()
    batch: BatchOptions = BatchOptions(max_events=100, max_wait=0.05)
    retry: RetryOptions = RetryOptions()
    send_timeout: Duration = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"expected mqtt://host:1883 or mqtts://host:8883, got {shown_url(v)!r}")
        if parts.username or parts.password:
            raise ValueError("the url holds user:password@; give username and password (or password_file) instead")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("the url takes no path nor query: the topic comes from `topic`")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"the port in {shown_url(v)!r} is not a number") from None
        return v

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if "+" in v or "#" in v:
            raise ValueError("a topic to publish to cannot hold the wildcards + or #")
        return check_template(v, "/")

    @model_validator(mode="after")
    def _checks(self) -> MqttSinkConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password is given without username")
        return self


class MqttSink(Sink):
    type_name = "mqtt"
    Config = MqttSinkConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config.name)
        self.config: MqttSinkConfig = config
        parts = urlsplit(config.url)
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or ""
        self.port = parts.port or (8883 if self.tls else 1883)
        self.shown = f"{parts.scheme}://{self.host}:{self.port}"
        self.client_id = config.client_id or f"hubbridge-{config.name}"
        self._topic = mqtt_topics(config.topic)
        self._client: aiomqtt.Client | None = None
        self._connect_lock = asyncio.Lock()
        # The PUBACK reason code of each event id published on this connection (see _watch_pubacks).
        self._mids: dict[str, int] = {}
        self._reasons: dict[int, int] = {}

    @classmethod
    def delivery_options(cls, config: Any) -> DeliveryOptions:
        base = super().delivery_options(config)
        # One batch at a time: within it, up to max_inflight publishes await their PUBACK together.
        return dataclasses.replace(base, send_timeout=config.send_timeout, max_in_flight=1)

    # ------------------------------------------------------------------ connection

    def _new_client(self) -> aiomqtt.Client:
        cfg = self.config
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = int(cfg.session_expiry)
        tls = None
        if self.tls:
            if not cfg.tls.verify:
                log.warning(
                    "TLS VERIFICATION IS OFF: the broker's certificate is not checked; use tls.ca_file instead",
                    sink=self.name,
                    url=self.shown,
                )
            tls = ssl_context(cfg.tls)
        return aiomqtt.Client(
            self.host,
            self.port,
            username=cfg.username,
            password=cfg.password.get() if cfg.password is not None else None,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # a persistent session: the broker keeps what it queued for us while we are away
            properties=connect,
            keepalive=int(cfg.keepalive),
            # Below the delivery loop's send_timeout, so a stuck publish ends here and the connection is renewed.
            timeout=cfg.send_timeout * 0.9,
            max_inflight_messages=cfg.max_inflight,
            tls_context=tls,
            # Each publish is a small packet awaiting a small PUBACK: Nagle's algorithm would hold them back.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def _connected(self) -> aiomqtt.Client:
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            client = self._new_client()
            # aiomqtt warns once per publish beyond this many awaiting PUBACK; a whole batch waiting is our normal
            # case (the batch size bounds it).
            client.pending_calls_threshold = 1 << 30
            self._watch_pubacks(client)
            await client.__aenter__()
            self._client = client
            log.info("connected to the MQTT broker", sink=self.name, url=self.shown, client_id=self.client_id)
            return client

    def _watch_pubacks(self, client: aiomqtt.Client) -> None:
        """Record the PUBACK reason code of every publish, by event id.

        aiomqtt resolves a publish on any PUBACK, even one whose reason code says the broker refused the message (an
        ACL denying the topic answers 0x87): taken as delivered, such an event would be silently lost. paho, under
        aiomqtt, hands the reason code to ``on_publish``; the message id of each publish comes from paho's
        ``publish``, which gets the event id in the user property.
        """
        paho: Any = client._client  # aiomqtt has no public access to it
        publish, on_publish = paho.publish, paho.on_publish
        mids, reasons = self._mids, self._reasons

        def publishing(*args: Any, **kwargs: Any) -> Any:
            info = publish(*args, **kwargs)
            props = kwargs.get("properties", args[4] if len(args) > 4 else None)
            for key, value in getattr(props, "UserProperty", None) or ():
                if key == "event_id":
                    mids[value] = info.mid
            return info

        def published(c: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            reasons[mid] = int(getattr(reason_code, "value", 0) or 0)
            on_publish(c, userdata, mid, reason_code, properties)

        paho.publish, paho.on_publish = publishing, published

    async def _drop(self) -> None:
        self._mids.clear()
        self._reasons.clear()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.__aexit__(None, None, None)

    async def close(self) -> None:
        await super().close()
        await self._drop()

    async def health(self) -> Health:
        try:
            async with asyncio.timeout(10):
                await self._connected()
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self._drop()
            return Health(False, self._problem(exc))
        return Health(True, f"connected to {self.shown} as {self.client_id}")

    def _problem(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer from the MQTT broker at {self.shown}"
        rc = getattr(exc, "rc", None)
        code = getattr(rc, "value", rc)
        if code in _REFUSED:
            return f"the MQTT broker at {self.shown} refused the connection: {_REFUSED[code]}; check username/password"
        text = str(exc).replace(self.config.password.get() if self.config.password else "\0", "***")
        return f"MQTT broker {self.shown}: {text}"

    # ------------------------------------------------------------------ delivery

    def _message(self, record: Record) -> tuple[str, bytes, Properties]:
        event = json.loads(record.body)
        if self.config.payload == "value":
            payload = dumps(event.get("value")).encode("utf-8")
        else:
            payload = record.body.encode("utf-8")
        # paho's Properties validates every assignment and rebuilds its tables per instance (half of this sink's
        # CPU): copy one made and checked once, and put the user property in the way its setter stores it.
        props = copy.copy(_PUBLISH_PROPERTIES)
        object.__setattr__(props, "UserProperty", [("event_id", record.id)])
        return self._topic(event), payload, props

    def _refused(self, record: Record, code: int, acked: int) -> Outcome:
        self._mids.clear()
        self._reasons.clear()
        topic = self._topic(json.loads(record.body))
        if code == 0x87:
            # Not the event's fault: the broker's ACL. Hold (nothing is dropped) until the operator fixes it.
            return Hold(
                f"the MQTT broker at {self.shown} does not allow publishing to {topic!r} (PUBACK 0x87 not "
                f"authorized): allow the topic in its ACL for {self.config.username or 'anonymous clients'}, or "
                "change `topic`"
            )
        if code in _PUBACK_REFUSED:
            return Rejected(f"the MQTT broker refused the message on {topic!r}: {_PUBACK_REFUSED[code]}", index=acked)
        reason = f"the MQTT broker did not take the message on {topic!r} (PUBACK reason 0x{code:02x})"
        return Partial(acked, reason) if acked else Retry(reason)

    async def send(self, batch: Sequence[Record]) -> Outcome:
        self._check_open()
        try:
            client = await self._connected()
        except aiomqtt.MqttError as exc:
            await self._drop()
            problem = self._problem(exc)
            code = getattr(getattr(exc, "rc", None), "value", getattr(exc, "rc", None))
            return Hold(problem) if code in _REFUSED else Retry(problem)
        cfg = self.config
        publishes = [
            asyncio.ensure_future(client.publish(topic, payload, qos=cfg.qos, retain=cfg.retain, properties=props))
            for topic, payload, props in map(self._message, batch)
        ]
        results = await asyncio.gather(*publishes, return_exceptions=True)
        acked = 0
        for record, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                break
            code = self._reasons.pop(self._mids.pop(record.id, -1), 0)
            if code >= 0x80:
                return self._refused(record, code, acked)
            acked += 1
        self._mids.clear()
        self._reasons.clear()
        if acked == len(batch):
            return Delivered()
        # The connection is gone or stuck: start afresh; what had no PUBACK is published again (same ids).
        failure = next(r for r in results if isinstance(r, BaseException))
        await self._drop()
        reason = self._problem(failure)
        return Partial(acked, reason) if acked else Retry(reason)
