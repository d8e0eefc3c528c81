"""Fixtures shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.journal import Journal
from tests.helpers import running_journal


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """Where a test's journal lives: state/journal.sqlite3 in its directory, as a state_dir would hold it."""
    return tmp_path / "state" / "journal.sqlite3"


@pytest.fixture
async def journal(journal_path: Path) -> AsyncIterator[Journal]:
    """A running journal in the test's directory (fsync per commit, as in production)."""
    async with running_journal(journal_path) as j:
        yield j


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for a test, as a hub, a user or a load balancer would talk to the bridge."""
    async with aiohttp.ClientSession() as session:
        yield session
