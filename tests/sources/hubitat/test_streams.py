"""DualStreamMatcher.seed (bridge.sources.hubitat.streams): what a previous process recorded, matched after a restart.

Pure: rows as the journal's recent table gives them, readings as the channels would deliver them.
"""

from __future__ import annotations

import asyncio
import time

from bridge.journal import Recent
from bridge.sources.hubitat.streams import Copy, DualStreamMatcher, Note

KEY = ("device", "7", "level")
WALL = 1_700_000_000.0


def rec(value: object, source: str = "eventsocket", age: float = 5.0, key: tuple[str, str, str] = KEY) -> Recent:
    return Recent(*key, value, source, WALL - age)


async def test_late_post_copies_of_recorded_values_are_copies_and_a_new_value_is_not() -> None:
    """The POSTs of values recorded before the crash ("12.5" for 12.5) match, in order; a value never seen is new."""
    m = DualStreamMatcher()
    m.seed([rec(10), rec(12.5), rec(30)], now=1000.0, wall=WALL)
    for value in ("10", "12.5"):
        match = m.match("webhook", KEY, value, now=1000.0)
        assert isinstance(match, Copy) and match.original.done.done()
    assert isinstance(m.match("webhook", KEY, "99", now=1000.0), Note), "never recorded: recorded now"
    assert isinstance(m.match("webhook", KEY, "30", now=1000.0), Copy)


async def test_only_eventsocket_and_polled_values_within_the_window_are_seeded() -> None:
    """A value recorded from a POST has no late copy to come, and one older than the window is too old to match."""
    m = DualStreamMatcher(window=120.0)
    m.seed(
        [
            rec(1, source="webhook"),
            rec(2, age=300.0),
            rec(3, source="reconcile"),
            rec(4, key=("bridge", "", "hub_status")),
        ],
        now=1000.0,
        wall=WALL,
    )
    assert m.seeded == 1
    assert isinstance(m.match("webhook", KEY, "1", now=1000.0), Note)
    assert isinstance(m.match("webhook", KEY, "2", now=1000.0), Note)
    assert isinstance(m.match("webhook", KEY, "3", now=1000.0), Copy)


async def test_seeded_notes_go_once_the_posts_caught_up_so_they_never_swallow_a_real_change() -> None:
    """Once a POST matches an eventsocket event of this process, every POST queued before the crash has come: a
    seeded value the old process had already matched can no longer make a genuine POST-only change look like a
    copy (the eventsocket may be down for it)."""
    other = ("device", "8", "switch")
    m = DualStreamMatcher()
    m.seed([rec(10), rec("on", key=other)], now=1000.0, wall=WALL)
    live = m.match("eventsocket", KEY, "20", now=1001.0)
    assert isinstance(live, Note)
    live.committed(None)
    assert isinstance(m.match("webhook", KEY, "20", now=1001.5), Copy)
    assert m.seeded == 0
    assert isinstance(m.match("webhook", other, "on", now=1002.0), Note), "a real change, recorded"
    assert isinstance(m.match("webhook", KEY, "10", now=1002.0), Note)


async def test_a_poll_match_is_no_proof_that_the_posts_caught_up() -> None:
    """The restart's reconciliation poll may take a value whose pre-crash POST is still queued: matching it keeps
    the other seeded values, whose POSTs are still to come."""
    other = ("device", "8", "switch")
    m = DualStreamMatcher()
    m.seed([rec("on", key=other)], now=time.monotonic(), wall=WALL)  # note_polled notes are on the monotonic clock
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    committed.set_result(None)
    m.note_polled(KEY, 55, committed)
    assert isinstance(m.match("webhook", KEY, "55"), Copy)
    assert isinstance(m.match("webhook", other, "on"), Copy), "still a late copy"


async def test_a_polls_value_matched_out_of_order_leaves_the_eventsocket_values_before_it() -> None:
    """After a restart the poll answers an older value (10) than the eventsocket already sent (11): the POST of 10
    matches the poll, and the POST of 11 that follows is still the eventsocket's copy, not a change back to 11."""
    m = DualStreamMatcher()
    es = m.match("eventsocket", KEY, "11", now=1000.0)
    assert isinstance(es, Note)
    es.committed(None)
    recorded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    recorded.set_result(None)
    m.note_polled(KEY, 10, recorded)
    assert isinstance(m.match("webhook", KEY, "10", now=1000.1), Copy)
    late = m.match("webhook", KEY, "11", now=1000.2)
    assert isinstance(late, Copy) and late.original is es
