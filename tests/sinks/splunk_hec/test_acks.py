"""The indexer acknowledgement poller (bridge.sinks.splunk_hec.acks) with a scripted /ack, without sockets."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
import structlog

from bridge.sinks.splunk_hec.acks import AckPoller
from tests.helpers import wait_until

Answer = tuple[str, "dict[str, Any] | str"]


def scripted(answers: list[Answer], then: Answer) -> tuple[Any, list[list[int]]]:
    """An /ack request function giving ``answers`` in turn, then ``then`` for ever; and the ids it was asked."""
    queue = deque(answers)
    asked: list[list[int]] = []

    async def request(headers: dict[str, str] | None, ids: list[int]) -> Answer:
        asked.append(ids)
        return queue.popleft() if queue else then

    return request, asked


async def test_a_poll_problem_is_one_line_while_it_lasts_and_one_more_when_it_recurs() -> None:
    """A failing /ack poll logs one warning however often it fails; after a good poll a new failure logs again."""
    busy: Answer = ("error", "HEC /ack answered HTTP 503, code 9 'Server is busy'")
    request, asked = scripted([busy, busy, busy, ("ok", {"0": False}), busy, busy], ("ok", {"0": True}))
    poller = AckPoller("splunk", 0.001, request)
    with structlog.testing.capture_logs() as logs:
        future = poller.expect(0)
        poller.start()
        await wait_until(future.done, "the ack came")
        await poller.close()
    assert future.result() is True and len(asked) == 7
    warned = [e for e in logs if e["event"] == "cannot poll indexer acknowledgements"]
    assert len(warned) == 2 and all("Server is busy" in e["reason"] for e in warned)


@pytest.mark.parametrize("state", ["missing", "disabled"])
async def test_acks_that_can_never_come_are_given_up_at_once_without_a_line(state: str) -> None:
    """/ack gone or ack disabled: pending batches are given up at once (resent by the loop), and nothing is logged."""
    request, asked = scripted([(state, "set ack: false")], ("ok", {"0": True, "1": True}))
    poller = AckPoller("splunk", 0.001, request)
    with structlog.testing.capture_logs() as logs:
        futures = [poller.expect(0), poller.expect(1)]
        poller.start()
        await wait_until(lambda: all(f.done() for f in futures), "the pending acks were settled")
        assert poller.pending == 0
        await poller.close()
    assert all(f.cancelled() for f in futures)  # given up, not confirmed by a later poll
    assert asked == [[0, 1]] and logs == []


async def test_an_ack_is_settled_the_first_time_it_is_true() -> None:
    """HEC says true once and then forgets the id (§4 item 5): the batch is confirmed at that first true."""
    request, asked = scripted([("ok", {"0": False, "1": True}), ("ok", {"0": True, "1": False})], ("ok", {}))
    poller = AckPoller("splunk", 0.001, request)
    first, second = poller.expect(0), poller.expect(1)
    poller.start()
    try:
        await wait_until(lambda: first.done() and second.done(), "both acks came")
    finally:
        await poller.close()
    assert first.result() is True and second.result() is True
    assert asked == [[0, 1], [0]]  # a settled id is not asked for again
