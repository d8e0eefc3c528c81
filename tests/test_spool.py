"""``hubbridge spool stats | dead-letters | replay | purge`` beside a running bridge.

The bridge is the real Runtime with a webhook sink to the receiver simulator; the commands are the real CLI entry
point, run in a thread the way a second process would use the journal (their own SQLite connection). What is
asserted is what an operator sees: the listing, the counts, and the replayed event arriving at the receiver with its
original id once the receiver is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import load_config
from bridge.runtime import Runtime
from bridge.sim.webhook import Reply, WebhookSim
from tests.helpers import wait_until
from tests.sinks.webhook.rig import SECRET, encoded, event


def write(tmp: Path, url: str, listen: str = "127.0.0.1:0") -> Path:
    cfg = tmp / "hubbridge.yaml"
    cfg.write_text(
        f"""\
state_dir: {tmp}/state
listen: {listen}
log: {{level: warning}}
hubs: []
sinks:
  - name: relay
    type: webhook
    url: {url}
    secret: {SECRET}
    retry: {{initial: 10ms, max: 50ms}}
  - name: archive
    type: file
    path: {tmp}/events.jsonl
""",
        encoding="utf-8",
    )
    return cfg


@contextlib.asynccontextmanager
async def bridge(cfg: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(load_config(cfg, env={}))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await wait_until(lambda: runtime.ready.is_set() or task.done(), "the bridge is ready")
        yield runtime
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def spool(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """One ``hubbridge spool`` command, as from another terminal: exit code, stdout, stderr."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["spool", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_dead_letters_listed_replayed_while_running_and_delivered_with_original_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event the receiver refused is listed, replayed while the bridge runs once the receiver is fixed, and
    arrives with its original id; stats show the backlog and dead letters as they change."""
    async with WebhookSim(secrets=[SECRET]) as sim:
        sim.reject = lambda ev: ev.get("device") == "Broken"
        cfg = write(tmp_path, sim.url)
        async with bridge(cfg) as runtime:
            evs = [event(), event(device="Broken"), event(), event(device="Broken", device_id="77")]
            await runtime.journal.append(encoded(evs), [])
            journal = runtime.journal
            await wait_until(lambda: journal.cursor("relay") == journal.head, "relay settled")

            code, out, _ = await spool(capsys, "dead-letters", "-c", str(cfg), "--sink", "relay", "--json")
            assert code == 0
            listed = [json.loads(line) for line in out.splitlines()]
            assert [d["id"] for d in listed] == [evs[3]["id"], evs[1]["id"]], "newest first"
            assert all("HTTP 422" in d["reason"] and d["event"]["device"] == "Broken" for d in listed)

            code, out, _ = await spool(capsys, "stats", "-c", str(cfg), "--json")
            stats = {s["sink"]: s for s in map(json.loads, out.splitlines())}
            assert stats["relay"]["dead_letters"] == 2 and stats["relay"]["backlog"] == 0
            assert stats["archive"]["dead_letters"] == 0

            sim.reject = None  # the receiver is fixed
            code, _, err = await spool(capsys, "replay", "-c", str(cfg), "--sink", "relay", "--id", evs[1]["id"])
            assert code == 0 and "1 dead letter" in err
            await wait_until(lambda: evs[1]["id"] in [e["id"] for e in sim.delivered()], "the replay arrived", 20)
            replayed = [q for q in sim.received if q.headers["webhook-id"] == evs[1]["id"] and q.status == 200]
            assert json.loads(replayed[0].body) == evs[1] and replayed[0].verified is True

            code, out, _ = await spool(capsys, "dead-letters", "-c", str(cfg), "--sink", "relay", "--json")
            assert [json.loads(line)["id"] for line in out.splitlines()] == [evs[3]["id"]]

            code, _, err = await spool(capsys, "purge", "-c", str(cfg), "--sink", "relay", "--dead-letters")
            assert code == 0 and "purged 1" in err
            code, out, _ = await spool(capsys, "stats", "-c", str(cfg), "--json")
            stats = {s["sink"]: s for s in map(json.loads, out.splitlines())}
            assert stats["relay"]["dead_letters"] == 0 and stats["relay"]["replays_pending"] == 0


@pytest.mark.parametrize("command", [["dead-letters"], ["replay"], ["purge", "--dead-letters"]])
async def test_unknown_sink_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A mistyped sink name says which sinks exist (exit 2), instead of an empty, reassuring answer."""
    cfg = write(tmp_path, "http://127.0.0.1:9/hook")
    async with bridge(cfg):
        pass
    code, out, err = await spool(capsys, command[0], "-c", str(cfg), "--sink", "rellay", *command[1:])
    assert code == 2 and out == ""
    assert "unknown sink 'rellay'" in err and "relay, archive" in err


