"""Handing a hub's last-known values over through the stream when it moves between shards (docs/scale.md).

The instance that ran a hub published every change of it to the JetStream stream, so the stream's last message per
subject is the hub's last-known value of each attribute. When an instance starts running a hub it did not run last
time under the same shard layout, it reads those messages (a short-lived consumer with ``last_per_subject``) and
takes them as its own last-known values before the first poll. That poll then emits only what really changed since,
with the right ``previous``, instead of every value of the hub once more.

Best effort by design: it needs a ``type: nats`` sink whose subject template has ``{hub}`` as a level of its own,
and it gives up (one line; the first poll then reports every value with ``previous: null``) when the stream cannot
be read within :data:`HANDOVER_TIMEOUT`. Changes the old owner had not yet published are not in the stream; stop
the old owner before starting the new one (it drains its journal on SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import string
from collections.abc import Sequence
from typing import Any

import nats
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bridge.diff import StateRow
from bridge.errors import JournalError
from bridge.natsconn import close, connect, problem
from bridge.pipeline import Pipeline
from bridge.shard import UNSHARDED, Shard
from bridge.sinks.topics import nats_token

log = structlog.get_logger("bridge.handover")

HANDOVER_TIMEOUT = 15.0
META_KEY = "shard"


def hub_filter(template: str, hub: str) -> str | None:
    """The subject filter matching every attribute of ``hub`` under ``template``; None if the template cannot."""
    levels, found = [], False
    for level in template.split("."):
        names = [name for _, name, _, _ in string.Formatter().parse(level) if name]
        if level == "{hub}":
            levels.append(nats_token(hub))
            found = True
        elif "hub" in names:
            return None  # {hub} shares a level with other text: no filter can pick one hub out
        elif names:
            levels.append("*")
        else:
            levels.append(level)
    return ".".join(levels) if found else None


async def hand_over(pipeline: Pipeline, hubs: Sequence[Any], sinks: Sequence[Any], shard: Shard | None) -> None:
    """Take over the last-known values of the hubs this instance starts running under a new shard layout."""
    if shard is None:
        return
    sink = next((s for s in sinks if s.type == "nats"), None)
    layout = str(shard)
    todo = []
    for cfg in hubs:
        if cfg.type in UNSHARDED:
            continue
        try:
            if await pipeline.journal.get_meta(cfg.name, META_KEY) != layout:
                todo.append(cfg.name)
        except JournalError:
            continue
    if not todo:
        return
    if sink is None:
        log.info("hubs taken over without a NATS sink to hand over their last values", hubs=todo)
    else:
        try:
            async with asyncio.timeout(HANDOVER_TIMEOUT):
                await _from_stream(pipeline, todo, sink)
        except (nats.errors.Error, OSError, TimeoutError, JournalError) as exc:
            text = problem(exc, sink) if not isinstance(exc, JournalError) else str(exc)
            log.warning(
                "could not read the last values of the hubs taken over from the stream; their first poll reports "
                "every value once",
                hubs=todo,
                error=text,
            )
    for name in todo:
        with contextlib.suppress(JournalError):
            await pipeline.journal.set_meta(name, META_KEY, layout)


async def _from_stream(pipeline: Pipeline, hubs: list[str], sink: Any) -> None:
    from bridge.sources.nats import parse_event

    nc = await connect(sink, f"hubbridge-handover-{sink.name}", {"sink": sink.name})
    try:
        js = nc.jetstream()
        for hub in hubs:
            subject = hub_filter(sink.subject, hub)
            if subject is None:
                log.info("the subject template has no {hub} level: no handover of last values", hub=hub)
                continue
            try:
                await js.stream_info(sink.stream)
            except nats.js.errors.NotFoundError:
                log.info("no stream yet: no last values to hand over", stream=sink.stream)
                return
            sub = await js.pull_subscribe(
                subject,
                stream=sink.stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=30.0,
                ),
            )
            try:
                info = await sub.consumer_info()
                left = info.num_pending or 0
                rows: dict[tuple[str, str, str, str], StateRow] = {}
                while left > 0:
                    msgs = await sub.fetch(min(left, 500), timeout=5)
                    left -= len(msgs)
                    for msg in msgs:
                        ev = parse_event(msg.data)
                        if isinstance(ev, str) or ev.hub != hub or ev.kind == "bridge":
                            continue
                        key = (hub, ev.kind, ev.device_id or "", ev.attribute)
                        rows[key] = StateRow(key, ev.value, 0)
            finally:
                await sub.unsubscribe()
            if rows:
                await pipeline.seed(list(rows.values()))
            log.info("took over the last values of a hub from the stream", hub=hub, values=len(rows))
    finally:
        await close(nc)
