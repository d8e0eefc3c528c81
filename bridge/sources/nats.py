"""The JetStream source (``type: nats`` under ``hubs:``): a central bridge reading what edge bridges published.

Edge bridges publish their changes to a JetStream stream (the NATS sink); a central bridge reads them through a
durable pull consumer and records them in its own journal as they are, with their original id, hub and time (they
are changes already: no diff). Each message is acknowledged only after the journal commit that holds it is
durable, so a central bridge killed at any moment loses nothing: what it fetched and did not acknowledge is
delivered again by JetStream (to it or to another bridge) after ``ack_wait``, with the same ids, and what it
acknowledged is in its journal, delivered by its sinks, if need be after its restart. Several central bridges
sharing one durable consumer split the work between them.

A message that is not a contract event (not JSON, missing id, hub or time) is terminated (never delivered again to
this consumer; it stays in the stream) with one log line naming its stream sequence, and affects nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Annotated, Any, Literal

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import Field

from bridge.backoff import Backoff
from bridge.errors import HubUnavailable, JournalError
from bridge.events import FIELDS, Event, Reading, SourceName, shorten
from bridge.natsconn import NATS_NAME, NatsOptions, close, connect, problem
from bridge.options import Duration, HubConfigBase, at_least
from bridge.sources.base import Source, Stream

STREAM = "jetstream"


class NatsSourceConfig(NatsOptions, HubConfigBase):
    """A durable pull consumer on a JetStream stream written by other bridges (docs/scale.md)."""

    type: Literal["nats"]
    stream: Annotated[str, Field(pattern=NATS_NAME)]
    # The consumer's name: every central bridge with the same name shares the work of one consumer.
    durable: Annotated[str, Field(pattern=NATS_NAME)]
    # Only these subjects of the stream (e.g. hubbridge.house-12.>); unset: all of them.
    filter_subject: str | None = None
    # Messages asked for at once; they are recorded in one commit and acknowledged after it.
    fetch: int = Field(default=200, ge=1, le=10_000)
    # A fetched message not acknowledged within this is delivered again (to any bridge on the consumer).
    ack_wait: Annotated[Duration, at_least(1.0, "a commit under load must fit in it")] = 30.0
    # Messages delivered and not yet acknowledged, across every bridge on the consumer.
    max_ack_pending: int = Field(default=10_000, ge=1)
    # How long one fetch waits for messages before asking again.
    fetch_wait: Annotated[Duration, at_least(0.1, "shorter only spins")] = 5.0
    # How often the runner checks the connection (a poll here asks nothing of any hub).
    poll_interval: Duration = 60.0


def parse_event(data: bytes) -> Event | str:
    """The contract event a message carries, or why it is not one."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON: {shorten(str(exc), 80)}"
    if not isinstance(obj, dict):
        return "not a JSON object"
    for key, kinds in (("id", str), ("hub", str), ("attribute", str), ("kind", str)):
        if not isinstance(obj.get(key), kinds) or not obj[key]:
            return f"{key} missing or not a string"
    t = obj.get("time")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return "time missing or not a number"
    unknown = set(obj) - set(FIELDS)
    if unknown:
        return f"unknown field(s) {sorted(unknown)[:5]}"
    ev = Event.from_dict(obj)
    ev.time = float(t)
    ev.hub_type = ev.hub_type or "unknown"
    ev.source = ev.source or "poll"
    return ev


class NatsSource(Source):
    type_name = "nats"
    Config = NatsSourceConfig
    hub_type = "nats"

    def __init__(self, cfg: Any, hub: Any) -> None:
        super().__init__(cfg, hub)
        self.config: NatsSourceConfig = cfg
        self.poll_interval = cfg.poll_interval
        self.reconcile_interval = cfg.poll_interval
        self.backoff_max = 30.0
        self._up = asyncio.Event()
        self._problem = "not connected yet"
        self.relayed = 0
        self.terminated = 0

    def streams(self) -> dict[str, Stream]:
        return {STREAM: self._consume}

    @property
    def stream_live(self) -> bool:
        return self._up.is_set()

    async def poll(self, source: SourceName) -> list[Reading]:
        """Nothing to read from a hub: says whether the consumer is connected (its hub_status)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.connect_timeout + 1):
                await self._up.wait()
        if not self._up.is_set():
            raise HubUnavailable(self.cfg.name, self._problem)
        return []

    async def _consume(self) -> None:
        backoff = Backoff(0.5, self.backoff_max)
        while True:
            try:
                await self._run_consumer(backoff)
            except (nats.errors.Error, OSError, TimeoutError, JournalError) as exc:
                self._down(problem(exc, self.config) if not isinstance(exc, JournalError) else str(exc))
                await asyncio.sleep(backoff.next())

    def _down(self, why: str) -> None:
        self._problem = why
        self._up.clear()
        self.hub.stream_state(STREAM, False, why)
        self.hub.rate_log.warning(
            ("jetstream", why[:40]), "JetStream consumer down; nothing is acknowledged meanwhile", error=why
        )

    async def _run_consumer(self, backoff: Backoff) -> None:
        cfg = self.config
        nc = await connect(cfg, f"hubbridge-{cfg.name}", {"hub": cfg.name})
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(
                cfg.filter_subject or "",
                durable=cfg.durable,
                stream=cfg.stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=cfg.ack_wait,
                    max_ack_pending=cfg.max_ack_pending,
                ),
            )
            self._up.set()
            self.hub.stream_state(STREAM, True)
            self.hub.rate_log.forget(("jetstream",))
            self.hub.log.info("JetStream consumer ready", stream=cfg.stream, durable=cfg.durable)
            while True:
                try:
                    msgs = await sub.fetch(cfg.fetch, timeout=cfg.fetch_wait)
                except nats.errors.TimeoutError:
                    if nc.is_connected:
                        backoff.reset()
                        continue  # nothing new
                    raise
                await self._record(msgs)
                backoff.reset()
        finally:
            self._up.clear()
            await close(nc)

    async def _record(self, msgs: list[Msg]) -> None:
        events: list[Event] = []
        good: list[Msg] = []
        for msg in msgs:
            parsed = parse_event(msg.data)
            if isinstance(parsed, str):
                await self._terminate(msg, parsed)
                continue
            events.append(parsed)
            good.append(msg)
        if events:
            # Resolves once the commit is durable (it waits while the journal is full); only then acknowledge.
            relay = asyncio.ensure_future(self.hub.relay(events))
            try:
                while True:
                    done, _ = await asyncio.wait([relay], timeout=self.config.ack_wait / 2)
                    if done:
                        break
                    # Still on them (the journal is full or slow): without this JetStream would hand them to
                    # another bridge after ack_wait, and both would record them.
                    for msg in good:
                        await msg.in_progress()
            finally:
                if not relay.done():
                    relay.cancel()
            relay.result()
            self.relayed += len(events)
        for msg in good:
            await msg.ack()

    async def _terminate(self, msg: Msg, why: str) -> None:
        self.terminated += 1
        seq = msg.metadata.sequence.stream if msg.reply else None
        self.hub.rate_log.error(
            ("bad-message", why[:30]),
            "a message in the stream is not a hubbridge event; it is skipped (it stays in the stream)",
            subject=shorten(msg.subject, 200),
            stream_seq=seq,
            reason=why,
        )
        await msg.term()
