"""/healthz and /metrics of a real bridge (Runtime in-process) reading the Hubitat simulator.

What an operator notices: Prometheus can scrape /metrics (parsed here by prometheus-client's own parser) and the
figures agree with what was delivered; /healthz shows per hub and sink what a status page needs, its totals do not
reset when the bridge restarts, and a dead letter turns it to degraded (503) with the reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import load_config
from bridge.metrics import event_time
from bridge.runtime import Runtime
from bridge.sim.hec import HecSim
from bridge.sim.hubitat import HubitatSim
from tests.helpers import wait_until
from tests.test_cli import write_config

TOKEN = "metrics-test-token"
HEC_TOKEN = "metrics-hec-token"


def test_event_time_reads_the_time_field_only() -> None:
    """The latency histogram reads an event's hub time from its JSON line without parsing the rest."""
    assert event_time('{"id":"x","time":1733000000.25,"hub":"h"}') == 1733000000.25
    assert event_time('{"id":"x","hub":"h"}') is None
    assert event_time('{"id":"x","time":null,"hub":"h"}') is None


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _get(http: aiohttp.ClientSession, runtime: Runtime, path: str) -> tuple[int, str]:
    assert runtime.server is not None
    async with http.get(f"http://127.0.0.1:{runtime.server.port}{path}") as resp:
        return resp.status, await resp.text()


def _config(tmp: Path, hub_url: str, hec_url: str) -> Any:
    hub = {
        "name": "home",
        "type": "hubitat",
        "url": hub_url,
        "app_id": 12,
        "access_token": TOKEN,
        "eventsocket": True,
        "poll_interval": "60s",
        "detail_spacing": "0s",
    }
    sinks = [
        {
            "name": "archive",
            "type": "file",
            "path": str(tmp / "events.jsonl"),
            "fsync": False,
            "batch": {"max_wait": 0},
        },
        {
            "name": "splunk",
            "type": "splunk_hec",
            "url": hec_url,
            "token": HEC_TOKEN,
            "batch": {"max_wait": 0},
            "filters": {"exclude": [{"kind": "bridge"}]},  # the bridge's own hub_status events stay out
        },
    ]
    return load_config(write_config(tmp, hubs=[hub], sinks=sinks), env={})


def _lines(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "events.jsonl"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(x) for x in text[: text.rfind("\n") + 1].splitlines()]  # not a line being written


