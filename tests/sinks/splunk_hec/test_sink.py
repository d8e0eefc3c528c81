"""The splunk_hec sink (bridge.sinks.splunk_hec) against the HEC simulator over real sockets.

Every test drives the real chain: events committed to a Journal, one Delivery loop, the sink, HecSim. Each
asserts what a user would notice: what Splunk indexed (and how often), what the journal's cursor and dead
letters say, what the sink logs. Reference sections ("§") are in shared/reference/splunk_hec.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from pydantic import ValidationError

from bridge.config import load_config
from bridge.delivery import Delivery
from bridge.errors import ConfigError
from bridge.events import Event
from bridge.http import parse_retry_after
from bridge.http import ssl_context as build_ssl_context
from bridge.journal import Encoded, Journal, Record
from bridge.sim.hec import FLUENT_BIT_NO_ENDPOINT, HecSim
from bridge.sinks import build_sink
from bridge.sinks.base import Delivered, Hold, Retry
from bridge.sinks.splunk_hec import SplunkHecSink, SplunkHecSinkConfig
from bridge.sinks.splunk_hec.classify import Reply, classify
from bridge.sinks.splunk_hec.encoder import Encoder
from tests.helpers import kitchen_temperature, running_journal, wait_until

TOKEN = "sim-hec-token"
ACK_TOKEN = "ack-token-0001"
GUARD = 15.0  # seconds; a hang guard, never a speed assertion
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    # synchronous=normal: these tests are about HEC, not power loss, and run many commits.
    async with running_journal(tmp_path / "state" / "journal.sqlite3", synchronous="normal") as j:
        yield j


@pytest.fixture
async def sim() -> AsyncIterator[HecSim]:
    async with HecSim(tokens=(TOKEN,), ack_tokens=(ACK_TOKEN,)) as s:
        yield s


_seq = 0


def event(**kw: Any) -> Event:
    """One contract event (DESIGN 3); every call a new id."""
    global _seq
    _seq += 1
    base = kitchen_temperature(f"ev-{_seq:06d}", 1_760_000_000.25 + _seq, str(100 + _seq % 7), 20.5 + _seq % 10, 20.0)
    base.update(kw)
    return Event(**base)


def events(n: int, **kw: Any) -> list[Event]:
    return [event(**kw) for _ in range(n)]


def hec_config(sim: HecSim | str, **kw: Any) -> SplunkHecSinkConfig:
    data: dict[str, Any] = {
        "name": "splunk",
        "type": "splunk_hec",
        "url": sim if isinstance(sim, str) else sim.url,
        "token": TOKEN,
        "batch": {"max_wait": "0s"},
        "retry": {"initial": "10ms", "max": "200ms"},
    }
    data.update(kw)
    return SplunkHecSinkConfig.model_validate(data)


def encoded(evs: list[Event]) -> list[Encoded]:
    """Events as the pipeline hands them to the journal."""
    return [(e.id, body, len(body.encode("utf-8"))) for e in evs for body in [e.to_json()]]


@dataclass
class Rig:
    sim: HecSim | None
    journal: Journal
    sink: SplunkHecSink
    delivery: Delivery

    async def send(self, evs: list[Event]) -> list[Event]:
        await self.journal.append(encoded(evs), [])
        return evs

    async def settled(self, timeout: float = GUARD) -> None:
        name = self.sink.name
        await wait_until(lambda: self.journal.cursor(name) == self.journal.head, "the cursor reached the head", timeout)

    @property
    def cursor(self) -> int:
        return self.journal.cursor(self.sink.name)

    async def dead(self) -> list[Any]:
        """Dead letters, oldest first."""
        return sorted(await self.journal.dead_letters(self.sink.name), key=lambda d: d.seq)


@contextlib.asynccontextmanager
async def rig(sim: HecSim | None, journal: Journal, config: SplunkHecSinkConfig, **delivery: Any) -> AsyncIterator[Rig]:
    """A started sink and a running delivery loop wired as bridge.runtime wires them."""
    sink, opts = build_sink(config)
    assert isinstance(sink, SplunkHecSink)
    await sink.start()
    await journal.register_sinks([sink.name])
    loop = Delivery(sink, journal, opts, **delivery)
    task = asyncio.create_task(loop.run())
    try:
        yield Rig(sim, journal, sink, loop)
    finally:
        crashed = task.done() and not task.cancelled() and task.exception() is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sink.close()
        assert not crashed, f"the delivery loop crashed: {task.exception()!r}"


def event_posts(sim: HecSim) -> list[Any]:
    """The requests that carried events (not the health check's empty token probe)."""
    return [r for r in sim.requests if r.path == "/services/collector/event" and r.headers.get("content-length") != "0"]


def ids_of(evs: list[Event]) -> list[str]:
    return [e.id for e in evs]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ------------------------------------------------------------------------------------------------ envelope


async def test_envelope_carries_the_contract_event_and_default_metadata(sim: HecSim, journal: Journal) -> None:
    """Splunk gets each event unchanged, with its time, host=hub, source, sourcetype, index and indexed fields."""
    sent = [event(), event(device_id=None, kind="hub", attribute="systemStart", value="started", unit=None)]
    async with rig(sim, journal, hec_config(sim, index="smarthome")) as r:
        await r.send(sent)
        await r.settled()
    assert len(sim.indexed) == 2
    for env, ev in zip(sim.indexed, sent, strict=True):
        assert env["event"] == ev.to_dict()  # the DESIGN 3 object, unchanged
        assert env["time"] == ev.time
        assert env["host"] == "house"
        assert env["source"] == "hubbridge:house"
        assert env["sourcetype"] == "hubbridge:event"
        assert env["index"] == "smarthome"
    assert sim.indexed[0]["fields"] == {
        "hub": "house",
        "hub_type": "hubitat",
        "kind": "device",
        "device_id": sent[0].device_id,
        "attribute": "temperature",
    }
    # A null device_id is left out: indexed field values are strings (§2.1).
    assert sim.indexed[1]["fields"] == {
        "hub": "house",
        "hub_type": "hubitat",
        "kind": "hub",
        "attribute": "systemStart",
    }
    post = event_posts(sim)[0]
    assert post.status == 200
    assert post.headers["authorization"] == "Splunk <redacted>"  # §1.2 header form (the sim redacts the value)
    assert GUID.fullmatch(post.headers["x-splunk-request-channel"])


async def test_envelope_without_index_lands_in_the_tokens_default(sim: HecSim, journal: Journal) -> None:
    """Without index in the config, events land in the token's default index (main)."""
    async with rig(sim, journal, hec_config(sim)) as r:
        await r.send(events(1))
        await r.settled()
    assert sim.indexed[0]["index"] == "main"


async def test_envelope_overrides(sim: HecSim, journal: Journal) -> None:
    """host, source, sourcetype, index and the indexed-field list set in the config are what Splunk receives."""
    config = hec_config(
        sim,
        host="bridge-1",
        source="smarthome",
        sourcetype="home:change",
        index="iot",
        fields=["hub", "room", "value", "unit"],
    )
    sent = [event(hub="cabin", value=21.5), event(hub="cabin", value=True, unit=None, room=None)]
    async with rig(sim, journal, config) as r:
        await r.send(sent)
        await r.settled()
    first, second = sim.indexed
    assert (first["host"], first["source"], first["sourcetype"], first["index"]) == (
        "bridge-1",
        "smarthome",
        "home:change",
        "iot",
    )
    assert first["fields"] == {"hub": "cabin", "room": "Kitchen", "value": "21.5", "unit": "°C"}
    assert second["fields"] == {"hub": "cabin", "value": "true"}
    assert first["event"]["hub"] == "cabin"


async def test_an_empty_fields_list_sends_no_indexed_fields(sim: HecSim, journal: Journal) -> None:
    """fields: [] sends no indexed fields at all."""
    async with rig(sim, journal, hec_config(sim, fields=[])) as r:
        await r.send(events(2))
        await r.settled()
    assert all("fields" not in env for env in sim.indexed)


# ------------------------------------------------------------------------------------------------ wire


@pytest.mark.parametrize("gzip_on", [True, False])
async def test_gzip_is_on_by_default_and_can_be_turned_off(sim: HecSim, journal: Journal, gzip_on: bool) -> None:
    """Requests are gzipped on the wire by default; gzip: false sends them plain; either way all arrive."""
    config = hec_config(sim) if gzip_on else hec_config(sim, gzip=False)
    async with rig(sim, journal, config) as r:
        await r.send(events(50))
        await r.settled()
    post = event_posts(sim)[0]
    wire = int(post.headers["content-length"])
    if gzip_on:
        assert post.headers["content-encoding"] == "gzip"
        assert wire < len(post.body_bytes) / 4  # the body really was compressed on the wire
    else:
        assert "content-encoding" not in post.headers
        assert wire == len(post.body_bytes)
    assert len(sim.indexed) == 50


async def test_batches_by_count_and_by_bytes(sim: HecSim, journal: Journal) -> None:
    """Requests hold at most batch.max_events events and batch.max_bytes of event JSON."""
    async with rig(sim, journal, hec_config(sim)) as r:
        await r.send(events(1200))
        await r.settled()
        assert [p.n_events for p in event_posts(sim)] == [500, 500, 200]  # max_events defaults to 500
    sim.clear()
    small = hec_config(sim, name="small", batch={"max_bytes": "2KiB", "max_wait": "0s"})
    async with rig(sim, journal, small) as r:
        sent = await r.send(events(30))
        await r.settled()
    counts = [p.n_events for p in event_posts(sim)]
    assert sum(counts) == 30 and len(counts) >= 4
    start = 0
    for n in counts:  # max_bytes bounds the event JSON of each request (before the envelope and gzip)
        assert sum(len(e.to_json()) for e in sent[start : start + n]) <= 2048
        start += n


async def test_max_wait_gathers_a_trickle_into_one_request(sim: HecSim, journal: Journal) -> None:
    """Events trickling in within batch.max_wait go out together in one request."""
    async with rig(sim, journal, hec_config(sim, batch={"max_wait": "500ms"})) as r:
        for _ in range(5):
            await r.send(events(2))
            await asyncio.sleep(0.02)  # the producer's pace (a trickle), not a wait for the code under test
        await r.settled()
    assert [p.n_events for p in event_posts(sim)] == [10]


# ------------------------------------------------------------------------------------------------ 400s


async def test_partial_acceptance_dead_letters_the_bad_event_and_never_duplicates_the_prefix(
    sim: HecSim, journal: Journal
) -> None:
    """Bad events are dead-lettered with HEC's reason; the good ones around them arrive exactly once, in order."""
    sim.reject_event_if = lambda env: "bad" if env["event"]["device"] in ("bad-1", "bad-2") else None
    sent = [*events(3), event(device="bad-1"), *events(4), event(device="bad-2"), *events(3)]
    async with rig(sim, journal, hec_config(sim)) as r:
        await r.send(sent)
        await r.settled()
        dead = await r.dead()
    good = [e.id for e in sent if not e.device.startswith("bad")]
    assert sim.ids() == good  # each accepted event exactly once, in order: the prefix was not resent
    assert [d.id for d in dead] == [sent[3].id, sent[8].id]
    for d in dead:
        assert "Invalid data format" in d.reason and "code 6" in d.reason  # HEC's own text (§3.2)
    # Every request after a partial acceptance started after the refused event (§3.1).
    assert [p.n_events for p in event_posts(sim)] == [3, 4, 3]


async def test_a_400_without_an_event_number_is_split_until_the_bad_event_is_alone(
    sim: HecSim, journal: Journal
) -> None:
    """A 400 that does not say which event is bad splits the batch: only that event is dead-lettered."""
    # HEC's 400 code 6 without its invalid-event-number: 10 -> 5 -> 2 -> 1 requests refused.
    sim.fail_next(4, 400, 6)
    sent = events(10)
    async with rig(sim, journal, hec_config(sim)) as r:
        await r.send(sent)
        await r.settled()
        dead = await r.dead()
    assert [d.id for d in dead] == [sent[0].id]
    assert "Invalid data format" in dead[0].reason
    assert sorted(sim.ids()) == sorted(ids_of(sent[1:]))  # the other nine, once each


async def test_an_index_the_token_may_not_use_holds_instead_of_dead_lettering(sim: HecSim, journal: Journal) -> None:
    """An index the token may not use holds (nothing dead-lettered) and delivers once the index is allowed."""
    sim.allowed_indexes = frozenset({"main"})
    async with rig(sim, journal, hec_config(sim, index="forbidden")) as r:
        sent = await r.send(events(5))
        await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds")
        assert "forbidden" in r.delivery.status.detail and "allow index" in r.delivery.status.detail
        assert sim.indexed == [] and r.cursor == 0 and await r.dead() == []
        sim.allowed_indexes = None  # the operator allows the index
        await r.settled()
    assert sim.ids() == ids_of(sent)


async def test_a_wrong_url_path_holds(sim: HecSim, journal: Journal) -> None:
    """A url whose path is not HEC's holds with a hint about the port; nothing is dead-lettered."""
    async with rig(sim, journal, hec_config(sim.url + "/proxy")) as r:
        await r.send(events(3))
        await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds")
        assert "HTTP 404" in r.delivery.status.detail and "HEC port" in r.delivery.status.detail
        assert await r.dead() == [] and r.cursor == 0


# ------------------------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("break_token", "text"),
    [("revoke_token", "not known to HEC"), ("disable_token", "disabled")],
)
async def test_a_refused_token_holds_logs_once_and_loses_nothing(
    sim: HecSim, journal: Journal, break_token: str, text: str
) -> None:
    """A revoked or disabled token holds, logs one error line, and delivers everything once the token works."""
    getattr(sim, break_token)(TOKEN)
    with structlog.testing.capture_logs() as logs:
        async with rig(sim, journal, hec_config(sim)) as r:
            sent = await r.send(events(20))
            await wait_until(lambda: r.delivery._attempts >= 5, "several attempts were refused")
            assert r.delivery.status.state == "holding" and text in r.delivery.status.detail
            assert sim.indexed == [] and r.cursor == 0 and await r.dead() == []
            sim.add_token(TOKEN)  # the operator fixes the token
            await r.settled()
            assert await r.dead() == []
    assert sim.ids() == ids_of(sent)
    holds = [e for e in logs if "holding" in e["event"]]
    assert len(holds) == 1 and holds[0]["log_level"] == "error"  # one line per window, not one per attempt
    assert TOKEN not in repr(logs)


