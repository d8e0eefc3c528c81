"""Hubitat through the cloud relay: the URL forms, polling only, each relay error in its own line, no token in logs.

The relay is the simulator's (``/api/<hubUID>/apps/<id>/...`` on loopback: a URL whose path is ``/api/<hubUID>`` is
the cloud form whatever its host); the bridge is the real Runtime (see test_hub.py for the harness).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bridge.cli import main
from bridge.sources.hubitat.config import CLOUD_POLL_INTERVAL, HubitatConfig
from tests.helpers import wait_until
from tests.sources.hubitat.test_hub import Bridge, TrackingSim, start_bridge

TOKEN = "cl0ud-t0ken-8e2f51aa"
UID = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconciliations back to back and short retries; tests/sources proves the floors themselves."""
    monkeypatch.setattr("bridge.sources.runner.MIN_RECONCILE_GAP", 0.0)
    monkeypatch.setattr("bridge.sources.base.HUB_RETRY_FLOOR", 0.2)


@pytest.fixture
async def sim() -> AsyncIterator[TrackingSim]:
    hub = TrackingSim(access_token=TOKEN, hub_uid=UID)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def bridges() -> AsyncIterator[list[Bridge]]:
    started: list[Bridge] = []
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


def cfg(url: str, **kw: Any) -> HubitatConfig:
    return HubitatConfig(name="cabin", type="hubitat", url=url, app_id=7, access_token=TOKEN, **kw)


async def cloud_bridge(bridges: list[Bridge], tmp_path: Path, sim: TrackingSim) -> Bridge:
    # Only the keys a user would write for a remote hub: eventsocket and the intervals take the cloud defaults.
    b = await start_bridge(
        bridges, tmp_path, sim, url=sim.cloud_url, eventsocket=None, poll_interval=None, request_timeout="2s"
    )
    return b


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("url", "base"),
    [
        (f"https://cloud.hubitat.com/api/{UID}", f"https://cloud.hubitat.com/api/{UID}/apps/7"),
        (f"https://cloud.hubitat.com/api/{UID}/", f"https://cloud.hubitat.com/api/{UID}/apps/7"),
        (f"https://oauth.cloud.hubitat.com/{UID}", f"https://oauth.cloud.hubitat.com/{UID}/apps/7"),
        (f"http://127.0.0.1:8081/api/{UID}", f"http://127.0.0.1:8081/api/{UID}/apps/7"),
    ],
)
def test_both_cloud_spellings_and_any_host_with_api_uid_are_the_cloud_form(url: str, base: str) -> None:
    """Either host spelling of the reference (and /api/<hubUID> on any host) polls through the relay, slower."""
    c = cfg(url)
    assert c.cloud and c.hub_uid == UID and c.maker_base == base
    assert c.eventsocket is False and c.poll_interval == CLOUD_POLL_INTERVAL


def test_cloud_refuses_what_the_relay_cannot_carry_and_polls_faster_than_its_floor() -> None:
    """eventsocket, POST-URL, health or a 30 s poll through the relay fail check with a line saying why."""
    url = f"https://cloud.hubitat.com/api/{UID}"
    for kw, words in [
        ({"eventsocket": True}, "no /eventsocket"),
        ({"webhook_secret": "s3cret"}, "POST-URL"),
        ({"health": True}, "admin endpoints"),
        ({"poll_interval": 30}, "at least 60s"),
    ]:
        with pytest.raises(ValidationError, match=words):
            cfg(url, **kw)
    assert cfg(url, poll_interval=60).poll_interval == 60


def test_a_pasted_cloud_url_says_what_goes_where_without_the_token() -> None:
    """A Maker API cloud link pasted whole names the relay address, app_id, and never repeats the token."""
    with pytest.raises(ValidationError) as err:
        cfg(f"https://cloud.hubitat.com/api/{UID}/apps/12/devices/all?access_token={TOKEN}")
    msg = err.value.errors()[0]["msg"]  # what `check` prints (pydantic's own repr of the input is not shown)
    assert f"https://cloud.hubitat.com/api/{UID}," in msg and "app_id (12 here)" in msg
    assert TOKEN not in msg
    with pytest.raises(ValidationError, match="hub's UID"):
        cfg("https://cloud.hubitat.com")


