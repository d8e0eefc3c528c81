"""What `hubbridge run` writes to journald: each line with its syslog priority, state changes, a periodic summary
and, at debug level, every event.

journald is emulated the way systemd tells a service it is connected to it: ``$JOURNAL_STREAM`` holds the device
and inode of stderr (here a file; under systemd the journal's stream socket).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from bridge.logs import PRIORITIES
from bridge.sim.hubitat import HubitatSim
from tests.test_cli import write_config

TOKEN = "logs-test-token"


async def test_journald_lines_carry_their_priority_state_changes_summary_and_events(tmp_path: Path) -> None:
    """`journalctl -p err` shows the errors: every line starts <N>; plus summary lines and debug event lines."""
    async with HubitatSim(access_token=TOKEN) as sim:
        hubs = [
            {"name": "good", "type": "hubitat", "url": sim.url, "app_id": 12, "access_token": TOKEN},
            {"name": "badtoken", "type": "hubitat", "url": sim.url, "app_id": 12, "access_token": "wrong"},
        ]
        for h in hubs:
            h.update(eventsocket=False, poll_interval="60s", detail_spacing="0s", backoff_max="1s")
        sinks = [{"name": "archive", "type": "file", "path": str(tmp_path / "ev.jsonl"), "fsync": False}]
        log = {"level": "debug", "format": "json", "summary_every": "1s"}
        cfg = write_config(tmp_path, hubs=hubs, sinks=sinks, log=log)
        out = tmp_path / "stderr"
        with out.open("wb") as stderr:
            st = os.fstat(stderr.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg), stderr=stderr, env=env, cwd=tmp_path
            )
            try:

                def lines() -> list[tuple[int, dict[str, Any]]]:
                    got = []
                    for raw in out.read_text(encoding="utf-8").splitlines():
                        assert raw.startswith("<") and ">" in raw[:3], f"no priority prefix: {raw!r}"
                        prio, _, rest = raw[1:].partition(">")
                        got.append((int(prio), json.loads(rest)))
                    return got

                async with asyncio.timeout(15):
                    while not any(e.get("event") == "flow summary" and e.get("events_in") for _, e in lines()):
                        await asyncio.sleep(0.05)
            finally:
                proc.terminate()
                assert await asyncio.wait_for(proc.wait(), 15) == 0
    got = lines()
    for prio, entry in got:
        assert prio == PRIORITIES[entry["level"]], (prio, entry)
    errors = [e for p, e in got if p <= 3]
    assert errors and all(e["level"] == "error" for e in errors)
    assert any(e.get("hub") == "badtoken" for e in errors), "the refused token is an error line"
    assert sum(1 for _, e in got if e.get("hub") == "badtoken" and e["level"] == "error") == 1, "repeats are limited"
    online = [e for _, e in got if e.get("event") == "hub online"]
    assert [e["hub"] for e in online] == ["good"], "one line when the hub comes online"
    events = [e for p, e in got if p == 7 and e.get("event") == "event"]
    assert {e["hub"] for e in events if e["kind"] == "device"} == {"good"} and all("attribute" in e for e in events)
    assert any(e["hub"] == "badtoken" and e["attribute"] == "hub_status" for e in events), "its offline event"
    summary = next(e for _, e in got if e.get("event") == "flow summary" and e.get("events_in"))
    assert summary["delivered"]["archive"] >= 1 and summary["backlog"] == {"archive": summary["backlog"]["archive"]}
    assert summary["hubs"] == {"good": "ok", "badtoken": "auth"}
