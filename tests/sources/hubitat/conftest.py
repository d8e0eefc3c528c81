"""The harness fixtures of the Hubitat integration tests (test_hub.py, test_cloud.py, test_health.py, test_storm.py).

A module picks its simulated hub (token, hub UID, subclass) by overriding ``hub_sim``; ``sim`` starts and stops it.
A module that asks for reconciliations back to back and waits out retries marks itself
``pytestmark = pytest.mark.usefixtures("quick_retries")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from tests.sources.hubitat.test_hub import TOKEN, Bridge, TrackingSim

RETRY_FLOOR = 0.2  # HUB_RETRY_FLOOR under quick_retries: the shortest wait between two attempts


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconciliations back to back and short retries; tests/sources proves both floors themselves."""
    monkeypatch.setattr("bridge.sources.runner.MIN_RECONCILE_GAP", 0.0)
    monkeypatch.setattr("bridge.sources.base.HUB_RETRY_FLOOR", RETRY_FLOOR)


@pytest.fixture
def hub_sim() -> TrackingSim:
    """The simulated hub of a module's tests, not started yet (a module overrides this for another one)."""
    return TrackingSim(access_token=TOKEN)


@pytest.fixture
async def sim(hub_sim: TrackingSim) -> AsyncIterator[TrackingSim]:
    """``hub_sim`` serving on loopback for the test, stopped at teardown."""
    await hub_sim.start()
    try:
        yield hub_sim
    finally:
        await hub_sim.stop()


@pytest.fixture
async def bridges() -> AsyncIterator[list[Bridge]]:
    """Bridges started by a test; all are stopped at teardown even when the test fails."""
    started: list[Bridge] = []
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


@pytest.fixture
def logs() -> Any:
    with structlog.testing.capture_logs() as entries:
        yield entries