async def test_metrics_and_healthz_agree_with_what_was_delivered(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Prometheus text parses; received >= emitted == delivered + filtered; /healthz fields; totals survive restarts."""
    async with HubitatSim(access_token=TOKEN) as sim, HecSim(tokens=(HEC_TOKEN,)) as hec:
        cfg = _config(tmp_path, sim.url, hec.url)
        runtime = Runtime(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(lambda: runtime.ready.is_set() or task.done(), "the runtime is ready")
            await wait_until(lambda: len(_lines(tmp_path)) > 5, "the start-up poll is delivered")
            await wait_until(
                lambda: runtime.sinks["splunk"].lag == 0 and runtime.sinks["archive"].lag == 0, "caught up"
            )
            key = next(k for k, v in sim.state().items() if isinstance(v, int) and not isinstance(v, bool))
            sim.set_attribute(key[0], key[1], 424242)
            await wait_until(lambda: any(e["value"] == 424242 for e in _lines(tmp_path)), "the pushed change")
            await wait_until(lambda: runtime.sinks["archive"].lag == 0, "caught up again")
            sim.set_attribute(key[0], key[1], 424242, is_state_change=True)  # the same value again: no change

            def repeated() -> bool:
                runtime.stats.count()
                return runtime.stats.unchanged["home"] >= 1

            await wait_until(repeated, "the repeat is counted as unchanged")
            await runtime.stats.refresh()

            code, text = await _get(http, runtime, "/metrics")
            assert code == 200
            m = _samples(text)
            delivered = len(_lines(tmp_path))
            assert m[("hubbridge_sink_delivered_total", (("sink", "archive"),))] == delivered
            emitted = sum(v for (n, _), v in m.items() if n == "hubbridge_events_emitted_total")
            assert emitted == delivered
            assert m[("hubbridge_events_emitted_total", (("hub", "home"), ("source", "eventsocket")))] >= 1
            received = sum(v for (n, _), v in m.items() if n == "hubbridge_readings_received_total")
            unchanged = m[("hubbridge_readings_unchanged_total", (("hub", "home"),))]
            assert received == emitted + unchanged and unchanged >= 1
            assert m[("hubbridge_sink_backlog_events", (("sink", "splunk"),))] == 0
            bridge_events = sum(1 for e in _lines(tmp_path) if e["kind"] == "bridge")
            assert bridge_events >= 1, "the hub's online event"
            assert m[("hubbridge_sink_filtered_total", (("sink", "splunk"),))] == bridge_events
            assert m[("hubbridge_sink_delivered_total", (("sink", "splunk"),))] == delivered - bridge_events
            assert m[("hubbridge_sink_filtered_total", (("sink", "archive"),))] == 0
            assert m[("hubbridge_journal_disk_bytes", ())] > 0
            assert m[("hubbridge_hub_request_seconds_count", (("endpoint", "devices/all"), ("hub", "home")))] >= 1
            assert m[("hubbridge_delivery_latency_seconds_count", (("sink", "archive"),))] >= 1
            assert m[("hubbridge_hub_devices", (("hub", "home"),))] > 0
            assert ("process_resident_memory_bytes", ()) in m

            code, text = await _get(http, runtime, "/healthz")
            body = json.loads(text)
            assert code == 200 and body["status"] == "ok", body
            hub = body["hubs"]["home"]
            assert hub["streams_connected"] == ["eventsocket"] and hub["devices"] > 0
            assert hub["last_poll"] is not None and hub["last_event"] is not None
            sink = body["sinks"]["archive"]
            assert sink["delivered_total"] == delivered and sink["backlog"] == 0
            assert sink["oldest_undelivered_age"] is None and sink["in_flight"] == 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

        # A restart: the totals come back from the journal before anything new is delivered.
        runtime = Runtime(_config(tmp_path, "http://127.0.0.1:1", hec.url))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(lambda: runtime.ready.is_set() or task.done(), "the runtime is ready again")
            _, text = await _get(http, runtime, "/healthz")
            again = json.loads(text)
            assert again["sinks"]["archive"]["delivered_total"] == delivered
            assert again["sinks"]["splunk"]["filtered_total"] == bridge_events
            assert again["sinks"]["archive"]["delivered"] == 0, "this run delivered nothing yet"
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_a_dead_letter_makes_healthz_degraded(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Splunk refusing one event for good: /healthz answers 503 and names the sink and the dead letter."""
    async with HubitatSim(access_token=TOKEN) as sim, HecSim(tokens=(HEC_TOKEN,)) as hec:
        hec.fail_next(1000, 400, 6)  # "Invalid data format" for every event: each is dead-lettered alone
        runtime = Runtime(_config(tmp_path, sim.url, hec.url))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(lambda: runtime.ready.is_set() or task.done(), "the runtime is ready")
            await wait_until(lambda: runtime.sinks["splunk"].status.dead_lettered >= 1, "a dead letter")
            code, text = await _get(http, runtime, "/healthz")
            body = json.loads(text)
            assert code == 503 and body["status"] == "degraded", body
            assert any("splunk dead-lettered" in p for p in body["problems"]), body["problems"]
            assert body["sinks"]["splunk"]["dead_lettered_total"] >= 1
            _, text = await _get(http, runtime, "/metrics")
            assert _samples(text)[("hubbridge_sink_dead_lettered_total", (("sink", "splunk"),))] >= 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_totals_keep_counting_across_a_reload_that_restarts_the_sink(tmp_path: Path) -> None:
    """A sink changed by a reload is a fresh component, but its delivered total goes on from where it was."""
    from bridge.reload import apply

    async with HubitatSim(access_token=TOKEN) as sim, HecSim(tokens=(HEC_TOKEN,)) as hec:
        cfg = _config(tmp_path, sim.url, hec.url)
        runtime = Runtime(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(lambda: runtime.ready.is_set() or task.done(), "the runtime is ready")
            await wait_until(lambda: len(_lines(tmp_path)) > 5 and runtime.sinks["archive"].lag == 0, "delivered")
            sinks = [s.model_copy(update={"fsync": True}) if s.name == "archive" else s for s in cfg.sinks]
            assert await apply(runtime, cfg.model_copy(update={"sinks": sinks}))
            key = next(k for k, v in sim.state().items() if isinstance(v, int) and not isinstance(v, bool))
            sim.set_attribute(key[0], key[1], 515151)
            await wait_until(lambda: any(e["value"] == 515151 for e in _lines(tmp_path)), "delivered after reload")
            await wait_until(lambda: runtime.sinks["archive"].lag == 0, "caught up")
            _, body = runtime.health()
            assert body["sinks"]["archive"]["delivered_total"] == len(_lines(tmp_path))
            assert body["sinks"]["archive"]["delivered"] < len(_lines(tmp_path)), "a fresh status after the reload"
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
