"""Fixtures shared by the tests."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from bridge.journal import Journal
from bridge.logs import setup_logging
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


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The logging ``hubbridge run`` sets up (JSON), into a buffer; the test process's logging is restored after."""
    buf = io.StringIO()
    saved = structlog.get_config()
    root = logging.getLogger()
    level, access = root.level, logging.getLogger("aiohttp.access").level
    monkeypatch.setattr("bridge.logs.KNOWN_SECRETS", {"s3cret/t0ken+x="})
    setup_logging("info", "json", stream=buf)
    try:
        yield buf
    finally:
        structlog.configure(**saved)
        for handler in [h for h in root.handlers if h.get_name() == "hubbridge"]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("aiohttp.access").setLevel(access)