# ------------------------------------------------------------------------------------------------ retries


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda s: s.fail_next(2, 500), id="500"),
        pytest.param(lambda s: s.fail_next(2, 503), id="503-busy"),
        pytest.param(lambda s: s.fail_next(2, 429), id="429"),
        pytest.param(lambda s: s.fail_next(2, 502), id="502-proxy"),
        pytest.param(lambda s: setattr(s, "drop_before_body", 2), id="connection-dropped"),
    ],
)
async def test_transient_failures_are_retried_until_delivered_once(
    sim: HecSim, journal: Journal, fault: Callable[[HecSim], None]
) -> None:
    """5xx, 429 and dropped connections are retried until every event has arrived, none twice."""
    fault(sim)
    async with rig(sim, journal, hec_config(sim)) as r:
        sent = await r.send(events(40))
        await r.settled()
        assert await r.dead() == []
    assert sorted(sim.ids()) == sorted(ids_of(sent))  # all, none twice
    assert len(event_posts(sim)) >= 3


async def test_an_ambiguous_failure_is_resent_with_the_same_ids(sim: HecSim, journal: Journal) -> None:
    """A reply lost after HEC indexed the batch resends it: a duplicate with the same ids, never a loss."""
    # §5.5: indexed, then the connection dropped before the reply. Resending may duplicate, never lose;
    # the duplicates carry the same id (DESIGN 4), so searches can dedup on it.
    sim.drop_after_body = 1
    async with rig(sim, journal, hec_config(sim)) as r:
        sent = await r.send(events(5))
        await r.settled()
        assert await r.dead() == []
    assert Counter(sim.ids()) == Counter({e.id: 2 for e in sent})


