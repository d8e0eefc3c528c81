"""Eventsocket + POST-URL across kill -9: the late POST copies of what the killed process recorded are no new events.

The hub sends every event on both channels; the POSTs lag behind (one at a time, each waiting for its answer), so
when the bridge is killed in a burst, the hub still holds the POST copies of events the bridge already recorded from
the eventsocket, and sends them to the next process. Here the lag is made deterministic: the simulator's POST sender
is paused while the first process records three values, that process is SIGKILLed, a new one starts, and only then
do the queued POSTs go out.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp

from bridge.sim.hubitat import HubitatSim
from bridge.sources.hubitat import MOMENTARY
from tests.test_crash import TOKEN, free_port, read_events, start_bridge, write_config


async def _eventsocket_up(port: int) -> None:
    """Wait until the bridge's Hubitat source is open and its eventsocket connected (its /healthz says so)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                body = await resp.json()
            if body["hubs"]["home"]["streams"].get("eventsocket", {}).get("up"):
                return
            await asyncio.sleep(0.05)


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The events in the file so far (while the sink writes, the last line may not be complete yet)."""
    raw = path.read_bytes() if path.exists() else b""
    return [json.loads(line) for line in raw[: raw.rfind(b"\n") + 1].splitlines()]


async def _file_has(path: Path, pred: Any) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        while True:
            events = _complete_lines(path)
            if events and pred(events):
                return events
            await asyncio.sleep(0.05)


async def test_late_post_copies_after_sigkill_are_not_new_events(tmp_path: Path) -> None:
    """After kill -9, the POSTs the hub had queued for values already recorded add nothing; a real change back does.

    A user would otherwise see the value jump back to a stale one (with a new id) and forward again, once per
    queued POST.
    """
    async with HubitatSim(access_token=TOKEN, seed=3) as sim:
        port = free_port()
        cfg = write_config(tmp_path, sim.url, port)
        device_id, attribute = next(
            k
            for k, v in sim.state().items()
            if isinstance(v, int) and not isinstance(v, bool) and k[1] not in MOMENTARY
        )
        start = sim.value(device_id, attribute)
        events_path = tmp_path / "events.jsonl"

        def mine(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """The attribute's changes in the file, once each (a SIGKILL may make the file sink write one twice)."""
            seen: dict[str, dict[str, Any]] = {}
            for ev in events:
                if ev["device_id"] == device_id and ev["attribute"] == attribute:
                    seen.setdefault(ev["id"], ev)
            return list(seen.values())

        log = open(tmp_path / "bridge.log", "ab")  # noqa: ASYNC230, SIM115 - subprocess output sink
        procs: list[asyncio.subprocess.Process] = []
        try:
            first = await start_bridge(cfg, port, log)
            procs.append(first)
            await _eventsocket_up(port)
            assert sim.posted_url is not None
            # The bridge's own reconciliation poll took the start value; wait for it so it is not in play.
            await _file_has(events_path, lambda evs: any(ev["kind"] == "device" for ev in evs))

            sim.pause_posts()
            for value in (101, 102, 103):
                sim.set_attribute(device_id, attribute, value)
            # Recorded from the eventsocket (the file sink only has what the journal committed).
            await _file_has(events_path, lambda evs: [e["value"] for e in mine(evs)][-3:] == [101, 102, 103])
            first.send_signal(signal.SIGKILL)
            await first.wait()

            second = await start_bridge(cfg, port, log)
            procs.append(second)
            await _eventsocket_up(port)
            sim.resume_posts()
            await sim.wait_posts_idle(timeout=30)
            late = [
                (b["content"]["value"], status) for b, status in sim.post_results if b["content"]["name"] == attribute
            ]
            assert late[-3:] == [("101", 200), ("102", 200), ("103", 200)], "the new process answered the late POSTs"

            # A genuine change back to an old value is still a change, recorded once (its POST copy matched).
            sim.set_attribute(device_id, attribute, 101)
            await sim.wait_posts_idle(timeout=30)
            await _file_has(events_path, lambda evs: mine(evs)[-1]["value"] == 101 and mine(evs)[-1]["previous"] == 103)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 30) == 0
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
            log.close()

    changes = mine(read_events(events_path))
    # The start value, the three changes before the kill, the real change back after it: nothing else.
    values = [(ev["previous"], ev["value"]) for ev in changes]
    assert values == [(None, start), (start, 101), (101, 102), (102, 103), (103, 101)], (
        f"the file has {json.dumps(values)}"
    )
    assert [ev["source"] for ev in changes[1:]] == ["eventsocket"] * 4