async def test_replay_and_purge_by_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--since and --before choose dead letters by when they were dead-lettered; a bad time is one clear line."""
    async with WebhookSim() as sim:
        sim.default = Reply(400, "no")
        cfg = write(tmp_path, sim.url)
        async with bridge(cfg) as runtime:
            await runtime.journal.append(encoded([event()]), [])
            await wait_until(lambda: runtime.journal.cursor("relay") == runtime.journal.head, "relay settled")
        code, _, err = await spool(
            capsys, "purge", "-c", str(cfg), "--sink", "relay", "--dead-letters", "--before", "1h"
        )
        assert code == 0 and "purged 0" in err
        code, _, err = await spool(capsys, "replay", "-c", str(cfg), "--sink", "relay", "--since", "1h")
        assert code == 0 and "1 dead letter" in err
        code, _, err = await spool(capsys, "replay", "-c", str(cfg), "--sink", "relay", "--since", "yesterday")
        assert code == 2 and "--since" in err and "2h" in err
        # The replay waits in the journal for the next start, which sends it (and the receiver refuses it again).
        code, out, _ = await spool(capsys, "stats", "-c", str(cfg), "--json")
        relay: dict[str, Any] = next(s for s in map(json.loads, out.splitlines()) if s["sink"] == "relay")
        assert relay["replays_pending"] == 1 and relay["dead_letters"] == 0
        async with bridge(cfg) as runtime:
            relay_status = runtime.sinks["relay"].status
            await wait_until(lambda: relay_status.dead_lettered == 1, "the replay was sent and refused again")
            assert len(sim.received) == 2
        code, out, _ = await spool(capsys, "dead-letters", "-c", str(cfg), "--sink", "relay", "--json")
        assert len(out.splitlines()) == 1


def test_ages_read_as_an_operator_reads_them() -> None:
    """`spool stats` shows the oldest undelivered event's age in units a person reads at a glance."""
    from bridge.spool_cli import _age

    assert [_age(s) for s in (5, 312, 3 * 3600 + 240, 12 * 86400 + 3 * 3600)] == ["5s", "5m12s", "3h04m", "12d03h"]


async def test_stats_shows_in_flight_from_the_running_bridge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a slow receiver, `spool stats` shows the events on their way (asked of the running bridge) and the
    backlog; with the bridge stopped, in flight is unknown (shown as such), not zero."""
    import socket

    with socket.socket() as s:  # a free port for the listener: stats asks the running bridge on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with WebhookSim() as sim:
        sim.default = Reply(200, delay=1.0)
        cfg = write(tmp_path, sim.url, listen=f"127.0.0.1:{port}")
        async with bridge(cfg) as runtime:
            await runtime.journal.append(encoded([event(device_id=str(i)) for i in range(6)]), [])
            await wait_until(lambda: len(sim.received) >= 4, "four requests on their way")
            code, out, _ = await spool(capsys, "stats", "-c", str(cfg), "--json")
            relay = next(s for s in map(json.loads, out.splitlines()) if s["sink"] == "relay")
            assert code == 0 and relay["in_flight"] == 4 and relay["backlog"] == 6 and relay["state"] == "ok"
            assert relay["oldest_undelivered_age"] > 0
        code, out, _ = await spool(capsys, "stats", "-c", str(cfg), "--json")
        relay = next(s for s in map(json.loads, out.splitlines()) if s["sink"] == "relay")
        assert relay["in_flight"] is None and relay["backlog"] == 0
