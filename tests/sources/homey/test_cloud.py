"""The Athom cloud route: `hubbridge auth homey`, then the bridge on the stored login (homey.md 6.2).

Real servers: AthomCloudSim (api.athom.com and accounts.athom.com) and HomeySim, over loopback. Sessions expire
mid-stream, refresh tokens rotate on every refresh, and a revoked login holds the hub with one clear line.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.sim.homey import AthomCloudSim, HomeySim
from tests.helpers import wait_until
from tests.sources.homey.helpers import HUB, Bridge

DRESSING = "ffc17df6-e354-4e96-9d88-475a9b488e7d"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def hubs() -> AsyncIterator[tuple[AthomCloudSim, HomeySim]]:
    async with AthomCloudSim() as cloud, HomeySim() as sim:
        # localUrlSecure first in the reference's order; nothing listens there, so the LAN address is used.
        cloud.add_homey(sim, name="Cabin", local_secure=f"https://127.0.0.1:{closed_port()}")
        yield cloud, sim


def cloud_cfg(cloud: AthomCloudSim) -> dict[str, Any]:
    return {"api_url": cloud.url, "accounts_url": cloud.url, "client_id": cloud.client_id}


def write_config(tmp_path: Path, cloud: AthomCloudSim, sim: HomeySim) -> Path:
    path = tmp_path / "hubbridge.yaml"
    hub = {"name": HUB, "type": "homey", "url": sim.url, "cloud": cloud_cfg(cloud)}
    sinks = [{"name": "f", "type": "file", "path": str(tmp_path / "e.jsonl")}]
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "hubs": [hub], "sinks": sinks}))
    return path


async def auth_homey(tmp_path: Path, cloud: AthomCloudSim, sim: HomeySim, *extra: str) -> int:
    """`hubbridge auth homey` as a user runs it (in a thread: it runs its own event loop)."""
    cfg = write_config(tmp_path, cloud, sim)
    (tmp_path / "secret").write_text(cloud.client_secret)
    argv = ["auth", "homey", "-c", str(cfg), "--client-secret-file", str(tmp_path / "secret"), *extra]
    return await asyncio.to_thread(main, argv)


def login_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / f"homey-{HUB}.login.json"


async def test_auth_homey_with_email_and_password_stores_the_login_0600(
    tmp_path: Path, hubs: tuple[AthomCloudSim, HomeySim], capsys: pytest.CaptureFixture[str]
) -> None:
    """Email and password give a code, tokens and the Homey list; the refresh token is stored with mode 0600."""
    cloud, sim = hubs
    (tmp_path / "pw").write_text("correct horse\n")
    code = await auth_homey(
        tmp_path, cloud, sim, "--email", "user@example.com", "--password-file", str(tmp_path / "pw")
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(login_path(tmp_path).read_text())
    assert data["refresh_token"] in cloud.refresh_tokens and data["homey"]["id"] == sim.homey_id
    assert stat.S_IMODE(os.stat(login_path(tmp_path)).st_mode) == 0o600
    assert "Cabin" in capsys.readouterr().out


async def test_auth_homey_refuses_a_wrong_password_in_one_line(
    tmp_path: Path, hubs: tuple[AthomCloudSim, HomeySim], capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong password: exit 1, one line on stderr, nothing stored."""
    cloud, sim = hubs
    (tmp_path / "pw").write_text("wrong\n")
    code = await auth_homey(
        tmp_path, cloud, sim, "--email", "user@example.com", "--password-file", str(tmp_path / "pw")
    )
    err = capsys.readouterr().err
    assert code == 1 and "refused the login" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not login_path(tmp_path).exists()