async def test_a_partial_busy_reply_resends_only_the_rest(sim: HecSim, journal: Journal) -> None:
    """A busy reply that took the first events resends only the rest: each event arrives once."""
    # §3.1: {"text":"Server is busy","code":9,"invalid-event-number":3}: the first 3 are in Splunk.
    sim.fail_next(1, 503, invalid_event_number=3)
    async with rig(sim, journal, hec_config(sim)) as r:
        sent = await r.send(events(10))
        await r.settled()
        assert await r.dead() == []
    assert sim.ids() == ids_of(sent)  # once each, in order
    assert [p.n_events for p in event_posts(sim)] == [3, 7]


async def test_hec_unreachable_at_start_then_up(journal: Journal) -> None:
    """HEC down at start: health says unreachable, delivery retries, and everything arrives once it is up."""
    port = free_port()
    async with rig(None, journal, hec_config(f"http://127.0.0.1:{port}")) as r:
        health = await r.sink.health()
        assert not health.ok and health.detail.startswith("unreachable")
        sent = await r.send(events(5))
        await wait_until(lambda: r.delivery.status.state == "retrying", "the sink retries")
        assert "cannot connect to" in r.delivery.status.detail
        sim = HecSim(tokens=(TOKEN,))
        await sim.start(port=port)
        try:
            await r.settled()
        finally:
            await sim.stop()
    assert sim.ids() == ids_of(sent)


async def test_retry_after_is_honoured(sim: HecSim, journal: Journal) -> None:
    """HEC's Retry-After delays the next attempt; without it the short backoff applies again."""
    async with rig(sim, journal, hec_config(sim, max_in_flight=1)) as r:  # one request at a time: exact timing
        sim.fail_next(1, 503, retry_after=1)
        t0 = time.monotonic()
        await r.send(events(3))
        await r.settled()
        waited = time.monotonic() - t0
        # Backoff alone would retry after at most 0.2 s (retry.max); HEC asked for 1 s.
        assert waited >= 0.95
        sim.fail_next(1, 503)
        t0 = time.monotonic()
        await r.send(events(3))
        await r.settled()
        assert time.monotonic() - t0 < 0.9
    assert len(sim.ids()) == 6


async def test_retry_after_is_honoured_when_pipelining(sim: HecSim, journal: Journal) -> None:
    """Retry-After is honoured with two requests in flight too: no request goes out early."""
    config = hec_config(sim, max_in_flight=2, batch={"max_events": 3, "max_wait": "0s"})
    async with rig(sim, journal, config) as r:
        sim.fail_next(1, 503, retry_after=2)
        sent = await r.send(events(9))  # three batches of three, two of them on their way at once
        await r.settled()
    # Each event once; with two batches on their way, not necessarily in order (Splunk orders by time).
    assert Counter(sim.ids()) == Counter(ids_of(sent)) and len(sim.ids()) == 9
    posts = event_posts(sim)
    statuses = [p.status for p in posts]
    assert statuses.count(503) == 1 and statuses.count(200) == 3, statuses
    refused = posts[statuses.index(503)]
    # After the 503 only the batch already on its way beside it may arrive early; the retry and the next batch
    # waited the 2 s HEC asked for.
    later = sorted(p.at - refused.at for p in posts if p.at > refused.at)
    assert len(later) == 3 and later[1] >= 1.95, later


