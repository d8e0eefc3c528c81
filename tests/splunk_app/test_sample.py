"""``hubbridge demo --splunk-sample FILE``: a day of events a user loads into a test Splunk to try the app.

The file must be what the HEC sink sends (envelopes HEC accepts, events in the contract's exact shape), cover
what every dashboard shows (both hub types, every kind, hub health, variables, an outage with reconciliation), and
hold what each alert looks for, so a user who loads it sees every panel and alert work.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bridge.cli import main
from bridge.events import FIELDS
from bridge.sim.hec import HecSim
from bridge.splunk_sample import DAY, write_sample

START = 1_764_547_200.0  # a fixed day: the sample is the same bytes on every run


def _envelopes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_command_writes_a_day_of_hec_envelopes_in_the_contracts_shape(tmp_path: Path, capsys: Any) -> None:
    """Every line is one HEC envelope; events carry exactly the 14 contract fields in order, unique ids, and times
    spanning yesterday from midnight (so its clock matches the day's events); numbers also go out as metrics with
    the sink's dimensions."""
    out = tmp_path / "sample.json"
    assert main(["demo", "--splunk-sample", str(out)]) == 0
    assert f"{out}:" in capsys.readouterr().out
    envelopes = _envelopes(out)
    events = [e for e in envelopes if e["event"] != "metric"]
    metrics = [e for e in envelopes if e["event"] == "metric"]
    assert len(events) > 2000 and len(metrics) > 1000
    for env in events:
        assert list(env["event"]) == list(FIELDS)
        assert env["sourcetype"] == "hubbridge:event" and env["index"] == "smarthome"
        assert env["time"] == env["event"]["time"] and isinstance(env["time"], float)
        assert env["fields"]["hub"] == env["event"]["hub"] == env["host"]
    assert len({e["event"]["id"] for e in events}) == len(events)
    times = [e["time"] for e in envelopes]
    assert max(times) - min(times) > DAY - 3600
    first = time.localtime(min(times))
    yesterday = time.localtime(time.time() - DAY)
    assert (first.tm_year, first.tm_yday, first.tm_hour, first.tm_min) == (yesterday.tm_year, yesterday.tm_yday, 0, 0)
    for env in metrics:
        assert env["index"] == "home_metrics"
        [name] = [k for k in env["fields"] if k.startswith("metric_name:")]
        assert isinstance(env["fields"][name], int | float) and "hub" in env["fields"]


def test_the_day_covers_every_dashboard_and_alert(tmp_path: Path) -> None:
    """Both hub types and every kind are there; hub health with a degraded spell and a reboot; Logic variables;
    one outage seen by the bridge followed by reconciled changes; and a leak, a door open 45 minutes, a battery
    under 20 %, for the alerts."""
    events = [
        e["event"] for e in _envelopes(write_sample(tmp_path / "s.json", start=START).path) if e["event"] != "metric"
    ]
    assert {(e["hub"], e["hub_type"]) for e in events} == {("house", "hubitat"), ("cabin", "homey")}
    assert set(Counter(e["kind"] for e in events)) == {"device", "location", "hub", "variable", "bridge"}
    hub_attrs = {e["attribute"] for e in events if e["kind"] == "hub"}
    assert {
        "free_os_memory",
        "cpu_load_5m",
        "java_heap_total",
        "java_heap_free",
        "java_direct",
        "internal_temperature",
        "database_size",
        "hub_status",
        "zigbee_status",
        "zwave_status",
        "cloud_status",
        "systemStart",
        "alert.hubLowMemory",
    } <= hub_attrs
    assert all(e["device_id"] is None for e in events if e["kind"] in ("hub", "variable", "bridge"))
    assert [
        e["value"] for e in events if e["hub"] == "house" and e["kind"] == "hub" and e["attribute"] == "hub_status"
    ] == [
        "online",
        "degraded",
        "online",
    ]
    bridge = [(e["hub"], e["value"]) for e in events if e["kind"] == "bridge"]
    assert bridge == [("house", "online"), ("cabin", "online"), ("house", "offline"), ("house", "online")]
    back = next(e["time"] for e in events if e["kind"] == "bridge" and e["time"] > START + 1 and e["value"] == "online")
    reconciled = [e for e in events if e["source"] == "reconcile"]
    assert reconciled and all(e["time"] > back and e["unit"] is None for e in reconciled)
    assert {e["attribute"] for e in events if e["kind"] == "variable"} >= {"heating_boost", "guests_expected"}
    assert any(e["attribute"] == "water" and e["value"] == "wet" for e in events)
    door = [(e["time"], e["value"]) for e in events if e["attribute"] == "contact"]
    assert any(v == "open" and door[i + 1][0] - t > 1800 for i, (t, v) in enumerate(door[:-1]))
    assert min(e["value"] for e in events if e["attribute"] == "battery") <= 20
    # What the bridge's diff guarantees: a changed value each time, previous = the value before.
    last: dict[tuple[str, str, str | None, str], Any] = {}
    for e in events:
        key = (e["hub"], e["kind"], e["device_id"], e["attribute"])
        if e["attribute"] not in ("pushed", "systemStart"):
            assert e["previous"] == last.get(key) and e["value"] != e["previous"], e
        last[key] = e["value"]


async def test_hec_takes_the_file_as_it_is(tmp_path: Path) -> None:
    """POSTed unchanged to HEC (the simulator, with the indexes the docs say to create), every envelope is indexed:
    events into smarthome, metrics into home_metrics."""
    summary = write_sample(tmp_path / "s.json", start=START)
    body = summary.path.read_bytes()
    async with (
        HecSim(tokens=("t",), allowed_indexes=("smarthome", "home_metrics"), max_content_length=len(body) + 1) as hec,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{hec.url}/services/collector/event", data=body, headers={"Authorization": "Splunk t"}
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["code"] == 0
        assert len(hec.events()) == summary.events
        assert len(hec.metrics()) == summary.metrics
