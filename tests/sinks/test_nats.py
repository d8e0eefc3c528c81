"""The NATS JetStream sink (bridge.sinks.nats) against real nats-server processes: one, and a three-node cluster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig
from pydantic import ValidationError

from bridge.journal import Journal
from bridge.natsconn import subject_covers
from bridge.pipeline import Pipeline
from bridge.sinks import build_sink
from bridge.sinks.base import Delivered, Hold
from bridge.sinks.nats import NatsSink, NatsSinkConfig
from bridge.sinks.topics import nats_subjects
from tests.brokers import NatsServer, nats_cluster, nats_server
from tests.helpers import BIG, caught_up, delivering, ingest


def nats_config(url: str, **kwargs: Any) -> NatsSinkConfig:
    return NatsSinkConfig.model_validate(
        {"name": "stream", "type": "nats", "url": url, "stream": "HUBBRIDGE", **kwargs}
    )


async def stream_messages(url: str, stream: str = "HUBBRIDGE") -> list[tuple[str, str, dict[str, Any]]]:
    """Every message the stream holds, in order: (subject, Nats-Msg-Id, payload)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), json.loads(msg.data or b"{}")))
        return out
    finally:
        await nc.close()


# ------------------------------------------------------------------------------------------------ pure parts


def test_subjects_are_safe_tokens_and_the_stream_takes_the_template() -> None:
    """Device ids and names with dots or spaces stay one subject token; the stream created takes `hubbridge.>`."""
    subject = nats_subjects("hubbridge.{hub}.{kind}.{device_id}.{attribute}")
    ev = {"hub": "home", "kind": "device", "device_id": "12.3 a>*", "attribute": "switch"}
    assert subject(ev) == "hubbridge.home.device.12_3_a__.switch"
    assert subject({**ev, "device_id": None, "kind": "hub"}) == "hubbridge.home.hub._.switch"
    assert nats_config("nats://127.0.0.1:4222").subjects == ["hubbridge.>"]
    assert subject_covers(">", "hubbridge.>") and subject_covers("hubbridge.>", "hubbridge.>")
    assert not subject_covers("hubbridge.*", "hubbridge.>") and not subject_covers("other.>", "hubbridge.>")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"url": "http://127.0.0.1:4222"}, "expected nats://"),
        ({"url": "nats://u:p@127.0.0.1:4222"}, "credentials"),
        ({"stream": "hub.bridge"}, "stream"),
        ({"subject": "hubbridge.>"}, "wildcards"),
        ({"subject": "{hub}.{attribute}"}, "stream_subjects"),
        ({"username": "u", "token": "t"}, "give one of"),
    ],
)
def test_config_mistakes_are_refused_with_the_reason(changes: dict[str, Any], problem: str) -> None:
    """`hubbridge check` names what is wrong in a NATS sink's config."""
    with pytest.raises(ValidationError) as err:
        nats_config(**{"url": "nats://127.0.0.1:4222", **changes})
    assert problem in str(err.value)


# ------------------------------------------------------------------------------------------------ one server


async def test_the_stream_is_created_with_the_stated_limits_and_drops_resends(tmp_path: Path, journal: Journal) -> None:
    """The missing stream is created as configured; the same events published again are not stored twice."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["stream"])
    async with nats_server(tmp_path / "nats") as server:
        events = await ingest(pipeline, 40)
        sink, options = build_sink(nats_config(server.url, max_age="1d", max_bytes="64MiB", duplicate_window="5m"))
        assert isinstance(sink, NatsSink)
        async with sink:
            assert (await sink.health()).ok
            async with delivering(sink, journal, max_events=options.max_events):
                await caught_up(journal, "stream")
            # A crash before the cursor moved: the same records are sent again, with the same ids.
            again = await journal.read(0, 1000, BIG)
            assert isinstance(await sink.send(again), Delivered)
        stored = await stream_messages(server.url)
        nc = await nats.connect(server.url)
        info = await nc.jetstream().stream_info("HUBBRIDGE")
        await nc.close()
    assert [m[1] for m in stored] == [ev.id for ev in events]
    assert [m[2] for m in stored] == [ev.to_dict() for ev in events]
    assert stored[0][0] == f"hubbridge.home.device.{events[0].device_id}.{events[0].attribute}"
    cfg = info.config
    assert (cfg.subjects, cfg.max_age, cfg.max_bytes, cfg.duplicate_window) == (["hubbridge.>"], 86400, 64 << 20, 300)


async def test_an_existing_stream_with_other_subjects_is_refused_clearly(tmp_path: Path, journal: Journal) -> None:
    """A stream of that name taking other subjects is not touched: the sink holds and says what to change."""
    async with nats_server(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(StreamConfig(name="HUBBRIDGE", subjects=["orders.>"]))
        await nc.close()
        sink, _ = build_sink(nats_config(server.url))
        async with sink:
            health = await sink.health()
            outcome = await sink.send(await journal.read(0, 10, BIG) or [])
    assert not health.ok
    assert "stream HUBBRIDGE exists with subjects ['orders.>'], which do not take ['hubbridge.>']" in health.detail
    assert isinstance(outcome, Hold) and "add them to the stream" in outcome.reason


# ------------------------------------------------------------------------------------------------ cluster


async def test_a_cluster_node_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path, journal: Journal) -> None:
    """Three JetStream nodes, a replicated stream, one node SIGKILLed mid-stream: the stream holds each event once."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["stream"])
    async with nats_cluster(tmp_path / "cluster") as nodes:
        urls = ",".join(n.url for n in nodes)
        sink, _ = build_sink(
            nats_config(urls, replicas=3, publish_timeout="1s", retry={"initial": "50ms", "max": "300ms"})
        )
        sent: list[str] = []
        async with sink:
            # The cluster needs a moment to elect a meta leader before the stream can be created.
            async with asyncio.timeout(20):
                while not (await sink.health()).ok:
                    await asyncio.sleep(0.1)
            async with delivering(sink, journal, max_events=20, retry_initial=0.05, retry_max=0.3):
                for n in range(20):
                    if n == 6:
                        # The node the sink is connected to: it must reconnect, and the stream may lose its leader.
                        assert sink._nc is not None and sink._nc.connected_url is not None
                        port = sink._nc.connected_url.port
                        victim = next(node for node in nodes if node.port == port)
                        await victim.kill()
                    sent += [ev.id for ev in await ingest(pipeline, 25)]
                    if n < 6:
                        await caught_up(journal, "stream")
                await caught_up(journal, "stream")
        survivor = next(node for node in nodes if node is not victim)
        stored = await stream_messages(survivor.url)
    ids = [m[1] for m in stored]
    assert len(ids) == len(set(ids)), "a resend was stored twice"
    assert set(ids) == set(sent), "an event is missing from the stream"
    assert all(m[2]["id"] == m[1] for m in stored)


async def test_a_server_down_at_start_holds_nothing_back_once_it_is_up(tmp_path: Path, journal: Journal) -> None:
    """With NATS down when the bridge starts, health says so at once and events go out when it comes up."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["stream"])
    server = NatsServer(tmp_path / "nats")
    events = await ingest(pipeline, 10)
    sink, _ = build_sink(nats_config(server.url))
    async with sink:
        health = await sink.health()
        assert not health.ok and health.detail == f"no NATS server answered at {server.url}"
        async with delivering(sink, journal):
            await server.start()
            try:
                await caught_up(journal, "stream")
                stored = await stream_messages(server.url)
            finally:
                await server.stop()
    assert [m[1] for m in stored] == [ev.id for ev in events]