def test_retry_after_forms() -> None:
    """Retry-After is read as seconds or an HTTP date; nonsense is ignored, a negative value means now."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= (parse_retry_after(in_a_minute) or 0) <= 61


async def test_413_splits_the_batch_and_dead_letters_only_an_event_too_large_alone(journal: Journal) -> None:
    """413 halves the batch until only an event too large on its own is dead-lettered; the rest arrive."""
    async with HecSim(tokens=(TOKEN,), max_content_length=3000) as sim:
        config = hec_config(sim, gzip=False)  # uncompressed, so the size is predictable
        async with rig(sim, journal, config) as r:
            sent = events(12)
            huge = event(description="x" * 4000)
            await r.send([*sent[:6], huge, *sent[6:]])
            await r.settled()
            dead = await r.dead()
        assert sorted(sim.ids()) == sorted(ids_of(sent))
        assert [d.id for d in dead] == [huge.id] and "too large" in dead[0].reason
        assert any(p.status == 413 for p in event_posts(sim))
        assert all(p.n_events <= 6 for p in event_posts(sim))


# ------------------------------------------------------------------------------------------------ outage


async def test_an_outage_under_steady_load_delivers_everything_once(sim: HecSim, journal: Journal) -> None:
    """3 s of 503s while 200 events/s keep coming: all arrive, none twice, nothing dead-lettered, no storm."""
    config = hec_config(sim, retry={"initial": "20ms", "max": "200ms"}, batch={"max_wait": "50ms"})
    sent: list[Event] = []
    states: set[str] = set()
    async with rig(sim, journal, config) as r:

        async def produce(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sent.extend(await r.send(events(4)))
                states.add(r.delivery.status.state)
                await asyncio.sleep(0.02)

        async with asyncio.timeout(40):
            await produce(0.5)
            sim.outage = True
            await produce(3)
            during = len(sim.indexed)
            sim.outage = False
            await produce(0.5)
            await r.settled(timeout=20)
        assert await r.dead() == []
    assert len(sent) > 300
    ids = sim.ids()
    assert len(ids) == len(set(ids)) == len(sent)  # every event once
    assert set(ids) == set(ids_of(sent))
    assert during < len(sent) / 2 and "retrying" in states  # the outage did hold delivery back
    # Backed off meanwhile (retry.max 200 ms, one probe at a time): tens of refused requests in 3 s, not hundreds.
    assert 5 <= sum(1 for p in event_posts(sim) if p.status == 503) <= 60


# ------------------------------------------------------------------------------------------------ token rotation


@pytest.mark.parametrize("order", ["file-first", "splunk-first"])
async def test_a_rotated_token_file_is_used_without_restart_or_loss(
    sim: HecSim, journal: Journal, tmp_path: Path, order: str
) -> None:
    """A token file replaced on disk is used at once, whichever side rotates first; nothing is lost or doubled."""
    token_file = tmp_path / "hec-token"
    token_file.write_text("token-A\n")
    cfg_file = tmp_path / "hubbridge.yaml"
    cfg_file.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "sinks:\n"
        "  - name: splunk\n"
        "    type: splunk_hec\n"
        f"    url: {sim.url}\n"
        "    token_file: hec-token\n"
        "    batch: {max_wait: 50ms}\n"
        "    retry: {initial: 20ms, max: 200ms}\n"
    )
    config = load_config(cfg_file).sinks[0]
    assert isinstance(config, SplunkHecSinkConfig)
    sim.add_token("token-A")

    def rotate_file() -> None:
        tmp = tmp_path / "hec-token.new"
        tmp.write_text("token-B\n")
        os.replace(tmp, token_file)  # how systemd credentials and secret managers replace a file

    sent: list[Event] = []
    async with rig(sim, journal, config) as r:
        for i in range(40):
            sent.extend(await r.send(events(5)))
            if i == 15:
                if order == "file-first":
                    sim.add_token("token-B")
                    rotate_file()
                    sim.revoke_token("token-A")
                else:  # revoked in Splunk first: the sink holds until the file catches up
                    sim.add_token("token-B")
                    sim.revoke_token("token-A")
            if i == 25 and order == "splunk-first":
                rotate_file()
            await asyncio.sleep(0.02)
        await r.settled()
        assert await r.dead() == []
    ids = sim.ids()
    assert len(ids) == len(set(ids)) == len(sent)
    assert event_posts(sim)[-1].status == 200  # accepted with token-B: token-A no longer exists
    if order == "splunk-first":
        assert any(p.status == 403 for p in event_posts(sim))


# ------------------------------------------------------------------------------------------------ indexer ack


def ack_polled(request: Any) -> bool:
    """Whether ``request`` was an /ack poll for at least one ackId that HEC answered."""
    if request.path != "/services/collector/ack" or request.status != 200:
        return False
    return bool(json.loads(request.body_bytes).get("acks"))


def ack_config(sim: HecSim, **kw: Any) -> SplunkHecSinkConfig:
    options: dict[str, Any] = {"token": ACK_TOKEN, "ack": True, "ack_poll_interval": "100ms", "ack_timeout": "2s"}
    return hec_config(sim, **(options | kw))


async def test_the_cursor_waits_for_the_indexer_ack(sim: HecSim, journal: Journal) -> None:
    """With ack: true the cursor moves only once Splunk confirms indexing, on one GUID channel."""
    sim.ack_delay = 0.6
    async with rig(sim, journal, ack_config(sim)) as r:
        sent = await r.send(events(10))
        await sim.wait_indexed(10)
        # The sink asked for the ackId and HEC said "not yet" (false): the cursor had its chance to move.
        await wait_until(lambda: any(ack_polled(q) for q in sim.requests), "an ack poll was answered")
        assert r.cursor == 0  # indexed, not yet confirmed: the cursor stays (DESIGN 4)
        assert r.sink.pending_acks == 1
        await r.settled()
        assert r.sink.pending_acks == 0
    assert sim.ids() == ids_of(sent)
    polls = [q for q in sim.requests if q.path == "/services/collector/ack"]
    assert polls and all(q.status == 200 for q in polls)
    # §4: the same GUID channel on the event posts and on the polls.
    channels = {q.channel for q in polls} | {q.channel for q in event_posts(sim)}
    assert len(channels) == 1 and GUID.fullmatch(channels.pop() or "")


async def test_batches_pipeline_while_acks_are_pending(sim: HecSim, journal: Journal) -> None:
    """With ack: true later batches go out while earlier ones wait for their acks."""
    sim.ack_delay = 1.0
    async with rig(sim, journal, ack_config(sim, batch={"max_events": 2, "max_wait": "0s"})) as r:
        sent = await r.send(events(10))
        # All five requests awaited their acks at once (five batches, none confirmed before 1 s): the loop did not
        # wait for each ack before sending the next batch.
        await wait_until(lambda: r.sink.pending_acks == 5, "five batches await their acks")
        assert r.cursor == 0 and len(sim.indexed) == 10
        await r.settled()
    # Every event once. Batches on their way at once may be indexed in any order: Splunk orders events by _time.
    assert sorted(sim.ids()) == sorted(ids_of(sent))


async def test_a_lost_ack_is_resent_after_ack_timeout(sim: HecSim, journal: Journal) -> None:
    """A batch whose ack never comes is resent after ack_timeout, not before, with one warning line."""
    sim.ack_never = True  # acks for what is indexed now never come (§4 item 6: "pending or lost")
    with structlog.testing.capture_logs() as logs:
        async with rig(sim, journal, ack_config(sim, ack_timeout="1s")) as r:
            sent = await r.send(events(6))
            await sim.wait_indexed(6)
            sim.ack_never = False
            t0 = time.monotonic()
            await r.settled()
            assert time.monotonic() - t0 >= 0.7  # not before ack_timeout
            assert await r.dead() == []
    # Resent once with the same ids: a duplicate Splunk can dedup, never a loss.
    assert Counter(sim.ids()) == Counter({e.id: 2 for e in sent})
    assert len([e for e in logs if "did not confirm a batch in time" in e["event"]]) == 1


async def test_ack_on_a_token_without_ack_says_how_to_fix_it_and_holds(sim: HecSim, journal: Journal) -> None:
    """ack: true on a token without useACK (code 14): health says how to fix it, one line, events wait."""
    config = hec_config(sim, ack=True, ack_poll_interval="100ms", ack_timeout="2s")  # TOKEN has no useACK
    with structlog.testing.capture_logs() as logs:
        async with rig(sim, journal, config) as r:
            health = await r.sink.health()
            assert not health.ok and health.detail.startswith("ack misconfigured")
            assert "ack: false" in health.detail and "enable indexer acknowledgement" in health.detail
            sent = await r.send(events(5))
            await wait_until(lambda: r.delivery._attempts >= 3, "several attempts were held")
            assert r.delivery.status.state == "holding"
            assert sim.indexed == [] and r.cursor == 0 and await r.dead() == []
            sim.add_token(TOKEN, ack=True)  # the operator enables ack on the token
            await r.settled()
    assert sim.ids() == ids_of(sent)
    (hint,) = hold_lines(logs)  # one line, however many attempts were held
    assert hint["log_level"] == "error" and "set ack: false" in hint["reason"]


def hold_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log lines at warning or above: what an operator watching the journal sees."""
    return [e for e in logs if e["log_level"] in ("warning", "error", "critical")]


