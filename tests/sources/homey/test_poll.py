"""The Homey source polling a simulated Homey with an API key: the real Runtime, real sockets, the file sink."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from bridge.cli import main
from bridge.sim.homey import HomeySim
from bridge.sources.homey.api import endpoint
from tests.helpers import wait_until
from tests.sources.homey.helpers import Bridge

DRESSING = "ffc17df6-e354-4e96-9d88-475a9b488e7d"  # the fixture's Homey Pro 2023 device


async def test_a_poll_reports_every_capability_typed_with_rooms_and_a_restart_writes_nothing(
    tmp_path: Path,
) -> None:
    """Every capability arrives once, typed, with unit, room and the hub's time; a restart writes nothing new."""
    async with HomeySim() as sim:
        async with Bridge(tmp_path, url=sim.url, api_key=sim.api_key) as bridge:
            await bridge.polled()
            await bridge.wait_event(device_id=DRESSING, attribute="meter_power")
            ev = bridge.find(device_id=DRESSING, attribute="meter_power")[0]
            assert (ev["value"], ev["unit"], ev["room"], ev["device"]) == (169.96, "kWh", "Dressing", "Dressing Light")
            assert ev["hub_type"] == "homey" and ev["source"] == "reconcile" and ev["time"] < 1.8e9
            lamp = next(d for d in sim.state.devices.values() if d["class"] == "light")
            dim = bridge.find(device_id=lamp["id"], attribute="dim")[0]
            assert dim["value"] == lamp["capabilitiesObj"]["dim"]["value"] and 0 <= dim["value"] <= 1
            assert bridge.find(device_id=lamp["id"], attribute="onoff")[0]["value"] in (True, False)
            relay = next(d for d in sim.state.devices.values() if "onoff.output1" in d["capabilities"])
            assert bridge.find(device_id=relay["id"], attribute="onoff.output1")
            assert not bridge.find(attribute="button.reset_meter")  # a maintenance action, not a state
            guests = bridge.find(kind="variable", attribute="Guests")[0]
            assert (guests["value"], guests["device_id"], guests["device"]) == (0, None, None)
            # The address in use is on /healthz; the requests are on /metrics by endpoint, no device id in it.
            assert bridge.runtime.health()[1]["hubs"]["cabin"]["address"] == sim.url
            timed = {
                s.labels["endpoint"]
                for family in text_string_to_metric_families(bridge.runtime.stats.metrics().decode())
                for s in family.samples
                if s.name == "hubbridge_hub_request_seconds_count" and s.labels.get("hub") == "cabin"
            }
            assert "devices/device" in timed and not any(DRESSING in e for e in timed), timed
            first = len(bridge.events)
            await wait_until(lambda: len(bridge.written()) == first, "the file sink to write every event")
        async with Bridge(tmp_path, url=sim.url, api_key=sim.api_key) as bridge:
            await bridge.polled()  # counted once its readings went through the diff and the journal
            assert bridge.events == []
        assert len(bridge.written()) == first


async def test_a_change_is_one_event_with_previous(tmp_path: Path) -> None:
    """A changed capability between polls is one event carrying the previous value; unavailable is said once."""
    async with HomeySim() as sim, Bridge(tmp_path, url=sim.url, api_key=sim.api_key) as bridge:
        await bridge.polled()
        await sim.state.set_capability(DRESSING, "measure_power", 42.5, push=False)
        await sim.state.update_device(DRESSING, available=False, unavailableMessage="Unreachable")
        bridge.reconcile()
        ev = await bridge.wait_event(device_id=DRESSING, attribute="measure_power", value=42.5)
        assert ev["previous"] == 0 and ev["unit"] == "W"
        gone = await bridge.wait_event(device_id=DRESSING, attribute="available", value=False)
        assert gone["description"] == "Unreachable"
        polls = bridge.status.polls
        bridge.reconcile()
        await bridge.polled(polls + 1)
        assert len(bridge.find(device_id=DRESSING, attribute="available", value=False)) == 1


