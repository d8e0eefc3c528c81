"""Fixtures of the Homey source tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests ask for reconciliations back to back and wait out retries; tests/sources proves both floors."""
    monkeypatch.setattr("bridge.sources.runner.MIN_RECONCILE_GAP", 0.0)
    monkeypatch.setattr("bridge.sources.base.HUB_RETRY_FLOOR", 0.2)
