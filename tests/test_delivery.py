"""The delivery loop (bridge.delivery): the same semantics for every sink, shown with a scripted sink.

Split, dead-letter, retry, hold, partial acceptance, acknowledgements with their deadline, up to max_in_flight
batches on their way at once (settled in order), one probe at a time while the sink fails, one log line per state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
import structlog

from bridge.delivery import Delivery
from bridge.journal import Journal, Record
from bridge.pipeline import Pipeline
from bridge.sinks.base import Delivered, Hold, Outcome, Partial, Rejected, Retry, Sink, TooLarge
from tests.helpers import caught_up, delivering, ingest, wait_until


@pytest.fixture
async def pipeline(journal: Journal) -> Pipeline:
    return await Pipeline.open(journal)


class ScriptedSink(Sink):
    """A sink whose answers are scripted per call. ``accepted`` is what the destination would now hold."""

    type_name = "scripted"

    def __init__(self, respond: Callable[[list[int], int], Outcome]) -> None:
        super().__init__("scripted")
        self.respond = respond
        self.calls: list[list[int]] = []
        self.times: list[float] = []
        self.accepted: list[int] = []
        self.outcomes: list[Outcome] = []

    async def send(self, batch: Sequence[Record]) -> Outcome:
        seqs = [r.seq for r in batch]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a batch must be contiguous, in journal order"
        self.calls.append(seqs)
        self.times.append(time.monotonic())
        outcome = self.respond(seqs, len(self.calls))
        self.outcomes.append(outcome)
        if isinstance(outcome, Delivered):
            self.accepted.extend(seqs)
        elif isinstance(outcome, Rejected) and outcome.index is not None:
            self.accepted.extend(seqs[: outcome.index])
        elif isinstance(outcome, Partial):
            self.accepted.extend(seqs[: outcome.accepted])
        return outcome


async def scripted(
    journal: Journal, pipeline: Pipeline, n: int, respond: Callable[[list[int], int], Outcome]
) -> ScriptedSink:
    sink = ScriptedSink(respond)
    await journal.register_sinks([sink.name])
    await ingest(pipeline, n)
    return sink


async def dead(journal: Journal) -> list[tuple[int, str]]:
    return [(d.seq, d.reason) for d in await journal.dead_letters("scripted")]


async def test_rejected_with_index(journal: Journal, pipeline: Pipeline) -> None:
    """A refusal that names the bad record dead-letters it alone; the accepted prefix is not resent."""

    def respond(seqs: list[int], call: int) -> Outcome:
        if 4 in seqs:
            return Rejected("field 'value' is invalid", index=seqs.index(4))
        return Delivered()

    sink = await scripted(journal, pipeline, 10, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        await caught_up(journal, "scripted")
        # The loop keeps going afterwards.
        await ingest(pipeline, 2)
        await caught_up(journal, "scripted")
    # The prefix was accepted by the first call and is not resent; the rest follows the bad record.
    assert sink.calls == [list(range(1, 11)), list(range(5, 11)), [11, 12]]
    assert sink.accepted == [1, 2, 3, *range(5, 13)]
    assert await dead(journal) == [(4, "field 'value' is invalid")]
    assert journal.cursor("scripted") == 12
    assert (delivery.status.delivered, delivery.status.dead_lettered) == (11, 1)


@pytest.mark.parametrize("bad", [1, 5, 8])
async def test_rejected_without_index_bisects(journal: Journal, pipeline: Pipeline, bad: int) -> None:
    """A refusal of "something in this batch" is split until the bad record is alone, in a handful of sends."""

    def respond(seqs: list[int], call: int) -> Outcome:
        return Rejected("HEC 400: Invalid data format") if bad in seqs else Delivered()

    sink = await scripted(journal, pipeline, 8, respond)
    async with delivering(sink, journal, max_events=100):
        await caught_up(journal, "scripted")
    assert Counter(sink.accepted) == Counter(s for s in range(1, 9) if s != bad)
    assert sorted(sink.accepted) == sink.accepted  # still in journal order
    assert await dead(journal) == [(bad, "HEC 400: Invalid data format")]
    assert journal.cursor("scripted") == 8
    # Isolating one bad record among 8 takes a handful of sends, not one per record.
    assert len(sink.calls) <= 8


async def test_too_large_splits(journal: Journal, pipeline: Pipeline) -> None:
    """A batch over the destination's size limit is split until the parts fit; nothing is dead-lettered."""

    def respond(seqs: list[int], call: int) -> Outcome:
        return TooLarge("413 request entity too large") if len(seqs) > 3 else Delivered()

    sink = await scripted(journal, pipeline, 10, respond)
    async with delivering(sink, journal, max_events=100):
        await caught_up(journal, "scripted")
    assert sink.accepted == list(range(1, 11))
    delivered = [c for c, o in zip(sink.calls, sink.outcomes, strict=True) if isinstance(o, Delivered)]
    assert [s for c in delivered for s in c] == list(range(1, 11))
    assert all(len(c) <= 3 for c in delivered)
    assert await dead(journal) == []


