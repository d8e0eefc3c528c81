"""The NATS JetStream sink (``type: nats``): each event published to a stream, its publish ack the confirmation.

Each event goes to the subject its template gives (default ``hubbridge.{hub}.{kind}.{device_id}.{attribute}``),
the contract object as payload, with header ``Nats-Msg-Id`` set to the event id: the stream's duplicate window
drops the resends a crash or a lost ack brings, so within that window the stream holds each event once. A batch is
published at once and is delivered only when JetStream acknowledged every message (stored, on a clustered stream by
a majority of its replicas); the delivery loop moves the cursor on nothing less.

The stream is created with the limits the config states when it does not exist. When it exists but does not take
this sink's subjects, or cannot be created (its subjects overlap another stream's), the sink holds with one line
saying so: events wait in the journal until the operator fixes the stream or the config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from pydantic import Field, field_validator, model_validator

from bridge.journal import Record
from bridge.natsconn import NATS_NAME, NatsOptions, close, connect, problem, subject_covers
from bridge.options import BatchOptions, Duration, RetryOptions, SinkConfigBase, Size
from bridge.sinks.base import Delivered, DeliveryOptions, Health, Hold, Outcome, Partial, Rejected, Retry, Sink
from bridge.sinks.topics import check_template, nats_subjects

log = structlog.get_logger("bridge.sinks.nats")


class NatsSinkConfig(NatsOptions, SinkConfigBase):
    """A NATS JetStream stream (docs/scale.md)."""

    type: Literal["nats"]
    stream: Annotated[str, Field(pattern=NATS_NAME)]
    subject: str = "hubbridge.{hub}.{kind}.{device_id}.{attribute}"
    # Create the stream when it is missing, with the limits below (they are not applied to an existing stream).
    create_stream: bool = True
    # The stream's subjects when this sink creates it; unset: the subject template's fixed start and `>`.
    stream_subjects: list[str] | None = None
    replicas: int = Field(default=1, ge=1, le=5)
    storage: Literal["file", "memory"] = "file"
    max_age: Duration = 7 * 86400.0
    max_bytes: Size = 1024**3
    # Resends with the same Nats-Msg-Id within this window are dropped by the stream.
    duplicate_window: Duration = 120.0
    # One publish waits this long for its ack before the batch is retried (a cluster electing a leader).
    publish_timeout: Duration = 5.0
    batch: BatchOptions = BatchOptions(max_events=200, max_wait=0.05)
    retry: RetryOptions = RetryOptions()

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        if any(c in v.replace("{", "").replace("}", "") for c in "*> \t"):
            raise ValueError("a subject to publish to cannot hold wildcards (* or >) nor spaces")
        return check_template(v, ".")

    @model_validator(mode="after")
    def _derived(self) -> NatsSinkConfig:
        if self.stream_subjects is None and self.create_stream and self.subject.startswith("{"):
            raise ValueError("the subject template starts with a field: give stream_subjects for the stream")
        if self.duplicate_window <= 0:
            raise ValueError("duplicate_window must be above 0s: it is what drops resends after a crash")
        return self

    @property
    def subjects(self) -> list[str]:
        """The stream's subjects this sink publishes to."""
        if self.stream_subjects is not None:
            return self.stream_subjects
        fixed = self.subject.split("{", 1)[0]
        levels = [level for level in fixed.split(".") if level]
        if "{" not in self.subject:
            return [self.subject]
        # "hubbridge.{hub}..." -> "hubbridge.>"; "hub{hub}..." (a field inside a level) -> ">" from that level.
        whole = levels if fixed.endswith(".") else levels[:-1]
        return [".".join([*whole, ">"])]


