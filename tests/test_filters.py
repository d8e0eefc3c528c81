"""Filters for every sink (bridge.filters): include/exclude, deadband, minimum interval.

The sequences are built from real captured Hubitat frames (shared/fixtures/hubitat/eventsocket_frames.txt: the
"Underfloor Heating" temperature, a "Lamp" switch, a bathroom humidity) run through the bridge's own frame parsing
and value typing, so values have the types the bridge really produces (the hub sends "20" as text). The fixtures
hold single frames, not long recordings, so each sequence steps a real frame's value and time. The rules are pure
and tested without sockets; that the state survives a restart and that a held value is sent when its window closes
is tested through the delivery loop, the journal and the webhook receiver over sockets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.events import Event
from bridge.filters import FilterEngine
from bridge.journal import Record
from bridge.options import FilterOptions
from bridge.sim.hubitat import fixture_text
from bridge.sources.hubitat.values import coerce, pushed
from tests.helpers import wait_until
from tests.sinks.webhook.rig import event, rig

T0 = 1_764_000_000.0


def frames() -> list[dict[str, Any]]:
    # The capture as the repository ships it (bridge/sim/hubitat/data, a copy of shared/fixtures/hubitat).
    text = fixture_text("eventsocket_frames.txt")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def frame(name: str) -> dict[str, Any]:
    return next(f for f in frames() if f["name"] == name)


_seq = 0


def record_of(obj: dict[str, Any], t: float, hub: str = "house") -> Record:
    """A real frame as the journal holds it after the bridge parsed and typed it (id and seq made up)."""
    global _seq
    _seq += 1
    p = pushed(obj, "eventsocket", t)
    assert p is not None
    ev = Event(
        id=f"{_seq:032x}",
        time=t,
        hub=hub,
        hub_type="hubitat",
        kind=p.kind,
        device_id=p.device_id,
        device=p.device,
        room=None,
        attribute=p.attribute,
        value=coerce(p.raw, None),
        previous=None,
        unit=p.unit,
        source="eventsocket",
        description=p.description,
    )
    return Record(_seq, ev.id, ev.to_json())


def series(name: str, values: list[Any], step: float = 1.0, start: float = T0) -> list[Record]:
    """The real frame ``name`` with these values, ``step`` seconds apart from ``start``."""
    base = frame(name)
    return [record_of({**base, "value": str(v)}, start + i * step) for i, v in enumerate(values)]


def values(records: list[Record]) -> list[Any]:
    return [json.loads(r.body)["value"] for r in records]


def engine(clock: list[float] | None = None, **options: Any) -> FilterEngine:
    now = clock if clock is not None else [T0]
    return FilterEngine(FilterOptions.model_validate(options), clock=lambda: now[0])


# ------------------------------------------------------------------------------------------------ rules


def test_include_and_exclude_by_hub_kind_device_room_attribute() -> None:
    """Only what the rules let through is forwarded: device by id or label glob, attribute lists, exclude last."""
    recs = [record_of(f, T0) for f in frames() if pushed(f, "eventsocket", T0) is not None]  # APP frames: not ours
    names = [(json.loads(r.body)["device"], json.loads(r.body)["attribute"]) for r in recs]
    assert ("Underfloor Heating", "temperature") in names and ("Lamp", "switch") in names

    send, filtered, _ = engine(include=[{"device": "underfloor*"}, {"device": "34"}]).decide(recs)
    assert [json.loads(r.body)["device"] for r in send] == ["Underfloor Heating", "Lamp"]
    assert filtered == len(recs) - 2

    send, _, _ = engine(
        include=[{"kind": "device", "attribute": ["switch", "humidity"]}], exclude=[{"device": "Back Yard*"}]
    ).decide(recs)
    assert sorted(json.loads(r.body)["attribute"] for r in send) == ["humidity", "switch"]

    send, _, _ = engine(include=[{"hub": "cabin"}]).decide(recs)
    assert send == []
    send, _, _ = engine(include=[{"room": "Bath*"}]).decide(recs)
    assert send == [], "these frames carry no room: a room rule matches none of them"


def test_config_rejects_empty_rules_and_non_positive_settings() -> None:
    """A filter that cannot mean anything is a config error, not a silent pass-through."""
    with pytest.raises(ValidationError):
        FilterOptions.model_validate({"deadband": {"temperature": 0}})
    with pytest.raises(ValidationError):
        FilterOptions.model_validate({"include": [{"attribute": []}]})
    with pytest.raises(ValidationError):
        FilterOptions.model_validate({"include": [{"colour": "red"}]})
    assert FilterOptions.model_validate({"min_interval": {"power": "30s"}}).min_interval == {"power": 30.0}


# ------------------------------------------------------------------------------------------------ deadband


def test_deadband_forwards_only_moves_of_at_least_the_band_from_the_last_forwarded_value() -> None:
    """Temperature 0.2: creeping by 0.1s is not forwarded, a move of exactly 0.2 is (no float surprise)."""
    recs = series("temperature", ["20", "20.1", "20.15", "20.2", "20.3", "20.45", "20.5", "19.9"])
    eng = engine(deadband={"temperature": 0.2})
    send, filtered, changed = eng.decide(recs)
    assert values(send) == [20, 20.2, 20.45, 19.9]
    assert filtered == 4
    (key,) = changed
    assert key == ("house", "device", "36", "temperature") and changed[key].forwarded == 19.9


def test_deadband_leaves_other_attributes_and_non_numbers_alone() -> None:
    """A switch's on/off and attributes without a band are always forwarded; they leave no state behind."""
    eng = engine(deadband={"temp*": 0.5})
    recs = series("switch", ["on", "off", "on"]) + series("humidity", ["61", "61.1"])
    send, filtered, changed = eng.decide(recs)
    assert filtered == 0 and len(send) == 5 and changed == {}