async def test_the_bridge_runs_on_the_stored_login_through_expiring_sessions_without_losing_events(
    tmp_path: Path, hubs: tuple[AthomCloudSim, HomeySim]
) -> None:
    """Sessions expire every half second mid-stream: they are renewed, refresh tokens rotate, no change is lost."""
    cloud, sim = hubs
    cloud.access_lifetime = 1.0  # every session renewal needs a refresh: each one rotates the refresh token
    assert await auth_homey(tmp_path, cloud, sim, "--code", cloud.issue_code(), "--homey", "Cabin") == 0
    first_refresh = json.loads(login_path(tmp_path).read_text())["refresh_token"]
    sim.session_lifetime = 0.5
    async with Bridge(tmp_path, url=sim.url, cloud=cloud_cfg(cloud), realtime=True) as bridge:
        await wait_until(lambda: bridge.live, "realtime connected")
        await wait_until(lambda: f"homey:device:{DRESSING}" in sim.realtime.subscriptions, "device subscribed")
        assert bridge.runtime.health()[1]["hubs"][HUB]["address"] == sim.url  # localUrlSecure did not answer
        want = []
        for i in range(60):
            value = 1000.0 + i
            await sim.state.set_capability(DRESSING, "measure_power", value)
            want.append(value)
            if i % 10 == 0:
                bridge.reconcile()  # polls keep meeting expired sessions (401) while events stream
            await asyncio.sleep(0.02)

        def values() -> list[float]:
            return [ev["value"] for ev in bridge.find(device_id=DRESSING, attribute="measure_power")]

        # Every change arrives, by the stream or (when a poll read it first) by the reconciliation: once, in order.
        await wait_until(lambda: set(want) <= set(values()), "every change recorded")
        got = [v for v in values() if v >= 1000]
        assert got == want, [(ev["value"], ev["source"]) for ev in bridge.find(attribute="measure_power")]
        assert sim.logins >= 2 and 401 in sim.refused  # sessions were renewed mid-stream
        assert bridge.status.state == "ok"
    stored = json.loads(login_path(tmp_path).read_text())["refresh_token"]
    assert stored != first_refresh and stored in cloud.refresh_tokens and cloud.refreshes >= 2
    # The rotated token is the one on disk: a restarted bridge logs in with it.
    async with Bridge(tmp_path, url=sim.url, cloud=cloud_cfg(cloud)) as bridge:
        await bridge.polled(1)


async def test_sessions_ending_their_sockets_are_renewed_and_reconciled(
    tmp_path: Path, hubs: tuple[AthomCloudSim, HomeySim]
) -> None:
    """A hub that closes a socket when its session ends: a fresh session, a new socket, and a poll for the gap."""
    cloud, sim = hubs
    assert await auth_homey(tmp_path, cloud, sim, "--code", cloud.issue_code()) == 0
    async with Bridge(tmp_path, url=sim.url, cloud=cloud_cfg(cloud), realtime=True) as bridge:
        await wait_until(lambda: bridge.live, "realtime connected")
        await bridge.polled()
        sim.realtime.end_sessions = True
        logins = sim.logins
        await sim.state.set_capability(DRESSING, "meter_power", 512.0, push=False)  # while no socket listens
        sim.expire_sessions()
        ev = await bridge.wait_event(device_id=DRESSING, attribute="meter_power", value=512.0)
        assert ev["source"] == "reconcile"
        await wait_until(lambda: bridge.live and sim.logins > logins, "a new session and socket")


async def test_a_revoked_login_holds_with_a_line_saying_to_log_in_again(
    tmp_path: Path, hubs: tuple[AthomCloudSim, HomeySim]
) -> None:
    """The refresh token is revoked: the hub is held ('auth') with a line naming `hubbridge auth homey`."""
    cloud, sim = hubs
    assert await auth_homey(tmp_path, cloud, sim, "--code", cloud.issue_code()) == 0
    async with Bridge(tmp_path, url=sim.url, cloud=cloud_cfg(cloud)) as bridge:
        await bridge.polled()
        cloud.revoke()
        sim.expire_sessions()
        bridge.reconcile()
        await wait_until(lambda: bridge.status.state == "auth", "the hub held for auth")
        assert "hubbridge auth homey" in bridge.status.detail and "refused the stored login" in bridge.status.detail


async def test_no_key_and_no_login_says_what_to_do(tmp_path: Path, hubs: tuple[AthomCloudSim, HomeySim]) -> None:
    """Neither api_key nor a stored login: the hub says to give one or run `hubbridge auth homey`."""
    cloud, sim = hubs
    async with Bridge(tmp_path, url=sim.url, cloud=cloud_cfg(cloud)) as bridge:
        await wait_until(lambda: bridge.status.state == "auth", "the hub held for auth")
        assert "hubbridge auth homey" in bridge.status.detail and "api_key" in bridge.status.detail


def test_auth_homey_asks_which_homey_when_the_account_has_several(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several Homeys: they are listed and the user's number picks one (a wrong answer asks again)."""
    from bridge.sources.homey.login import _choose

    answers = iter(["7", "x", "2"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    homeys = [{"id": "a" * 24, "name": "Home"}, {"id": "b" * 24, "name": "Cabin", "modelName": "Homey Pro"}]
    assert _choose(homeys, None)["name"] == "Cabin"
    out = capsys.readouterr().out
    assert "1. Home" in out and "2. Cabin (Homey Pro" in out
    assert _choose(homeys, "b" * 24)["name"] == "Cabin"