def test_check_says_what_is_unavailable_through_the_cloud(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hubbridge check` on a cloud hub lists the paths the relay does not carry (eventsocket, POST-URL, health)."""
    config = {
        "state_dir": str(tmp_path / "state"),
        "hubs": [
            {
                "name": "cabin",
                "type": "hubitat",
                "url": f"https://cloud.hubitat.com/api/{UID}",
                "app_id": 7,
                "access_token": TOKEN,
            },
        ],
        "sinks": [{"name": "archive", "type": "file", "path": str(tmp_path / "e.jsonl")}],
    }
    path = tmp_path / "hubbridge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hub cabin: through the Hubitat cloud relay" in out and "every 600s" in out
    unavailable = next(line for line in out.splitlines() if "not available" in line)
    assert "/eventsocket" in unavailable and "POST-URL" in unavailable and "health" in unavailable
    assert TOKEN not in out


# ------------------------------------------------------------------------------------------------ over sockets


async def test_a_remote_hub_is_polled_through_the_relay_with_the_same_event_contract(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], log_stream: io.StringIO
) -> None:
    """Events of a hub reached through the cloud are the same as on the LAN; nothing but Maker API is asked for."""
    b = await cloud_bridge(bridges, tmp_path, sim)
    await b.settled()
    ev = await b.wait_event(device_id="130", attribute="switch")
    assert ev["hub"] == "house" and ev["hub_type"] == "hubitat" and ev["source"] == "reconcile"
    sim.set_attribute("130", "switch", "on" if ev["value"] == "off" else "off")
    await b.next_poll()
    changed = await b.wait_event(device_id="130", attribute="switch", source="poll")
    assert changed["previous"] == ev["value"]
    paths = [p for _, p in sim.requests]
    assert paths and all(p.startswith(f"/api/{UID}/apps/{sim.app_id}/") for p in paths), paths
    assert "/eventsocket" not in " ".join(paths)
    assert b.status.streams.get("eventsocket") is None
    assert TOKEN not in log_stream.getvalue()


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("hub_offline", "cannot reach hub"),
        ("timeout", "timed out waiting for hub"),
        ("rate_limit", "rate-limiting this bridge (HTTP 429"),
    ],
)
async def test_each_relay_error_is_one_clear_line_without_the_token(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], log_stream: io.StringIO, fault: str, words: str
) -> None:
    """Hub offline, relay timeout and rate limit each read differently; the poll recovers once the relay does."""
    b = await cloud_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.relay_retry_after = 0.5
    sim.relay_fault = fault
    b.reconcile()
    await wait_until(lambda: b.status.state == "offline", what="the relay error to take the hub offline")
    assert words in b.status.detail and "cloud relay" in b.status.detail
    sim.relay_fault = None
    await wait_until(lambda: b.status.state == "ok", what="the hub back once the relay answers")
    entries = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    failed = [e for e in entries if e["event"] == "hub poll failed; backing off"]
    assert len(failed) == 1 and words in failed[0]["error"], failed
    assert TOKEN not in log_stream.getvalue()
    offline = b.find(kind="bridge", attribute="hub_status", value="offline")
    assert len(offline) == 1 and words in offline[0]["description"]
    assert TOKEN not in json.dumps(b.events)


async def test_a_rate_limited_bridge_waits_as_long_as_the_relay_asks(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge]
) -> None:
    """After a 429 with Retry-After, the next request comes no sooner than the relay asked (not the backoff's 0.2 s)."""
    b = await cloud_bridge(bridges, tmp_path, sim)
    await b.settled()
    sim.relay_retry_after = 1.0
    sim.relay_fault = "rate_limit"
    before = len(sim.requests)
    b.reconcile()
    await wait_until(lambda: sim.count("/devices/all") and len(sim.requests) >= before + 2, what="a retry")
    sim.relay_fault = None
    times = sim.requests.times[before:]
    assert times[1] - times[0] >= 0.95, times


async def test_an_unknown_hub_uid_and_an_unreachable_relay_name_the_problem_without_the_token(
    tmp_path: Path, sim: TrackingSim, bridges: list[Bridge], log_stream: io.StringIO
) -> None:
    """A wrong hub UID says to check app_id, UID and the cloud toggle; a relay that cannot be reached says so."""
    b = await start_bridge(
        bridges, tmp_path, sim, url=f"{sim.url}/api/{UID[:-4]}ffff", eventsocket=None, poll_interval=None
    )
    await wait_until(lambda: b.status.state == "offline", what="the poll to fail")
    assert "no Maker API app" in b.status.detail and "Remote / Cloud" in b.status.detail
    port = sim.port
    await b.stop()
    bridges.remove(b)
    await sim.stop()  # nothing listens there now: the relay is unreachable
    gone = await start_bridge(bridges, tmp_path, sim, url=f"http://127.0.0.1:{port}/api/{UID}", eventsocket=None)
    await wait_until(lambda: gone.status.state == "offline", what="the poll to fail")
    assert "cannot connect" in gone.status.detail
    assert TOKEN not in log_stream.getvalue() and TOKEN not in gone.status.detail
