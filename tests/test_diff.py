"""The diff (bridge.diff): which readings are changes, their ids, and how a failed commit is taken back.

Pure and synchronous: no journal, no sockets. ``settle(diff, ok=...)`` stands in for the journal's answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.diff import MOMENTARY_DUPLICATE_WINDOW, Differ
from bridge.events import event_id
from tests.helpers import button, switch, temp


def events_of(d: Differ, *readings: Any, now: float | None = None, hub: str = "home") -> list[Any]:
    return d.diff(hub, "hubitat", readings, now=now).events


def test_differ_emits_only_changes() -> None:
    """The first value is a change with previous null; the same value again is nothing; a new value names the old."""
    d = Differ("install-1")
    (ev,) = events_of(d, temp("1", 21.5), now=100.0)
    assert (ev.value, ev.previous, ev.time, ev.hub, ev.hub_type) == (21.5, None, 100.0, "home", "hubitat")
    assert (ev.device_id, ev.device, ev.room, ev.unit, ev.attribute) == ("1", "Sensor 1", "Hall", "°C", "temperature")
    assert events_of(d, temp("1", 21.5), now=101.0) == []
    assert [(e.value, e.previous) for e in events_of(d, temp("1", 22.0), now=102.0)] == [(22.0, 21.5)]
    # The same attribute on another hub or device is its own state.
    assert [(e.hub, e.previous) for e in events_of(d, temp("1", 22.0), hub="cellar")] == [("cellar", None)]


def test_differ_uses_the_hub_time_when_given() -> None:
    """An event carries the hub's own time when the reading has one, not the time it was diffed."""
    assert events_of(Differ("i"), temp("1", 1, time=1234.5), now=2000.0)[0].time == 1234.5


@pytest.mark.parametrize(
    ("first", "second", "changed"),
    [
        (29, 29.0, False),
        (29.0, 29, False),
        (True, 1, True),
        (1, True, True),
        (False, 0, True),
        ("1", 1, True),
        (1, "1", True),
        ("on", "on", False),
        (None, None, False),
        ([1, 2], [1, 2], False),
        ({"a": 1}, {"a": 2}, True),
    ],
)
def test_differ_value_equality(first: Any, second: Any, changed: bool) -> None:
    """29 and 29.0 are the same temperature; True is not 1 and "1" is not 1; previous keeps its type."""
    d = Differ("i")
    events_of(d, switch("1", first))
    events = events_of(d, switch("1", second))
    assert bool(events) is changed
    if changed:
        assert events[0].previous == first and type(events[0].previous) is type(first)


def test_momentary_readings() -> None:
    """A button press twice is two events, except an exact repeat within the duplicate window."""
    d = Differ("i")
    w = MOMENTARY_DUPLICATE_WINDOW
    assert len(events_of(d, button(1, "pushed 1"), now=100.0)) == 1
    assert events_of(d, button(1, "pushed 1"), now=100.0 + w / 2) == []
    events = events_of(d, button(1, "pushed 1"), now=100.0 + 2 * w)
    assert len(events) == 1 and events[0].previous == 1
    assert len(events_of(d, button(2, "pushed 2"), now=100.0 + 2 * w + 0.01)) == 1
    ids = {e.id for now in (200.0, 200.0 + 2 * w, 200.0 + 4 * w) for e in events_of(d, button(3), now=now)}
    assert len(ids) == 3


def test_ids_are_deterministic() -> None:
    """The same change gets the same id in the same installation, another id elsewhere; on-off-on is three ids."""
    readings = [switch("1", "on"), temp("2", 20)]
    a = events_of(Differ("install-A"), *readings)
    b = events_of(Differ("install-A"), *readings)
    assert [e.id for e in a] == [e.id for e in b]
    assert a[0].id == event_id("install-A", "home", "device", "1", "switch", 1)
    c = events_of(Differ("install-B"), *readings)
    assert not {e.id for e in a} & {e.id for e in c}
    d = Differ("install-A")
    ids = [events_of(d, switch("1", v))[0].id for v in ("on", "off", "on")]
    assert len(set(ids)) == 3 and ids[0] == a[0].id