@pytest.mark.parametrize("answer", [None, FLUENT_BIT_NO_ENDPOINT], ids=["404", "fluent-bit-400"])
async def test_ack_without_an_ack_endpoint_holds_with_one_line_until_the_receiver_has_acks(
    journal: Journal, answer: tuple[int, str] | None
) -> None:
    """ack: true, receiver without /ack: health says set ack: false, events wait (one log line), then arrive once."""
    async with HecSim(tokens=(TOKEN,), ack_endpoint=False) as sim:
        if answer is not None:
            sim.no_endpoint_reply = answer
        config = hec_config(sim, ack=True, ack_poll_interval="100ms", ack_timeout="2s")
        with structlog.testing.capture_logs() as logs:
            async with rig(sim, journal, config) as r:
                health = await r.sink.health()
                assert not health.ok and health.detail.startswith("ack misconfigured")
                assert "set ack: false" in health.detail and "no indexer acknowledgement endpoint" in health.detail
                sent = await r.send(events(5))
                await wait_until(lambda: r.delivery._attempts >= 5, "several attempts were held")
                assert r.delivery.status.state == "holding" and "set ack: false" in r.delivery.status.detail
                assert event_posts(sim) == []  # nothing was sent before /ack was proven
                assert sim.indexed == [] and r.cursor == 0 and await r.dead() == []
                while_holding = list(logs)
                # The operator fixes the receiver: acknowledgement on, for this token.
                sim.ack_endpoint = True
                sim.add_token(TOKEN, ack=True)
                await r.settled()
                assert (await r.sink.health()).ok
                assert await r.dead() == []
    assert sim.ids() == ids_of(sent)  # every event once
    (line,) = hold_lines(while_holding)  # one line for the problem, not one per attempt
    assert line["log_level"] == "error" and "holding" in line["event"] and "set ack: false" in line["reason"]
    assert "sink delivering again" in [e["event"] for e in logs if e["log_level"] == "info"]
    assert hold_lines(logs) == hold_lines(while_holding)  # and nothing more to warn about once fixed


async def test_ack_without_an_ack_endpoint_then_a_restart_with_ack_false_delivers_everything_once(
    journal: Journal,
) -> None:
    """ack: true on Fluent Bit's Splunk input holds; restarted with ack: false, each held event arrives once."""
    async with HecSim(tokens=(TOKEN,), ack_endpoint=False) as sim:
        sim.no_endpoint_reply = FLUENT_BIT_NO_ENDPOINT
        config = hec_config(sim, ack=True, ack_poll_interval="100ms", ack_timeout="2s")
        async with rig(sim, journal, config) as r:
            sent = await r.send(events(7))
            await wait_until(lambda: r.delivery._attempts >= 3, "several attempts were held")
            assert r.delivery.status.state == "holding" and "HTTP 400 on /services/collector/ack" in (
                r.delivery.status.detail
            )
            assert sim.indexed == [] and r.cursor == 0 and await r.dead() == []
        async with rig(sim, journal, hec_config(sim)) as r:  # the operator sets ack: false and restarts
            assert (await r.sink.health()).ok
            await r.settled()
            assert await r.dead() == []
    assert sim.ids() == ids_of(sent)


async def test_an_ack_endpoint_that_vanishes_while_acks_are_pending_holds_with_one_line(
    sim: HecSim, journal: Journal
) -> None:
    """/ack gone while batches await their acks: one line, the batches wait, and after the fix none is lost."""
    sim.ack_delay = 60.0  # indexed, not confirmed before /ack disappears
    with structlog.testing.capture_logs() as logs:
        async with rig(sim, journal, ack_config(sim, ack_timeout="60s")) as r:
            sent = await r.send(events(6))
            await wait_until(lambda: r.sink.pending_acks >= 1 and len(sim.indexed) == 6, "acks are pending")
            sim.ack_endpoint = False  # a proxy in front of HEC now hides /ack
            await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds (long before ack_timeout)")
            await wait_until(lambda: r.delivery._attempts >= 3, "several attempts were held")
            assert "set ack: false" in r.delivery.status.detail and r.cursor == 0 and await r.dead() == []
            while_holding = list(logs)
            sim.ack_delay = 0.0
            sim.ack_endpoint = True
            await r.settled()
            assert await r.dead() == []
    # Indexed before /ack vanished and sent again once it was back: a duplicate with the same ids, never a loss.
    assert Counter(sim.ids()) == Counter({e.id: 2 for e in sent})
    (line,) = hold_lines(while_holding)
    assert "holding" in line["event"] and "set ack: false" in line["reason"]


