"""Fixtures shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.journal import Journal
from tests.helpers import running_journal


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    """A running journal in the test's directory (fsync per commit, as in production)."""
    async with running_journal(tmp_path / "state" / "journal.sqlite3") as j:
        yield j