# ------------------------------------------------------------------------------------------------ failed commits


def test_a_failed_commit_takes_back_only_its_own_changes() -> None:
    """Undoing one ingest leaves another ingest's changes in place (two changes never share an id afterwards)."""
    d = Differ("i")
    d.settle(d.diff("home", "hubitat", [switch("1", "off"), switch("2", "off")]), ok=True)
    failed = d.diff("home", "hubitat", [switch("1", "on")])
    other = d.diff("home", "hubitat", [switch("2", "on")])
    d.settle(other, ok=True)
    d.settle(failed, ok=False)
    assert d.get(("home", "device", "1", "switch")) == "off"
    assert d.get(("home", "device", "2", "switch")) == "on"
    # The same change seen again is a change again, with a new id: the failed one was never recorded.
    (again,) = events_of(d, switch("1", "on"))
    assert again.previous == "off"
    assert again.id != failed.events[0].id
    (next_2,) = events_of(d, switch("2", "off"))
    assert next_2.previous == "on"
    assert len({failed.events[0].id, other.events[0].id, again.id, next_2.id}) == 4


def test_a_later_change_survives_the_undo_of_an_earlier_one() -> None:
    """When a commit fails after a newer value of the same attribute was diffed, the newer value stays."""
    d = Differ("i")
    first = d.diff("home", "hubitat", [switch("1", "on")])
    second = d.diff("home", "hubitat", [switch("1", "off")])
    d.settle(first, ok=False)
    d.settle(second, ok=True)
    assert d.get(("home", "device", "1", "switch")) == "off"
    assert second.events[0].previous == "on"
    (third,) = events_of(d, switch("1", "on"))
    assert (third.previous, third.id in {first.events[0].id, second.events[0].id}) == ("off", False)


def test_a_failed_first_value_leaves_the_attribute_unknown() -> None:
    """A first reading whose commit failed is a first reading again (previous null), with a fresh id."""
    d = Differ("i")
    failed = d.diff("home", "hubitat", [switch("1", "on")])
    d.settle(failed, ok=False)
    assert d.get(("home", "device", "1", "switch")) is None
    (again,) = events_of(d, switch("1", "on"))
    assert again.previous is None and again.id != failed.events[0].id


def test_the_momentary_window_is_taken_back_with_a_failed_commit() -> None:
    """A button press whose commit failed does not make the same press, seen again at once, a duplicate."""
    d = Differ("i")
    failed = d.diff("home", "hubitat", [button(1, "pushed 1")], now=100.0)
    d.settle(failed, ok=False)
    assert len(events_of(d, button(1, "pushed 1"), now=100.1)) == 1


def test_a_stale_reading_never_overwrites_a_newer_value() -> None:
    """A reading observed before the one behind the last known value (a poll that started before a push) is dropped."""
    d = Differ("i")
    events_of(d, switch("1", "off", observed=5.0))
    assert events_of(d, switch("1", "on", observed=4.0)) == []
    assert d.get(("home", "device", "1", "switch")) == "off"
    assert [e.value for e in events_of(d, switch("1", "on", observed=6.0))] == ["on"]


async def test_an_unchanged_reading_waits_for_the_commit_of_its_value() -> None:
    """A reading equal to a value still on its way to the journal depends on that commit (answer only after it)."""
    d = Differ("i")
    pending = d.diff("home", "hubitat", [switch("1", "on")])
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    d.pending(pending, committed)
    copy = d.diff("home", "hubitat", [switch("1", "on")])
    assert copy.events == [] and copy.waits == {committed}
    d.settle(pending, ok=True)
    assert d.diff("home", "hubitat", [switch("1", "on")]).waits == set()


def test_refusing_one_event_keeps_the_others() -> None:
    """An event the journal cannot store is taken back alone; the other changes of its ingest stay."""
    d = Differ("i")
    diff = d.diff("home", "hubitat", [switch("1", "on"), switch("2", "on")])
    d.refuse(diff, 0)
    assert [e.device_id for e in diff.events] == ["2"]
    assert d.get(("home", "device", "1", "switch")) is None
    assert d.get(("home", "device", "2", "switch")) == "on"