async def test_too_large_single_record_is_dead_lettered(journal: Journal, pipeline: Pipeline) -> None:
    """A single record too large for the destination is dead-lettered with the reason."""

    def respond(seqs: list[int], call: int) -> Outcome:
        return TooLarge("event over 1 MB") if 6 in seqs else Delivered()

    sink = await scripted(journal, pipeline, 10, respond)
    async with delivering(sink, journal, max_events=100):
        await caught_up(journal, "scripted")
    assert Counter(sink.accepted) == Counter(s for s in range(1, 11) if s != 6)
    assert await dead(journal) == [(6, "event over 1 MB")]


async def test_retry_with_delay(journal: Journal, pipeline: Pipeline) -> None:
    """A transient failure is retried after the server's delay when that is longer than the backoff."""
    states: list[str] = []
    holder: dict[str, Delivery] = {}

    def respond(seqs: list[int], call: int) -> Outcome:
        states.append(holder["d"].status.state)
        return Retry("503 server busy", delay=0.1) if call <= 2 else Delivered()

    sink = await scripted(journal, pipeline, 5, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        holder["d"] = delivery
        await caught_up(journal, "scripted")
        assert delivery.status.state == "ok"
    assert sink.calls == [[1, 2, 3, 4, 5]] * 3
    assert sink.accepted == [1, 2, 3, 4, 5]
    assert states[1:] == ["retrying", "retrying"]
    # The server's delay is honoured (it is longer than retry_max).
    gaps = [b - a for a, b in zip(sink.times, sink.times[1:], strict=False)]
    assert all(g >= 0.09 for g in gaps), gaps
    assert await dead(journal) == []


async def test_hold_never_dead_letters(journal: Journal, pipeline: Pipeline) -> None:
    """A refused token holds the batch (never split, never dead-lettered) until it is accepted."""
    states: list[str] = []
    holder: dict[str, Delivery] = {}

    def respond(seqs: list[int], call: int) -> Outcome:
        states.append(holder["d"].status.state)
        return Hold("401 invalid token") if call <= 8 else Delivered()

    sink = await scripted(journal, pipeline, 5, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        holder["d"] = delivery
        await wait_until(lambda: len(sink.calls) >= 3, "a few attempts")
        assert journal.cursor("scripted") == 0
        assert delivery.status.state == "holding"
        assert delivery.status.detail == "401 invalid token"
        await caught_up(journal, "scripted")
    assert len(sink.calls) == 9
    assert all(c == [1, 2, 3, 4, 5] for c in sink.calls)  # never split
    assert "holding" in states
    assert sink.accepted == [1, 2, 3, 4, 5]
    assert await dead(journal) == []


async def test_sink_that_raises_is_retried(journal: Journal, pipeline: Pipeline) -> None:
    """A sink bug (an exception) is retried like a transient failure; nothing is lost."""

    def respond(seqs: list[int], call: int) -> Outcome:
        if call <= 2:
            raise RuntimeError("sink bug")
        return Delivered()

    sink = await scripted(journal, pipeline, 4, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        await caught_up(journal, "scripted")
        assert delivery.status.state == "ok"
    assert sink.calls == [[1, 2, 3, 4]] * 3
    assert sink.accepted == [1, 2, 3, 4]
    assert await dead(journal) == []


async def test_sink_that_hangs_is_retried(journal: Journal, pipeline: Pipeline) -> None:
    """A send that never returns is cut by send_timeout and retried."""
    hang = asyncio.Event()

    class Hanging(ScriptedSink):
        async def send(self, batch: Sequence[Record]) -> Outcome:
            if not self.calls:
                self.calls.append([r.seq for r in batch])
                await hang.wait()  # never set: only the loop's send_timeout ends this attempt
            return await super().send(batch)

    sink = Hanging(lambda seqs, call: Delivered())
    await journal.register_sinks([sink.name])
    await ingest(pipeline, 3)
    async with delivering(sink, journal, max_events=100, send_timeout=0.1):
        await caught_up(journal, "scripted")
    assert sink.accepted == [1, 2, 3]


async def test_ack_true_advances_only_once_confirmed(journal: Journal, pipeline: Pipeline) -> None:
    """The cursor moves past a batch only once its acknowledgement is true, even if later batches are confirmed."""
    acks: list[asyncio.Future[bool]] = []

    def respond(seqs: list[int], call: int) -> Outcome:
        acks.append(asyncio.get_running_loop().create_future())
        return Delivered(ack=acks[-1])

    sink = await scripted(journal, pipeline, 6, respond)
    async with delivering(sink, journal, max_events=100, max_in_flight=2) as delivery:
        await wait_until(lambda: len(sink.calls) == 1, "the batch was sent")
        # A second batch goes out and is confirmed at once; the first is still unconfirmed, so nothing settles.
        await ingest(pipeline, 2)
        await wait_until(lambda: len(sink.calls) == 2, "the next batch was sent")
        acks[1].set_result(True)
        await wait_until(lambda: delivery._window[-1].done, "the second batch was confirmed")
        assert journal.cursor("scripted") == 0
        assert delivery.lag == 8
        acks[0].set_result(True)
        await caught_up(journal, "scripted")
    assert sink.calls == [[1, 2, 3, 4, 5, 6], [7, 8]]
    assert await dead(journal) == []


async def test_ack_false_resends(journal: Journal, pipeline: Pipeline) -> None:
    """A batch the destination says it will not confirm is sent again, with the same records."""
    acks: list[asyncio.Future[bool]] = []

    def respond(seqs: list[int], call: int) -> Outcome:
        acks.append(asyncio.get_running_loop().create_future())
        return Delivered(ack=acks[-1])

    sink = await scripted(journal, pipeline, 6, respond)
    async with delivering(sink, journal, max_events=100):
        await wait_until(lambda: len(sink.calls) == 1, "the batch was sent")
        acks[0].set_result(False)  # the destination never confirmed it
        await wait_until(lambda: len(sink.calls) == 2, "the batch was resent")
        assert journal.cursor("scripted") == 0
        acks[1].set_result(True)
        await caught_up(journal, "scripted")
    assert sink.calls == [[1, 2, 3, 4, 5, 6]] * 2
    assert await dead(journal) == []


# ------------------------------------------------------------------------------------------------ new in the shape


async def test_a_partial_acceptance_resends_only_the_rest(journal: Journal, pipeline: Pipeline) -> None:
    """When the destination took a prefix and failed the rest, only the rest is sent again, after the delay the
    destination asked for (its Retry-After)."""

    def respond(seqs: list[int], call: int) -> Outcome:
        return Partial(3, "503 busy after 3 events", delay=0.3) if call == 1 else Delivered()

    sink = await scripted(journal, pipeline, 8, respond)
    async with delivering(sink, journal, max_events=100) as delivery:
        await wait_until(lambda: delivery.status.delivered == 8, "all 8 counted as delivered")
    assert sink.calls == [list(range(1, 9)), list(range(4, 9))]
    assert sink.accepted == list(range(1, 9))
    assert sink.times[1] - sink.times[0] >= 0.29, "the rest waited for the destination's delay"


async def test_an_acknowledgement_that_never_comes_is_resent_after_ack_timeout(
    journal: Journal, pipeline: Pipeline
) -> None:
    """The loop gives a confirmation ack_timeout, then sends the batch again and stops waiting for the old one."""
    acks: list[asyncio.Future[bool]] = []

    def respond(seqs: list[int], call: int) -> Outcome:
        acks.append(asyncio.get_running_loop().create_future())
        if call == 2:
            acks[-1].set_result(True)
        return Delivered(ack=acks[-1])

    sink = await scripted(journal, pipeline, 4, respond)
    with structlog.testing.capture_logs() as logs:
        async with delivering(sink, journal, max_events=100, ack_timeout=0.2):
            await caught_up(journal, "scripted")
    assert sink.calls == [[1, 2, 3, 4]] * 2
    assert acks[0].cancelled()  # the sink is told to forget it
    assert len([e for e in logs if "did not confirm" in e["event"]]) == 1


class GatedSink(ScriptedSink):
    """Holds each send until the test releases it; counts sends on their way at once."""

    def __init__(self, respond: Callable[[list[int], int], Outcome]) -> None:
        super().__init__(respond)
        self.gates: list[asyncio.Event] = []
        self.active = 0
        self.most = 0

    async def send(self, batch: Sequence[Record]) -> Outcome:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await gate.wait()
            return await super().send(batch)
        finally:
            self.active -= 1


async def test_up_to_max_in_flight_batches_go_out_at_once_and_settle_in_order(
    journal: Journal, pipeline: Pipeline
) -> None:
    """Three batches go out at once; the cursor moves over them in journal order, whatever order they finish."""
    sink = GatedSink(lambda seqs, call: Delivered())
    await journal.register_sinks([sink.name])
    await ingest(pipeline, 9)
    async with delivering(sink, journal, max_events=3, max_in_flight=3) as delivery:
        await wait_until(lambda: len(sink.gates) == 3, "three sends on their way")
        sink.gates[2].set()
        sink.gates[1].set()
        await wait_until(lambda: sum(b.done for b in delivery._window) == 2, "the last two finished")
        assert journal.cursor("scripted") == 0  # the first is still on its way
        sink.gates[0].set()
        await caught_up(journal, "scripted")
    assert sink.most == 3
    assert sorted(sink.accepted) == list(range(1, 10))


async def test_a_failing_sink_is_probed_one_batch_at_a_time(journal: Journal, pipeline: Pipeline) -> None:
    """While the destination fails, only one batch at a time tries it: max_in_flight never multiplies the load."""
    failing = True
    concurrent: list[int] = []

    class Probed(ScriptedSink):
        active = 0

        async def send(self, batch: Sequence[Record]) -> Outcome:
            self.active += 1
            concurrent.append(self.active)
            try:
                await asyncio.sleep(0)  # a real request yields; let any other batch in
                return await super().send(batch)
            finally:
                self.active -= 1

    sink = Probed(lambda seqs, call: Retry("503 busy") if failing else Delivered())
    await journal.register_sinks([sink.name])
    await ingest(pipeline, 20)
    async with delivering(sink, journal, max_events=2, max_in_flight=8):
        await wait_until(lambda: len(sink.calls) >= 30, "many attempts while failing")
        failing = False
        await caught_up(journal, "scripted")
    during = concurrent[8:30]  # after the first round of sends found the sink failing
    assert max(during) == 1, during
    assert sorted(sink.accepted) == list(range(1, 21))


async def test_a_lasting_problem_is_one_log_line_not_one_per_attempt(journal: Journal, pipeline: Pipeline) -> None:
    """Twenty refused attempts give one error line; the recovery gives one info line."""

    def respond(seqs: list[int], call: int) -> Outcome:
        return Hold("401 invalid token") if call <= 20 else Delivered()

    sink = await scripted(journal, pipeline, 3, respond)
    with structlog.testing.capture_logs() as logs:
        async with delivering(sink, journal, max_events=100, retry_initial=0.001, retry_max=0.002):
            await caught_up(journal, "scripted")
    lines = [(e["log_level"], e["event"]) for e in logs if e.get("sink") == "scripted"]
    assert [level for level, _ in lines] == ["error", "info"], lines
