"""A "500 storm" (a hub about to wedge) becomes exactly one kind: hub degraded event and one online event.

The real Runtime against the simulator's storm fault (every HTTP request answers the hub's 500 page); the request
rate during the storm is the runner's backoff, unchanged (see test_hub.py for the harness).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.sources.hubitat.storm import STORM_AFTER
from tests.helpers import wait_until
from tests.sources.hubitat.test_hub import Bridge, TrackingSim, start_bridge

FLOOR = 0.2  # HUB_RETRY_FLOOR in these tests: the shortest wait between two attempts


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.sources.runner.MIN_RECONCILE_GAP", 0.0)
    monkeypatch.setattr("bridge.sources.base.HUB_RETRY_FLOOR", FLOOR)


@pytest.fixture
async def sim() -> AsyncIterator[TrackingSim]:
    hub = TrackingSim(access_token="st0rm-t0ken")
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def bridges() -> AsyncIterator[list[Bridge]]:
    started: list[Bridge] = []
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


def hub_status(b: Bridge) -> list[tuple[str, str]]:
    return [(e["value"], e["description"]) for e in b.find(kind="hub", attribute="hub_status")]


async def test_a_500_storm_is_one_degraded_and_one_online_event_with_backoff_between_requests(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """A run of 500s is one `degraded` (with the count) and one `online`; the bridge does not hammer the wedged hub."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False, health=True, health_interval="30s")
    await b.settled()
    await wait_until(lambda: b.status.health_rounds >= 1, what="the first health round")
    start = len(sim.requests)
    sim.storm = True
    b.reconcile()
    b.runner.health_soon("test")  # a health round during the storm answers 500 too, and then waits its interval
    await wait_until(lambda: hub_status(b), what="the degraded event")
    assert hub_status(b) == [("degraded", f"{STORM_AFTER} HTTP 5xx answers in a row")]
    await wait_until(lambda: sim.storm_answers >= STORM_AFTER + 4, what="the storm to go on for a while")
    sim.storm = False
    await wait_until(lambda: len(hub_status(b)) == 2, what="the online event")
    during = sim.storm_answers
    assert hub_status(b)[0][0] == "degraded"
    online, text = hub_status(b)[1]
    assert online == "online" and text == f"the hub answers again after {during} HTTP 5xx answers in a row"
    arrivals = zip(sim.requests.times[start:], sim.requests[start:], strict=True)
    polls = [t for t, (_, path) in arrivals if path.endswith("/devices/all")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert gaps and min(gaps) >= FLOOR * 0.95, f"retries closer than the backoff floor: {gaps}"
    storm_paths = [p for _, p in sim.requests[start:]]
    assert sum(p.startswith("/hub") for p in storm_paths) == 1, "health tried once, then waited its interval"
    # The bridge's own view is unchanged: offline while polls fail, online after (one each).
    await wait_until(lambda: b.status.state == "ok", what="the poll that ended the storm to be recorded")
    bridge = [e["value"] for e in b.find(kind="bridge", attribute="hub_status")]
    assert bridge == ["online", "offline", "online"]


async def test_a_storm_across_a_restart_still_ends_with_online(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """A bridge restarted while the hub was degraded says `online` once the hub answers normally again."""
    b = await start_bridge(bridges, tmp_path, sim, eventsocket=False)
    await b.settled()
    sim.storm = True
    b.reconcile()
    await wait_until(lambda: hub_status(b), what="the degraded event")
    await b.stop()
    bridges.remove(b)
    sim.storm = False
    again = await start_bridge(bridges, tmp_path, sim, eventsocket=False)
    await again.settled()
    await wait_until(lambda: hub_status(again), what="the online event after the restart")
    assert [v for v, _ in hub_status(again)] == ["online"]
    assert hub_status(again)[0][1] == "the hub answers again"
