"""The MQTT sink (bridge.sinks.mqtt) against a real Mosquitto, driven by the real delivery loop and journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from bridge.journal import Journal
from bridge.pipeline import Pipeline
from bridge.sinks import build_sink
from bridge.sinks.base import Delivered, Hold
from bridge.sinks.mqtt import MqttSink, MqttSinkConfig
from bridge.sinks.topics import mqtt_topics
from tests.brokers import Mosquitto, mosquitto
from tests.helpers import BIG, caught_up, delivering, ingest, wait_until


def mqtt_config(url: str, **kwargs: Any) -> MqttSinkConfig:
    return MqttSinkConfig.model_validate({"name": "bus", "type": "mqtt", "url": url, **kwargs})


@dataclass
class Watcher:
    """A subscriber with a persistent session, as a home-automation consumer would run one."""

    port: int
    topic: str = "hubbridge/#"
    messages: list[tuple[str, str, str, bool]] = field(default_factory=list)  # topic, event_id, payload, retain
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ids(self) -> set[str]:
        return {m[1] for m in self.messages}

    async def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier="watcher",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=props,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for msg in client.messages:
                        user = dict(msg.properties.UserProperty) if msg.properties else {}
                        payload = msg.payload.decode() if isinstance(msg.payload, bytes) else str(msg.payload)
                        self.messages.append((msg.topic.value, user.get("event_id", ""), payload, msg.retain))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)  # the broker is restarting: reconnect (the session kept our queue)


@contextlib.asynccontextmanager
async def watching(broker: Mosquitto, topic: str = "hubbridge/#") -> AsyncIterator[Watcher]:
    watcher = Watcher(broker.port, topic)
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(10):
            await watcher.subscribed.wait()
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ------------------------------------------------------------------------------------------------ pure parts


def test_topics_keep_one_level_per_field_and_never_become_wildcards() -> None:
    """A device called "Lamp 1/2 #+" is one topic level, with no wildcard a subscriber would misread."""
    topic = mqtt_topics("hubbridge/{hub}/{device}/{attribute}")
    assert topic({"hub": "home", "device": "Lamp 1/2 #+", "attribute": "switch"}) == "hubbridge/home/Lamp 1_2 __/switch"
    # No label: the device id; a hub event: its kind.
    assert topic({"hub": "home", "device": None, "device_id": "42", "attribute": "level"}) == "hubbridge/home/42/level"
    assert topic({"hub": "home", "kind": "bridge", "attribute": "hub_status"}) == "hubbridge/home/bridge/hub_status"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"url": "http://127.0.0.1:1883"}, "expected mqtt://"),
        ({"url": "mqtt://user:pw@127.0.0.1"}, "username and password"),
        ({"topic": "hubbridge/#"}, "wildcards"),
        ({"topic": "hubbridge/{nope}"}, "unknown field {nope}"),
        ({"topic": "hubbridge//{hub}"}, "empty level"),
        ({"password": "x"}, "without username"),
        ({"qos": 0}, "qos"),
    ],
)
def test_config_mistakes_are_refused_with_the_reason(changes: dict[str, Any], problem: str) -> None:
    """`hubbridge check` names what is wrong in an MQTT sink's config instead of failing at the first publish."""
    with pytest.raises(ValidationError) as err:
        mqtt_config(**{"url": "mqtt://127.0.0.1:1883", **changes})
    assert problem in str(err.value)


# ------------------------------------------------------------------------------------------------ real broker


async def test_every_event_reaches_subscribers_with_its_id_as_a_user_property(tmp_path: Path, journal: Journal) -> None:
    """Subscribers get each change on its topic, the contract object as payload, the event id as `event_id`."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["bus"])
    async with mosquitto(tmp_path / "mqtt") as broker, watching(broker) as watcher:
        events = await ingest(pipeline, 30)
        sink, options = build_sink(mqtt_config(broker.url))
        assert isinstance(sink, MqttSink)
        async with sink, delivering(sink, journal, max_events=options.max_events):
            assert (await sink.health()).ok
            await caught_up(journal, "bus")
            await wait_until(lambda: len(watcher.messages) >= 30, "the subscriber got every event")
    by_id = {m[1]: m for m in watcher.messages}
    for ev in events:
        topic, _, payload, _ = by_id[ev.id]
        assert json.loads(payload) == ev.to_dict()
        assert topic == f"hubbridge/home/{ev.device}/{ev.attribute}"


async def test_value_payload_and_retained_last_value(tmp_path: Path, journal: Journal) -> None:
    """With `payload: value` and `retain: true`, a subscriber that connects later still gets each topic's last value."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["bus"])
    async with mosquitto(tmp_path / "mqtt") as broker:
        events = await ingest(pipeline, 12)
        sink, _ = build_sink(mqtt_config(broker.url, payload="value", retain=True))
        async with sink, delivering(sink, journal):
            await caught_up(journal, "bus")
        last: dict[str, Any] = {}
        for ev in events:
            last[f"hubbridge/home/{ev.device}/{ev.attribute}"] = ev.value
        async with watching(broker) as late:
            await wait_until(lambda: {m[0] for m in late.messages} == set(last), "the retained values arrived")
    assert all(retain for *_, retain in late.messages)
    assert {m[0]: json.loads(m[2]) for m in late.messages} == last