# ------------------------------------------------------------------------------------------------ min interval


def test_min_interval_thins_a_burst_and_sends_the_latest_when_the_window_closes() -> None:
    """Readings every second, min_interval 5s: the first goes, the latest of each window follows when it closes."""
    clock = [T0]
    eng = engine(clock, min_interval={"humidity": "5s"})
    recs = series("humidity", [60, 61, 62, 63], step=1.0)
    send, filtered, _ = eng.decide(recs)
    assert values(send) == [60] and filtered == 3
    assert eng.next_due() == pytest.approx(T0 + 5 - 1)  # the window of the 60 (t0) closes at t0+5, held at t0+1
    clock[0] = T0 + 3.9
    assert eng.due(10)[0] == []
    clock[0] = T0 + 4.1
    late, changed = eng.due(10)
    assert values(late) == [63], "the sink must end on the latest value, not the first of the window"
    assert eng.next_due() is None
    (st,) = changed.values()
    assert st.forwarded_time == T0 + 5 and st.pending is None  # the next window starts where this one ended
    # A reading in the new window waits for it; one after it goes at once.
    send, _, _ = eng.decide(series("humidity", [64], start=T0 + 6))
    assert send == [] and eng.next_due() == pytest.approx(T0 + 4.1 + 4)
    send, _, _ = eng.decide(series("humidity", [65], start=T0 + 10))
    assert values(send) == [65] and eng.next_due() is None, "a value after the window goes at once"


def test_min_interval_value_back_within_deadband_cancels_the_held_one() -> None:
    """With both: a held value is dropped when a newer one is back within the band of what the sink has."""
    clock = [T0]
    eng = engine(clock, deadband={"temperature": 0.2}, min_interval={"temperature": "10s"})
    send, _, _ = eng.decide(series("temperature", ["20", "20.6", "20.1"], step=1.0))
    assert values(send) == [20]
    assert eng.next_due() is None, "20.1 is within 0.2 of the forwarded 20: nothing stale to send later"


# ------------------------------------------------------------------------------------------------ through the loop