async def test_ack_on_a_receiver_that_answers_ack_with_a_plain_200_holds_instead_of_waiting(journal: Journal) -> None:
    """/ack answering 200 without §4's acks object (a lenient receiver) holds saying set ack: false; no event sent."""
    async with HecSim(tokens=(TOKEN,), ack_endpoint=False) as sim:
        sim.no_endpoint_reply = (200, "OK")  # takes any POST, confirms nothing
        config = hec_config(sim, ack=True, ack_poll_interval="100ms", ack_timeout="2s")
        with structlog.testing.capture_logs() as logs:
            async with rig(sim, journal, config) as r:
                health = await r.sink.health()
                assert not health.ok and health.detail.startswith("ack misconfigured")
                assert "without the acks object" in health.detail and "set ack: false" in health.detail
                sent = await r.send(events(4))
                await wait_until(lambda: r.delivery._attempts >= 4, "several attempts were held")
                assert r.delivery.status.state == "holding" and "set ack: false" in r.delivery.status.detail
                assert event_posts(sim) == [] and r.cursor == 0 and await r.dead() == []
        (line,) = hold_lines(logs)
        assert "holding" in line["event"]
        async with rig(sim, journal, hec_config(sim)) as r:  # restarted with ack: false
            await r.settled()
    assert sim.ids() == ids_of(sent)


# ------------------------------------------------------------------------------------------------ metrics


async def test_metrics_also_sends_numeric_values_as_metric_events_too(sim: HecSim, journal: Journal) -> None:
    """metrics: also sends numeric values as metric events into metrics_index, as well as the events."""
    config = hec_config(sim, index="home", metrics="also", metrics_index="home_metrics")
    temp = event(value=21.5, unit="°C", device="Hall sensor", room="Hall", device_id="7")
    switch = event(attribute="switch", value="on", unit=None)
    flag = event(attribute="motion", value=True, unit=None)  # a boolean is not a measurement
    async with rig(sim, journal, config) as r:
        await r.send([temp, switch, flag])
        await r.settled()
    assert sim.ids() == ids_of([temp, switch, flag])
    (metric,) = sim.metrics()
    assert metric["event"] == "metric" and metric["index"] == "home_metrics"
    assert metric["time"] == temp.time and metric["host"] == "house"
    assert metric["fields"] == {
        "metric_name:temperature": 21.5,
        "hub": "house",
        "device": "Hall sensor",
        "device_id": "7",
        "room": "Hall",
        "unit": "°C",
    }
    assert all(e["index"] == "home" for e in sim.events())


async def test_metrics_only_sends_numbers_as_metrics_and_the_rest_as_events(sim: HecSim, journal: Journal) -> None:
    """metrics: only sends numeric values as metrics only, and non-numeric changes as events."""
    config = hec_config(sim, metrics="only", metrics_index="m")
    temp = event(value=19)
    switch = event(attribute="switch", value="off", unit=None, room=None)
    async with rig(sim, journal, config) as r:
        await r.send([temp, switch])
        await r.settled()
    assert sim.ids() == [switch.id]
    (metric,) = sim.metrics()
    assert metric["fields"]["metric_name:temperature"] == 19
    assert "room" in metric["fields"]


async def test_metrics_partial_acceptance_maps_back_to_the_right_record(sim: HecSim, journal: Journal) -> None:
    """A refused metric envelope dead-letters its own record, saying its event was indexed."""
    # Two envelopes per numeric record: HEC's invalid-event-number counts envelopes, the journal records.
    sim.reject_event_if = lambda env: (
        "no" if env.get("event") == "metric" and env["fields"].get("device") == "X" else None
    )
    config = hec_config(sim, metrics="also", metrics_index="m")
    sent = [*events(2), event(device="X"), *events(2)]
    async with rig(sim, journal, config) as r:
        await r.send(sent)
        await r.settled()
        dead = await r.dead()
    assert [d.id for d in dead] == [sent[2].id]
    assert "its event was indexed" in dead[0].reason
    assert sim.ids() == ids_of(sent)  # every event once (the bad record's event went in before its metric)
    assert len(sim.metrics()) == 4


# ------------------------------------------------------------------------------------------------ health


async def test_health_distinguishes_ok_bad_token_unhealthy_and_unreachable(sim: HecSim) -> None:
    """Health tells apart healthy, bad or disabled token, HEC unhealthy, and HEC unreachable."""

    async def check(config: SplunkHecSinkConfig) -> str:
        sink = SplunkHecSink(config)
        await sink.start()
        try:
            health = await sink.health()
            return ("ok: " if health.ok else "") + health.detail
        finally:
            await sink.close()

    assert (await check(hec_config(sim))).startswith("ok: HEC at")
    assert (await check(hec_config(sim, token="not-a-token"))).startswith("bad token")
    sim.add_token("off-token")
    sim.disable_token("off-token")
    assert "disabled" in await check(hec_config(sim, token="off-token"))
    sim.health_status = "queues_full"
    detail = await check(hec_config(sim))
    assert detail.startswith("unhealthy") and "queues are full" in detail
    assert (await check(hec_config(f"http://127.0.0.1:{free_port()}"))).startswith("unreachable")


async def test_health_on_a_receiver_without_health_checks_the_token_by_an_empty_post(journal: Journal) -> None:
    """No /health (some proxies): health is ok when the token probe passes, bad token or wrong URL otherwise."""
    async with HecSim(tokens=(TOKEN,), health_endpoint=False) as sim:
        sim.no_endpoint_reply = FLUENT_BIT_NO_ENDPOINT  # a plain 400, which is not a token problem either

        async def check(config: SplunkHecSinkConfig) -> tuple[bool, str]:
            sink = SplunkHecSink(config)
            await sink.start()
            try:
                health = await sink.health()
                return health.ok, health.detail
            finally:
                await sink.close()

        ok, detail = await check(hec_config(sim))
        assert ok and detail.startswith("HEC at") and "no /health endpoint (HTTP 400)" in detail
        ok, detail = await check(hec_config(sim, token="not-a-token"))
        assert not ok and detail.startswith("bad token") and "not known to HEC" in detail
        ok, detail = await check(hec_config(sim.url + "/wrong"))
        assert not ok and detail.startswith("unexpected answer") and "HEC port" in detail
        sim.outage = True
        ok, detail = await check(hec_config(sim))
        assert not ok and detail.startswith("unhealthy")
        sim.outage = False
        async with rig(sim, journal, hec_config(sim)) as r:  # and events flow
            sent = await r.send(events(3))
            await r.settled()
    assert sim.ids() == ids_of(sent)


# ------------------------------------------------------------------------------------------------ TLS