async def test_a_broker_restart_mid_stream_loses_nothing(tmp_path: Path, journal: Journal) -> None:
    """Mosquitto restarted while events flow: every event still reaches the subscriber, repeats carry the same id."""
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["bus"])
    rounds, per_round, restart_at = 24, 25, 8
    async with mosquitto(tmp_path / "mqtt") as broker, watching(broker) as watcher:
        sink, _ = build_sink(mqtt_config(broker.url, send_timeout="3s", retry={"initial": "20ms", "max": "200ms"}))
        sent: list[str] = []
        async with sink, delivering(sink, journal, max_events=10, retry_initial=0.02, retry_max=0.2):
            for n in range(rounds):
                if n == restart_at:
                    await broker.restart()  # SIGTERM, then the same port and persistence directory again
                    restarted_with = len(watcher.ids)
                sent += [ev.id for ev in await ingest(pipeline, per_round)]
                if n < restart_at:
                    # Paced by delivery, so the restart lands in the middle of the stream.
                    await caught_up(journal, "bus")
            await caught_up(journal, "bus")
            await wait_until(lambda: watcher.ids >= set(sent), "every event reached the subscriber", timeout=20)
    assert restart_at * per_round <= restarted_with < len(sent)
    # A repeat is the same event: same id, same payload.
    payloads: dict[str, str] = {}
    for _, event_id, payload, _ in watcher.messages:
        assert payloads.setdefault(event_id, payload) == payload
        assert json.loads(payload)["id"] == event_id


async def test_a_topic_the_broker_does_not_allow_holds_events_and_says_so(tmp_path: Path, journal: Journal) -> None:
    """A broker ACL that refuses the topic (PUBACK 0x87) is not taken as delivered: events wait, the line says why."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\ntopic write other/#\n", encoding="utf-8")
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["bus"])
    async with mosquitto(tmp_path / "mqtt", extra=f"acl_file {acl}\n") as broker:
        await ingest(pipeline, 3)
        sink, _ = build_sink(mqtt_config(broker.url))
        async with sink:
            outcome = await sink.send(await journal.read(0, 10, BIG))
    assert isinstance(outcome, Hold)
    assert "does not allow publishing to 'hubbridge/home/" in outcome.reason and "PUBACK 0x87" in outcome.reason
    assert journal.cursor("bus") == 0


def password_file(path: Path, user: str, password: str) -> Path:
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True, capture_output=True)
    return path


async def test_wrong_credentials_hold_events_with_one_clear_line(tmp_path: Path, journal: Journal) -> None:
    """A broker refusing the password: nothing is dropped, the sink holds and says to check username/password."""
    passwd = password_file(tmp_path / "passwd", "hubbridge", "right")
    pipeline = await Pipeline.open(journal)
    await journal.register_sinks(["bus"])
    extra = f"allow_anonymous false\npassword_file {passwd}\n"
    async with mosquitto(tmp_path / "mqtt", extra=extra) as broker:
        await ingest(pipeline, 2)
        sink, _ = build_sink(mqtt_config(broker.url, username="hubbridge", password="wr0ng-pa55"))
        async with sink:
            health = await sink.health()
            outcome = await sink.send(await journal.read(0, 10, BIG))
        good, _ = build_sink(mqtt_config(broker.url, username="hubbridge", password="right"))
        async with good:
            delivered = await good.send(await journal.read(0, 10, BIG))
    assert not health.ok and "refused the connection" in health.detail
    assert isinstance(outcome, Hold) and "check username/password" in outcome.reason
    assert "wr0ng-pa55" not in health.detail + outcome.reason
    assert isinstance(delivered, Delivered)