async def test_a_refused_key_holds_with_one_clear_line_and_a_new_key_file_is_picked_up(tmp_path: Path) -> None:
    """A 401 key: the hub is 'auth' with a line naming the fix; writing a good key to api_key_file resumes it."""
    key_file = tmp_path / "homey.key"
    key_file.write_text("00000000-0000-0000-0000-000000000000:bad:key\n", encoding="utf-8")
    async with HomeySim() as sim, Bridge(tmp_path, url=sim.url, api_key_file=str(key_file)) as bridge:
        await wait_until(lambda: bridge.status.state == "auth", "the hub held for auth")
        assert "refused the API key" in bridge.status.detail and "api_key" in bridge.status.detail
        assert "bad:key" not in bridge.status.detail
        key_file.write_text(sim.api_key + "\n", encoding="utf-8")
        await bridge.polled()
        await bridge.wait_event(device_id=DRESSING, attribute="onoff")
        assert bridge.status.state == "ok"


async def test_a_key_without_the_zone_scope_still_polls_and_says_so_once(tmp_path: Path) -> None:
    """Missing homey.zone.readonly: devices still arrive (no room), one warning names the scope."""
    key = "aaaaaaaa-0000-4000-8000-000000000000:bbbbbbbb-0000-4000-8000-000000000000:0123abcd"
    async with HomeySim(api_keys={key: ["homey.device.readonly", "homey.logic.readonly"]}) as sim:
        with structlog.testing.capture_logs() as logs:
            async with Bridge(tmp_path, url=sim.url, api_key=key) as bridge:
                await bridge.polled()
                ev = await bridge.wait_event(device_id=DRESSING, attribute="onoff")
                bridge.reconcile()
                await bridge.polled(2)
        assert ev["room"] is None
        warned = [e for e in logs if "no room names" in e["event"]]
        assert len(warned) == 1 and "homey.zone.readonly" in warned[0]["error"]
        assert 403 in sim.refused


async def test_a_key_without_device_scope_names_it(tmp_path: Path) -> None:
    """A key that may not read devices: the hub holds with the missing scope named."""
    key = "cccccccc-0000-4000-8000-000000000000:dddddddd-0000-4000-8000-000000000000:0123abcd"
    async with (
        HomeySim(api_keys={key: ["homey.zone.readonly"]}) as sim,
        Bridge(tmp_path, url=sim.url, api_key=key) as bridge,
    ):
        await wait_until(lambda: bridge.status.state == "auth", "the hub held for auth")
        assert "homey.device.readonly" in bridge.status.detail


def test_check_accepts_the_documented_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hubbridge check` takes the issue's config shape (url, api_key from the environment, realtime, 5m)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"state_dir: {tmp_path}/state\nhubs:\n  - name: cabin\n    type: homey\n    url: http://192.168.1.20\n"
        "    api_key: ${HOMEY_API_KEY}\n    realtime: true\n    poll_interval: 5m\n"
        f"sinks:\n  - name: f\n    type: file\n    path: {tmp_path}/e.jsonl\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env={"HOMEY_API_KEY": "a:b:c", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cabin" in proc.stdout
    # A poll interval under the floor: exit 2 and one line naming the key, without a traceback.
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("5m", "1s"), encoding="utf-8")
    monkeypatch.setenv("HOMEY_API_KEY", "a:b:c")
    assert main(["check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "poll_interval" in err and "at least 10s" in err and "Traceback" not in err


async def test_html_pages_and_broken_json_are_one_clear_line_and_the_hub_recovers(tmp_path: Path) -> None:
    """A proxy's HTML 502 and truncated JSON: the hub is 'offline' with what was wrong, then recovers."""
    async with HomeySim() as sim, Bridge(tmp_path, url=sim.url, api_key=sim.api_key) as bridge:
        await bridge.polled()
        sim.raw_response = (502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>")
        bridge.reconcile()
        await wait_until(lambda: bridge.status.state == "offline", "the hub offline")
        assert "HTTP 502" in bridge.status.detail and "GET /api/manager/" in bridge.status.detail
        sim.raw_response = (200, "application/json", '{"ffc17df6": {"id": "ffc17df6", "capabilitiesObj": {')
        await wait_until(lambda: "malformed JSON" in bridge.status.detail, "the broken JSON named")
        sim.raw_response = None
        await wait_until(lambda: bridge.status.state == "ok", "the hub back")


def test_request_metrics_name_endpoints_without_ids() -> None:
    """/metrics labels Homey requests by endpoint: a device's uuid becomes {id}, so the label set stays small."""
    assert endpoint(f"devices/device/{DRESSING}") == "devices/device/{id}"
    assert endpoint("devices/device") == "devices/device"
    assert endpoint("logic/variable") == "logic/variable"