def test_tls_verification_is_on_by_default() -> None:
    """TLS certificates and host names are verified unless the config says otherwise."""
    config = hec_config("https://splunk.example:8088")
    assert config.tls.verify is True
    ctx = build_ssl_context(config.tls)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


async def test_verify_false_warns_loudly_at_start() -> None:
    """tls.verify: false logs one loud warning when the sink starts."""
    config = hec_config("https://splunk.example:8088", tls={"verify": False})
    assert build_ssl_context(config.tls).verify_mode == ssl.CERT_NONE
    sink = SplunkHecSink(config)
    with structlog.testing.capture_logs() as logs:
        await sink.start()
        await sink.close()
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert "TLS VERIFICATION IS OFF" in warning["event"]


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    """A private CA and a certificate for 127.0.0.1 it signed (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=hubbridge test CA")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem")
    run("x509", "-in", "srv.pem", "-noout")  # sanity: readable
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-out", "srv.pem", "-extfile", "ext")
    return {"ca": d / "ca.pem", "cert": d / "srv.pem", "key": d / "srv.key"}


@contextlib.asynccontextmanager
async def tls_front(sim: HecSim, certs: dict[str, Path]) -> AsyncIterator[str]:
    """A TLS-terminating TCP relay in front of the simulator (HecSim itself speaks plain HTTP)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["cert"], certs["key"])

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, ConnectionError):
            writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(sim.host, sim.port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await server.wait_closed()


async def test_tls_untrusted_certificate_holds_and_ca_file_fixes_it(
    sim: HecSim, journal: Journal, certs: dict[str, Path]
) -> None:
    """An untrusted certificate holds with a ca_file hint; with tls.ca_file set, the held events arrive."""
    async with tls_front(sim, certs) as url:
        async with rig(sim, journal, hec_config(url)) as r:
            health = await r.sink.health()
            assert not health.ok and "not trusted" in health.detail and "ca_file" in health.detail
            await r.send(events(3))
            await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds")
            assert "not trusted" in r.delivery.status.detail and "ca_file" in r.delivery.status.detail
            assert sim.indexed == [] and await r.dead() == []
        async with rig(sim, journal, hec_config(url, tls={"ca_file": str(certs["ca"])})) as r:
            assert (await r.sink.health()).ok
            await r.settled()
    assert len(sim.ids()) == 3


# ------------------------------------------------------------------------------------------------ config


def test_config_requires_a_token_and_rejects_unknown_keys() -> None:
    """A config without a token, with a misspelt key or an inconsistent option is refused with its reason."""
    with pytest.raises(ValidationError, match="token"):
        SplunkHecSinkConfig.model_validate({"name": "s", "type": "splunk_hec", "url": "https://h:8088"})
    with pytest.raises(ValidationError, match="extra"):
        hec_config("https://h:8088", tokne="x")
    with pytest.raises(ValidationError, match="metrics_index"):
        hec_config("https://h:8088", metrics="also")
    with pytest.raises(ValidationError, match="unknown event field"):
        hec_config("https://h:8088", fields=["hub", "colour"])
    with pytest.raises(ValidationError, match="ack_timeout"):
        hec_config("https://h:8088", ack=True, ack_poll_interval="10s", ack_timeout="5s")


def test_config_defaults_and_url_forms() -> None:
    """Defaults are as documented, and a pasted endpoint path is cut off the url."""
    c = hec_config("https://splunk.example:8088/services/collector/event/")
    assert c.url == "https://splunk.example:8088"  # the endpoint path a user pasted is cut off
    c = SplunkHecSinkConfig.model_validate({"name": "s", "type": "splunk_hec", "url": "https://h:8088", "token": "t"})
    assert (c.batch.max_events, c.batch.max_bytes, c.batch.max_wait) == (500, 1024 * 1024, 1.0)
    assert c.gzip and not c.ack and c.metrics == "off" and c.tls.verify
    assert (c.ack_poll_interval, c.ack_timeout) == (10.0, 300.0)
    assert c.sourcetype == "hubbridge:event"
    assert c.fields == ["hub", "hub_type", "kind", "device_id", "attribute"]
    _, opts = build_sink(c)
    assert opts.max_in_flight == 2
    _, opts = build_sink(c.model_copy(update={"ack": True}))
    assert opts.max_in_flight == 100


def test_config_from_yaml_with_token_file_never_shows_the_token(tmp_path: Path) -> None:
    """token_file is read from YAML, its value never shows in a repr, and unknown keys name their line."""
    (tmp_path / "tok").write_text("s3cret-hec-token\n")
    (tmp_path / "c.yaml").write_text(
        "state_dir: .\nsinks:\n  - name: splunk\n    type: splunk_hec\n    url: https://h:8088\n    token_file: tok\n"
    )
    sink_cfg = load_config(tmp_path / "c.yaml").sinks[0]
    assert isinstance(sink_cfg, SplunkHecSinkConfig) and sink_cfg.token is not None
    assert sink_cfg.token.get() == "s3cret-hec-token"
    assert "s3cret" not in repr(sink_cfg) and "s3cret" not in repr(SplunkHecSink(sink_cfg).__dict__)
    (tmp_path / "c.yaml").write_text(
        "state_dir: .\nsinks:\n  - name: splunk\n    type: splunk_hec\n    url: https://h:8088\n    indx: x\n"
        "    token: t\n"
    )
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.indx: unknown key"):
        load_config(tmp_path / "c.yaml")


async def test_an_unreadable_token_file_holds(sim: HecSim, journal: Journal, tmp_path: Path) -> None:
    """A missing token file holds saying it cannot be read; once it is back, everything arrives."""
    token_file = tmp_path / "tok"
    token_file.write_text(TOKEN)
    (tmp_path / "c.yaml").write_text(
        f"state_dir: .\nsinks:\n  - name: splunk\n    type: splunk_hec\n    url: {sim.url}\n    token_file: tok\n"
        "    batch: {max_wait: 0s}\n    retry: {initial: 10ms, max: 100ms}\n"
    )
    config = load_config(tmp_path / "c.yaml").sinks[0]
    assert isinstance(config, SplunkHecSinkConfig)
    token_file.unlink()
    async with rig(sim, journal, config) as r:
        sent = await r.send(events(3))
        await wait_until(lambda: r.delivery.status.state == "holding", "the sink holds")
        assert "cannot read the token file" in r.delivery.status.detail
        token_file.write_text(TOKEN)
        await r.settled()
    assert sim.ids() == ids_of(sent)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"sim-hec-token\nsecond line\n", "line breaks"), (b"\xff\xfesim-hec-token", "not UTF-8 text")],
    ids=["two-lines", "not-utf8"],
)
async def test_a_token_file_that_is_no_token_holds_and_health_says_why(
    sim: HecSim, journal: Journal, tmp_path: Path, content: bytes, problem: str
) -> None:
    """A token file rotated to two lines or binary bytes: health and the hold say why, no crash; fixed, it delivers."""
    token_file = tmp_path / "tok"
    token_file.write_text(TOKEN)
    (tmp_path / "c.yaml").write_text(
        f"state_dir: .\nsinks:\n  - name: splunk\n    type: splunk_hec\n    url: {sim.url}\n    token_file: tok\n"
        "    batch: {max_wait: 0s}\n    retry: {initial: 10ms, max: 100ms}\n"
    )
    config = load_config(tmp_path / "c.yaml").sinks[0]
    assert isinstance(config, SplunkHecSinkConfig)
    token_file.write_bytes(content)  # replaced after the config was loaded
    async with rig(sim, journal, config) as r:
        health = await r.sink.health()
        assert not health.ok and health.detail.startswith("bad token") and problem in health.detail
        sent = await r.send(events(3))
        await wait_until(lambda: r.delivery._attempts >= 3, "several attempts were held")
        assert r.delivery.status.state == "holding" and problem in r.delivery.status.detail
        assert sim.requests == [] and r.cursor == 0  # nothing went out with a broken header
        token_file.write_text(TOKEN + "\n")
        await r.settled()
    assert sim.ids() == ids_of(sent)