class NatsSink(Sink):
    type_name = "nats"
    Config = NatsSinkConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config.name)
        self.config: NatsSinkConfig = config
        self._subject = nats_subjects(config.subject)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_checked = False
        self._lock = asyncio.Lock()
        self._log = log.bind(sink=config.name)

    @classmethod
    def delivery_options(cls, config: Any) -> DeliveryOptions:
        base = super().delivery_options(config)
        # One batch at a time (its messages are published together); a publish that hangs is retried.
        timeout = config.publish_timeout * 2 + config.connect_timeout + 5
        return dataclasses.replace(base, max_in_flight=1, send_timeout=timeout)

    # ------------------------------------------------------------------ connection and stream

    async def _ready(self) -> JetStreamContext | Outcome:
        """The JetStream context once connected and the stream is right; else the outcome saying why not."""
        async with self._lock:
            try:
                if self._nc is None or self._nc.is_closed:
                    self._nc = await connect(self.config, f"hubbridge-{self.name}", {"sink": self.name})
                    self._js = self._nc.jetstream(timeout=self.config.publish_timeout)
                assert self._js is not None
                if not self._stream_checked:
                    held = await self._check_stream(self._js)
                    if held is not None:
                        return held
                    self._stream_checked = True
                return self._js
            except nats.js.errors.APIError as exc:
                return Hold(problem(exc, self.config))
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                return Retry(problem(exc, self.config))

    async def _check_stream(self, js: JetStreamContext) -> Hold | None:
        cfg = self.config
        try:
            info = await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            if not cfg.create_stream:
                return Hold(f"stream {cfg.stream} does not exist and create_stream is false; create it first")
            try:
                await js.add_stream(
                    StreamConfig(
                        name=cfg.stream,
                        subjects=cfg.subjects,
                        num_replicas=cfg.replicas,
                        storage=StorageType.FILE if cfg.storage == "file" else StorageType.MEMORY,
                        max_age=cfg.max_age,
                        max_bytes=cfg.max_bytes,
                        duplicate_window=cfg.duplicate_window,
                    )
                )
            except nats.js.errors.APIError as exc:
                return Hold(f"cannot create stream {cfg.stream}: {exc.description or exc} (err_code {exc.err_code})")
            self._log.info(
                "created the JetStream stream",
                stream=cfg.stream,
                subjects=cfg.subjects,
                replicas=cfg.replicas,
                max_age=cfg.max_age,
                max_bytes=cfg.max_bytes,
                duplicate_window=cfg.duplicate_window,
            )
            return None
        theirs = info.config.subjects or []
        missing = [s for s in cfg.subjects if not any(subject_covers(t, s) for t in theirs)]
        if missing:
            return Hold(
                f"stream {cfg.stream} exists with subjects {theirs}, which do not take {missing}: add them to the "
                "stream, or name another stream in `stream`"
            )
        return None

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        self._stream_checked = False
        if nc is not None:
            await close(nc)

    async def close(self) -> None:
        await super().close()
        await self._drop()

    async def health(self) -> Health:
        ready = await self._ready()
        if isinstance(ready, Hold | Retry):
            return Health(False, ready.reason)
        return Health(True, f"publishing to stream {self.config.stream} at {self.config.shown}")

    # ------------------------------------------------------------------ delivery

    async def send(self, batch: Sequence[Record]) -> Outcome:
        self._check_open()
        js = await self._ready()
        if not isinstance(js, JetStreamContext):
            return js
        cfg = self.config
        publishes = [
            asyncio.ensure_future(
                js.publish(
                    self._subject(json.loads(r.body)),
                    r.body.encode("utf-8"),
                    stream=cfg.stream,
                    headers={"Nats-Msg-Id": r.id},
                )
            )
            for r in batch
        ]
        results = await asyncio.gather(*publishes, return_exceptions=True)
        for i, result in enumerate(results):
            if not isinstance(result, BaseException):
                continue
            if isinstance(result, nats.errors.MaxPayloadError):
                return Rejected(f"the event is larger than the server's max_payload: {result}", index=i)
            if isinstance(result, nats.js.errors.APIError) and result.err_code == 10060:
                # "expected stream does not match": the subject is taken by another stream.
                return Hold(f"subject of event {batch[i].id} belongs to another stream than {cfg.stream}")
            reason = problem(result, cfg)
            return Partial(i, reason) if i else Retry(reason)
        return Delivered()
