"""The one backoff and the rate-limited log (bridge.backoff), without I/O."""

from __future__ import annotations

from typing import Any

from bridge.backoff import MAX_SERVER_DELAY, Backoff, RateLimitedLog


def test_waits_grow_stay_capped_and_never_go_below_the_floor() -> None:
    """Each wait is jittered between the floor and a doubling bound that stops at the cap, even after 10 000 tries."""
    backoff = Backoff(1.0, 30.0, floor=1.0)
    waits = [backoff.next() for _ in range(10_000)]
    assert all(1.0 <= w <= 30.0 for w in waits)
    assert max(waits[:3]) <= 4.0 and max(waits[10:]) > 10.0
    backoff.reset()
    assert backoff.next() == 1.0


def test_a_server_delay_wins_when_longer_but_is_bounded() -> None:
    """Retry-After is honoured when longer than the backoff, up to MAX_SERVER_DELAY."""
    backoff = Backoff(0.1, 1.0)
    assert backoff.next(server_delay=7.0) == 7.0
    assert backoff.next(server_delay=10 * MAX_SERVER_DELAY) == MAX_SERVER_DELAY


class Capture:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


def test_one_line_per_problem_per_window_with_the_count_of_repeats() -> None:
    """A problem repeated 100 times is one line; after the window, the next line says how many were suppressed."""
    capture = Capture()
    log = RateLimitedLog(capture, window=3600.0)
    for _ in range(100):
        log.warning("bad-frame", "ignored a malformed frame", frame="x")
    log.warning("other", "another problem")
    assert [e for _, e, _ in capture.lines] == ["ignored a malformed frame", "another problem"]
    log._last["bad-frame"] -= 7200  # the window has passed
    log.warning("bad-frame", "ignored a malformed frame", frame="y")
    assert capture.lines[-1][2] == {"frame": "y", "repeats_suppressed": 99}
    log.forget("other")
    log.warning("other", "another problem")
    assert len(capture.lines) == 4


def test_the_ceiling_bounds_the_next_wait_and_honours_a_server_delay() -> None:
    """A log line saying "the next try within N s" tells the truth: next() never waits longer than ceiling()."""
    b = Backoff(0.5, 60.0)
    for _ in range(12):
        ceiling = b.ceiling()
        assert b.next() <= ceiling
    assert b.ceiling() == 60.0
    assert Backoff(0.5, 60.0).ceiling(server_delay=30.0) == 30.0