def test_a_retry_outcome_never_carries_the_token() -> None:
    """No outcome reason (what the logs and /healthz show) ever carries the token."""
    config = hec_config("http://127.0.0.1:9", token="tok-visible?")
    body = Encoder(config).build([Record(1, "a", event().to_json())])
    for status, raw in [(403, b'{"text":"Invalid token","code":4}'), (503, b""), (500, b"oops")]:
        outcome = classify(Reply(status, raw), body.owners, body.parts, config)
        assert isinstance(outcome, Hold | Retry) and "tok-visible" not in outcome.reason
    assert gzip.decompress(body.data).startswith(b'{"time":')


# ------------------------------------------------------------------------------------------------ lifecycle


async def test_a_closed_sink_refuses_to_send_or_start_again(sim: HecSim) -> None:
    """send() or start() after close() raise RuntimeError instead of quietly opening a new session."""
    sink = SplunkHecSink(hec_config(sim, ack=True, token=ACK_TOKEN))
    record = Record(1, "ev-closed", event().to_json())
    async with sink:
        assert isinstance(await sink.send([record]), Delivered)
    with pytest.raises(RuntimeError, match=r"send\(\) after close\(\)"):
        await sink.send([record])
    with pytest.raises(RuntimeError, match=r"send\(\) after close\(\)"):
        await sink.send([])  # even with nothing to send
    with pytest.raises(RuntimeError, match=r"start\(\) after close\(\)"):
        await sink.start()
    assert sink._session is None and sink.acks._task is None  # nothing was reopened
    await sink.close()  # a second close is harmless
    assert len(event_posts(sim)) == 1


# ----------------------------------------------------------------------------------------- the token is never shown

ECHOED = "echo-me-5b1e0c77"


@contextlib.asynccontextmanager
async def echoing_receiver(replies: dict[str, tuple[int, int, dict[str, Any]]]) -> AsyncIterator[str]:
    """A misbehaving HEC stand-in (say, a debugging proxy) that puts the request's Authorization into its texts.

    ``replies`` maps a path to (HTTP status, HEC code, extra keys); it is read at each request, so a test can
    change it as it goes.
    """

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        status, code, extra = replies.get(request.path, (404, 0, {}))
        text = f"{CODE_TEXT.get(code, 'error')} (you sent {request.headers.get('Authorization')})"
        return web.json_response({"text": text, "code": code, **extra}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


CODE_TEXT = {
    0: "Success",
    5: "No data",
    6: "Invalid data format",
    9: "Server is busy",
    17: "HEC is healthy",
    24: "near capacity",
}


async def test_a_receiver_echoing_the_token_never_gets_it_into_reasons_dead_letters_or_logs(journal: Journal) -> None:
    """Whatever a receiver puts in its texts, the token never reaches /healthz, a dead letter or a log line."""
    replies: dict[str, tuple[int, int, dict[str, Any]]] = {
        "/services/collector/health": (200, 17, {}),
        "/services/collector/event": (400, 5, {}),  # "No data" to the health check's empty post
        "/services/collector/ack": (503, 9, {}),
    }
    async with echoing_receiver(replies) as url:
        with structlog.testing.capture_logs() as logs:
            ack_sink = SplunkHecSink(hec_config(url, token=ECHOED, ack=True))
            async with ack_sink:
                health = await ack_sink.health()
            assert not health.ok and "Server is busy" in health.detail and ECHOED not in health.detail
            assert "Splunk ********" in health.detail  # the text came through, the token blanked
            replies["/services/collector/event"] = (503, 9, {})
            async with rig(None, journal, hec_config(url, token=ECHOED)) as r:
                await r.send(events(2))
                await wait_until(lambda: r.delivery.status.state == "retrying", "the sink retries")
                assert "Server is busy" in r.delivery.status.detail and ECHOED not in r.delivery.status.detail
                replies["/services/collector/event"] = (400, 6, {"invalid-event-number": 0})
                await r.settled()
                dead = await r.dead()
                assert len(dead) == 2 and all("Invalid data format" in d.reason for d in dead)
                assert all(ECHOED not in d.reason for d in dead)
                replies["/services/collector/event"] = (200, 24, {})
                await r.send(events(1))
                await r.settled()
    warned = [e for e in logs if "near capacity" in e["event"]]
    assert len(warned) == 1 and "Splunk ********" in warned[0]["reply"]
    assert ECHOED not in repr(logs)


@pytest.mark.parametrize(
    "url",
    [
        "https://x:{t}@splunk.example:8088",
        "https://:{t}@splunk.example:8088/services/collector",
        "https://h:8088?token={t}",
    ],
    ids=["basic-userinfo", "token-as-password", "query-string"],
)
def test_a_url_holding_the_token_is_refused_without_repeating_it(tmp_path: Path, url: str) -> None:
    """A url with user:token@ or ?token= is a config error that says to use token/token_file, never showing it."""
    secret = "s3cret-in-url-0042"
    (tmp_path / "c.yaml").write_text(
        f"state_dir: .\nsinks:\n  - name: splunk\n    type: splunk_hec\n    url: {url.format(t=secret)}\n"
        "    token: t0ken\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml")
    assert "token or token_file" in str(info.value) and secret not in str(info.value)
    assert hec_config("https://splunk.example:8088/hec/prefix").url == "https://splunk.example:8088/hec/prefix"