async def test_deadband_state_survives_a_restart_and_filtered_events_advance_the_cursor(tmp_path: Path) -> None:
    """After a restart the deadband compares with the value forwarded before it; nothing filtered is dead-lettered."""
    from bridge.sim.webhook import WebhookSim

    async with WebhookSim() as sim:
        cfg = {"secret": None, "filters": {"deadband": {"temperature": 0.2}}}
        async with rig(tmp_path, sim, **cfg) as r:
            await r.send([event(device_id="9", value=v) for v in (20.0, 20.1)])
            await r.settled()
            assert r.delivery.status.filtered == 1 and r.delivery.status.delivered == 1
        async with rig(tmp_path, sim, **cfg) as r:
            await r.send([event(device_id="9", value=v) for v in (20.15, 20.25, 20.3)])
            await r.settled()
            assert [e["value"] for e in sim.delivered()] == [20.0, 20.25]
            assert r.delivery.status.filtered == 2
            assert await r.dead() == []


async def test_held_value_is_sent_when_the_window_closes_even_after_a_restart(tmp_path: Path) -> None:
    """The latest value of a window reaches the receiver when the window closes, also if the bridge restarted
    while it was held: the sink never ends on a stale value."""
    from bridge.sim.webhook import WebhookSim

    async with WebhookSim() as sim:
        cfg = {"secret": None, "filters": {"min_interval": {"power": "2s"}}}
        clock = [T0]
        async with rig(tmp_path, sim, clock=lambda: clock[0], **cfg) as r:
            await r.send(
                [
                    event(device_id="3", attribute="power", value=v, time=T0 + i * 0.1)
                    for i, v in enumerate((100, 150, 175))
                ]
            )
            await r.settled()
            assert [e["value"] for e in sim.delivered()] == [100]
        clock[0] = T0 + 5  # the bridge was down past the window's end
        async with rig(tmp_path, sim, clock=lambda: clock[0], **cfg) as r:
            await wait_until(lambda: len(sim.delivered()) == 2, "the held value was sent")
            assert [e["value"] for e in sim.delivered()] == [100, 175]
            await r.settled()
        assert r.delivery.filters is not None and r.delivery.filters.next_due() is None


async def test_every_sink_takes_filters_the_file_sink_too(tmp_path: Path) -> None:
    """A file (or HEC) sink's config takes the same filters: section, and its delivery loop applies it."""
    import asyncio
    import contextlib

    from bridge.delivery import Delivery
    from bridge.sinks import build_sink
    from bridge.sinks.file import FileSinkConfig
    from bridge.sinks.splunk_hec import SplunkHecSinkConfig
    from tests.helpers import running_journal
    from tests.sinks.webhook.rig import encoded

    hec = SplunkHecSinkConfig.model_validate(
        {
            "name": "s",
            "type": "splunk_hec",
            "url": "http://h:8088",
            "token": "t",
            "filters": {"exclude": [{"kind": "bridge"}]},
        }
    )
    assert hec.filters.exclude[0].kind == ["bridge"]
    cfg = FileSinkConfig.model_validate(
        {
            "name": "archive",
            "type": "file",
            "path": str(tmp_path / "ev.jsonl"),
            "filters": {"include": [{"attribute": "switch"}]},
            "batch": {"max_wait": "0s"},
        }
    )
    sink, options = build_sink(cfg)
    async with running_journal(tmp_path / "j.sqlite3", synchronous="normal") as journal:
        await journal.register_sinks(["archive"])
        async with sink:
            delivery = Delivery(sink, journal, options, filters=FilterEngine(cfg.filters))
            task = asyncio.create_task(delivery.run())
            evs = [event(attribute=a) for a in ("switch", "temperature", "switch", "humidity")]
            await journal.append(encoded(evs), [])
            await wait_until(lambda: journal.cursor("archive") == journal.head, "the cursor reached the head")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    lines = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["id"] for e in lines] == [evs[0]["id"], evs[2]["id"]]
    assert delivery.status.filtered == 2 and delivery.status.delivered == 2
