"""kill -9 at any moment loses nothing (DESIGN 4).

The bridge runs as a real subprocess against the Hubitat simulator and is killed with SIGKILL several times
while the simulator pushes a few thousand changes over the eventsocket and POST-URL. After the last restart:

* every change the bridge acknowledged (each POST-URL request it answered 200) is in the file;
* the file's last value of every attribute equals the hub's;
* duplicates share an ``id`` (and one id always means the same change);
* no line is torn;
* no unchanged value was ever emitted.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from bridge.diff import same_value
from bridge.events import FIELDS
from bridge.sim.hubitat import HubitatSim
from bridge.sources.hubitat import MOMENTARY

ROUNDS = 5
TOKEN = "crash-test-token"
SECRET = "crash-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(tmp: Path, hub_url: str, port: int) -> Path:
    cfg = tmp / "bridge.yaml"
    cfg.write_text(
        f"""\
state_dir: {tmp}/state
listen: 127.0.0.1:{port}
log:
  level: info
  format: json
hubs:
  - name: home
    type: hubitat
    url: {hub_url}
    app_id: 12
    access_token: {TOKEN}
    eventsocket: true
    poll_interval: 10s
    eventsocket_timeout: 5s
    backoff_max: 2s
    detail_spacing: 0s
    webhook_secret: {SECRET}
    advertise_url: http://127.0.0.1:{port}
sinks:
  - name: archive
    type: file
    path: {tmp}/events.jsonl
    batch:
      max_events: 200
      max_wait: 50ms
""",
        encoding="utf-8",
    )
    return cfg


async def start_bridge(cfg: Path, port: int, log: Any) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg), stdout=log, stderr=log
    )
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    await resp.read()
                    return proc
            except aiohttp.ClientError:
                assert proc.returncode is None, "the bridge exited during start-up"
                await asyncio.sleep(0.05)


def typed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the file ends in a torn line"
    for n, line in enumerate(raw.split(b"\n")[:-1], 1):
        ev = json.loads(line)  # a torn line fails here
        assert tuple(ev) == FIELDS, f"line {n} has fields {tuple(ev)}"
        events.append(ev)
    return events


async def test_sigkill_loses_nothing(tmp_path: Path) -> None:
    """Killed with SIGKILL five times under load, the bridge loses no acknowledged change and never repeats a value."""
    rng = random.Random(1234)
    async with HubitatSim(access_token=TOKEN, seed=7) as sim:
        port = free_port()
        cfg = write_config(tmp_path, sim.url, port)
        # Numeric attributes get globally increasing values, so every change is unique and traceable.
        # Momentary attributes (button "pushed", "held"...) are occurrences: a repeat is a new press, so a
        # POST-URL copy that arrives after a restart cannot be told from one. Only states are pushed here.
        keys = [
            k
            for k, v in sim.state().items()
            if isinstance(v, int) and not isinstance(v, bool) and k[1] not in MOMENTARY
        ]
        assert len(keys) >= 5
        counter = 1_000_000
        pushing = True

        async def push() -> None:
            nonlocal counter
            while pushing:
                for _ in range(4):
                    counter += 1
                    device_id, attribute = rng.choice(keys)
                    sim.set_attribute(device_id, attribute, counter)
                await asyncio.sleep(0.01)

        log = open(tmp_path / "bridge.log", "ab")  # noqa: ASYNC230, SIM115 - subprocess output sink
        try:
            pusher = asyncio.create_task(push())
            kills = 0
            for _ in range(ROUNDS):
                proc = await start_bridge(cfg, port, log)
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kills += 1
                await asyncio.sleep(rng.uniform(0.05, 0.5))  # changes keep happening while it is down
            proc = await start_bridge(cfg, port, log)
            await asyncio.sleep(1.5)
            pushing = False
            await pusher
            await sim.wait_posts_idle(timeout=60)

            # Converge: the last restart's reconciliation and the stream bring the file to the hub's state.
            events_path = tmp_path / "events.jsonl"
            hub = sim.state()
            async with asyncio.timeout(60):
                while True:
                    if events_path.exists():
                        last: dict[tuple[str, str], Any] = {}
                        for ev in read_events(events_path):
                            if ev["kind"] == "device":
                                last[(ev["device_id"], ev["attribute"])] = ev["value"]
                        if all(k in last and same_value(last[k], hub[k]) for k in keys):
                            break
                    await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0, "SIGTERM must end the bridge with exit 0"
        finally:
            pushing = False
            for p in [proc] if "proc" in locals() else []:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
            log.close()

    events = read_events(tmp_path / "events.jsonl")
    assert kills == ROUNDS
    assert counter - 1_000_000 > 2000, "the test must push a few thousand changes"

    # 1. Every POST the bridge answered 200 is in the file.
    in_file = {(ev["device_id"], ev["attribute"], json.dumps(ev["value"])) for ev in events if ev["kind"] == "device"}
    acked = [
        (body["content"]["deviceId"], body["content"]["name"], json.dumps(int(body["content"]["value"])))
        for body, status in sim.post_results
        if status == 200 and body["content"].get("deviceId") is not None
    ]
    assert len(acked) > 100, "the POST-URL path must have been exercised"
    missing = [a for a in acked if a not in in_file]
    assert not missing, f"{len(missing)} acknowledged changes are missing, e.g. {missing[:5]}"

    # 2. The file's last value of every attribute equals the hub's.
    last = {}
    for ev in events:
        if ev["kind"] == "device":
            last[(ev["device_id"], ev["attribute"])] = ev["value"]
    # The hub keeps DECIMAL and JSON_OBJECT values as text (hubitat.md 1.3); the bridge types them.
    # lockCodes (the users' PINs) is never forwarded by default.
    hub_state = {k: v for k, v in sim.state().items() if k[1] != "lockCodes"}
    wrong = {k: (last.get(k), v) for k, v in hub_state.items() if not same_value(last.get(k), typed(v))}
    assert not wrong, f"file and hub disagree on {len(wrong)} attributes, e.g. {list(wrong.items())[:5]}"

    # 3. Duplicates share an id, and an id always names the same change.
    by_id: dict[str, dict[str, Any]] = {}
    ids_of_change: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for ev in events:
        change = (ev["hub"], ev["kind"], ev["device_id"], ev["attribute"], json.dumps(ev["value"]))
        ids_of_change[change].add(ev["id"])
        if ev["id"] in by_id:
            assert by_id[ev["id"]] == ev, f"id {ev['id']} names two different events"
        by_id[ev["id"]] = ev
    split = {c: i for c, i in ids_of_change.items() if len(i) > 1 and c[1] == "device"}
    assert not split, f"the same change got different ids: {list(split.items())[:3]}"

    # 4. (read_events checked that no line is torn.) 5. No unchanged value was ever emitted.
    unchanged = [ev for ev in events if ev["previous"] is not None and same_value(ev["value"], ev["previous"])]
    assert not unchanged, f"{len(unchanged)} events did not change anything, e.g. {unchanged[:2]}"

    # The crash really interrupted deliveries: some lines were written twice (same id) or it would prove little.
    print(
        f"changes pushed: {counter - 1_000_000}, acked POSTs: {len(acked)}, lines: {len(events)}, "
        f"distinct ids: {len(by_id)}, duplicate lines: {len(events) - len(by_id)}, kills: {kills}"
    )
