"""The JetStream source (bridge.sources.nats): a central bridge reading, through a durable pull consumer, what edge
bridges published with the NATS sink. Real nats-server, real journal, real hub runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from pydantic import ValidationError

from bridge.events import Event
from bridge.journal import Journal
from bridge.pipeline import Pipeline
from bridge.sinks import build_sink
from bridge.sources.nats import NatsSource, NatsSourceConfig, parse_event
from bridge.sources.runner import HubRunner, HubStatus
from tests.brokers import nats_server
from tests.helpers import all_records, caught_up, delivering, ingest, running_journal, wait_until
from tests.sinks.test_nats import nats_config


def source_config(url: str, **kwargs: Any) -> NatsSourceConfig:
    return NatsSourceConfig.model_validate(
        {
            "name": "edge-events",
            "type": "nats",
            "url": url,
            "stream": "HUBBRIDGE",
            "durable": "central",
            "fetch_wait": "200ms",
            "ack_wait": "2s",
            **kwargs,
        }
    )


@contextlib.asynccontextmanager
async def central(path: Path, cfg: NatsSourceConfig) -> AsyncIterator[tuple[Journal, HubRunner]]:
    """A central bridge's journal and the runner of its JetStream hub."""
    async with running_journal(path) as journal:
        pipeline = await Pipeline.open(journal)
        runner = HubRunner(cfg, NatsSource, pipeline, HubStatus())
        task = asyncio.create_task(runner.run())
        try:
            yield journal, runner
        finally:
            runner.stop()
            async with asyncio.timeout(10):
                await task


async def publish_from_edge(journal: Journal, url: str, n: int) -> list[Event]:
    """An edge bridge: ``n`` changes journalled and delivered to the stream by the NATS sink."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["stream"])
    events = await ingest(pipeline, n)
    sink, _ = build_sink(nats_config(url))
    async with sink, delivering(sink, journal):
        await caught_up(journal, "stream")
    return events


def test_a_message_is_an_event_only_when_it_holds_the_contract() -> None:
    """Whatever else lands in the stream is told apart from events, with the reason, instead of crashing the bridge."""
    good = {"id": "a1", "time": 1.5, "hub": "house-3", "kind": "device", "attribute": "switch", "value": "on"}
    ev = parse_event(json.dumps(good).encode())
    assert isinstance(ev, Event) and (ev.id, ev.hub, ev.time, ev.value) == ("a1", "house-3", 1.5, "on")
    assert parse_event(b"<html>") == "not JSON: Expecting value: line 1 column 1 (char 0)"
    assert parse_event(b"[1]") == "not a JSON object"
    assert parse_event(json.dumps({**good, "id": ""}).encode()) == "id missing or not a string"
    assert parse_event(json.dumps({**good, "time": "noon"}).encode()) == "time missing or not a number"
    assert parse_event(json.dumps({**good, "extra": 1}).encode()) == "unknown field(s) ['extra']"


def test_config_needs_a_stream_and_a_durable_name() -> None:
    """A consumer without a durable name would not survive a restart: `check` refuses it."""
    with pytest.raises(ValidationError, match="durable"):
        NatsSourceConfig.model_validate({"name": "e", "type": "nats", "url": "nats://127.0.0.1", "stream": "S"})
    with pytest.raises(ValidationError, match="at least 1s"):
        source_config("nats://127.0.0.1:4222", ack_wait="100ms")


async def test_events_keep_their_id_hub_and_time_and_are_acked_after_the_commit(tmp_path: Path) -> None:
    """What the edge published is in the central journal as it was; the consumer has nothing left unacknowledged."""
    async with nats_server(tmp_path / "nats") as server:
        async with running_journal(tmp_path / "edge" / "journal.sqlite3") as edge:
            events = await publish_from_edge(edge, server.url, 120)
        nc = await nats.connect(server.url)
        await nc.jetstream().publish("hubbridge.x.device.1.switch", b"not an event", headers={"Nats-Msg-Id": "junk"})
        async with central(tmp_path / "central" / "journal.sqlite3", source_config(server.url)) as (journal, runner):
            await wait_until(lambda: journal.head >= len(events), "the central journal has every event")
            src = runner.source
            assert isinstance(src, NatsSource)
            await wait_until(lambda: src.terminated == 1, "the junk message was skipped")
            info = await nc.jetstream().consumer_info("HUBBRIDGE", "central")
            records = await all_records(journal)
        await nc.close()
    assert info.num_ack_pending == 0 and info.num_pending == 0
    got = {r.id: r.event() for r in records}
    for ev in events:
        assert got[ev.id] == ev.to_dict()  # same id, hub, time, value: the contract object unchanged
