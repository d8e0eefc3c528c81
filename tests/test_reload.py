"""SIGHUP reload of the real ``hubbridge run`` subprocess, with events flowing from the Hubitat simulator.

What a user notices: editing the config and sending SIGHUP (``systemctl reload hubbridge``) adds, removes and
changes sinks and hubs without a restart, without losing or repeating an event, and without touching the parts
that did not change; a broken edit is refused with one line while the old config keeps running.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import yaml

from bridge.config import load_config
from bridge.reload import plan
from bridge.sim.hubitat import HubitatSim
from bridge.sources.hubitat import MOMENTARY
from tests.test_cli import bridges, write_config

__all__ = ["bridges"]

TOKEN = "reload-test-token"
REFUSED = "reload refused: the new config is invalid; the old one keeps running"


def _events(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]  # not a line being written


def _sink(tmp: Path, name: str) -> dict[str, Any]:
    return {"name": name, "type": "file", "path": str(tmp / f"{name}.jsonl"), "fsync": False, "batch": {"max_wait": 0}}


def _hub(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "home",
        "type": "hubitat",
        "url": url,
        "app_id": 12,
        "access_token": TOKEN,
        "eventsocket": True,
        "poll_interval": "60s",
        "detail_spacing": "0s",
        "backoff_max": "1s",
        **extra,
    }


def test_plan_names_what_changed(tmp_path: Path) -> None:
    """The reload plan restarts only what differs, and refuses a change of a key that needs a restart."""
    a = write_config(tmp_path, "a.yaml", sinks=[_sink(tmp_path, "x"), _sink(tmp_path, "y")])
    b = write_config(
        tmp_path, "b.yaml", sinks=[_sink(tmp_path, "y"), {**_sink(tmp_path, "z")}], hubs=[_hub("http://127.0.0.1:1")]
    )
    p = plan(load_config(a), load_config(b))
    assert (p.sinks_removed, p.sinks_added, p.sinks_changed, p.hubs_added) == (["x"], ["z"], [], ["home"])
    assert not p.refused
    c = write_config(tmp_path, "c.yaml", listen="127.0.0.1:9", sinks=[_sink(tmp_path, "x"), _sink(tmp_path, "y")])
    assert plan(load_config(a), load_config(c)).refused == ["listen"]
    d = write_config(tmp_path, "d.yaml", sinks=[{**_sink(tmp_path, "x"), "fsync": True}, _sink(tmp_path, "y")])
    assert plan(load_config(a), load_config(d)).sinks_changed == ["x"]


async def test_sighup_adds_removes_and_changes_without_loss_or_duplicates(tmp_path: Path, bridges: Any) -> None:
    """Mid-stream: a broken config is refused; then sink a goes, sink c comes, hub home changes; b sees it all once."""
    async with HubitatSim(access_token=TOKEN, seed=3) as sim:
        keys = [
            k
            for k, v in sim.state().items()
            if isinstance(v, int) and not isinstance(v, bool) and k[1] not in MOMENTARY
        ][:4]
        counter = 5_000_000
        pushing = True

        async def push() -> None:
            nonlocal counter
            while pushing:
                for key in keys:
                    counter += 1
                    sim.set_attribute(key[0], key[1], counter)
                await asyncio.sleep(0.02)

        cfg = write_config(tmp_path, hubs=[_hub(sim.url)], sinks=[_sink(tmp_path, "a"), _sink(tmp_path, "b")])
        b = await bridges(cfg)
        await b.running()
        pusher = asyncio.create_task(push())
        try:
            await b.wait_for(lambda: len(_events(tmp_path / "b.jsonl")) > 30, "events flow")

            # 1. A broken edit: refused with one line, the old config keeps running.
            good = cfg.read_text(encoding="utf-8")
            cfg.write_text(good.replace("sinks:", "sinks:\n- {name: broken, type: nope}"), encoding="utf-8")
            b.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            await b.wait_for(lambda: bool(b.entries(REFUSED)), "the broken config is refused")
            assert "unsupported type 'nope'" in b.entries(REFUSED)[0]["error"], b.entries(REFUSED)
            seen = len(_events(tmp_path / "a.jsonl"))
            await b.wait_for(lambda: len(_events(tmp_path / "a.jsonl")) > seen + 10, "a still receives events")

            # 2. Sink a removed, sink c added, hub home changed (its poll interval).
            new = yaml.safe_load(good)
            new["sinks"] = [_sink(tmp_path, "b"), _sink(tmp_path, "c")]
            new["hubs"] = [_hub(sim.url, poll_interval="45s")]
            cfg.write_text(yaml.safe_dump(new), encoding="utf-8")
            b.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            await b.wait_for(lambda: bool(b.entries("config reloaded")), "the reload is applied")
            await b.wait_for(lambda: len(_events(tmp_path / "c.jsonl")) > 30, "c receives events")
        finally:
            pushing = False
            await pusher
        # Converge on the hub's final values, then stop.
        final = {k: sim.state()[k] for k in keys}

        def converged() -> bool:
            last = {(e["device_id"], e["attribute"]): e["value"] for e in _events(tmp_path / "b.jsonl")}
            return all(str(last.get(k)) == str(v) for k, v in final.items())

        await b.wait_for(converged, "b has the hub's final values")
        assert await b.stop() == 0, b.stderr

    reloaded = b.entries("config reloaded")[0]
    assert reloaded["sinks_added"] == ["c"] and reloaded["sinks_removed"] == ["a"], reloaded
    assert reloaded["hubs_changed"] == ["home"] and "sinks_changed" not in reloaded, reloaded
    # Only what changed restarted: b's sink came up once, a's and c's once each.
    ready = [e["sink"] for e in b.entries("sink ready")]
    assert sorted(ready) == ["a", "b", "c"], ready

    ids = {n: [e["id"] for e in _events(tmp_path / f"{n}.jsonl")] for n in "abc"}
    assert len(ids["b"]) == len(set(ids["b"])), "b got an event twice"
    # a stopped where it was removed: what it got is the start of b's stream; c started later: the end of it.
    assert ids["b"][: len(ids["a"])] == ids["a"]
    assert ids["b"][-len(ids["c"]) :] == ids["c"]
    # No value repeated across the hub's restart (the diff knows what was seen), and values only move forward.
    pushed = [
        (e["device_id"], e["attribute"], str(e["value"]))
        for e in _events(tmp_path / "b.jsonl")
        if (e["device_id"], e["attribute"]) in keys
    ]
    assert len(pushed) > 20 and len(pushed) == len(set(pushed)), "a value was emitted twice"
    assert "Traceback" not in b.stderr


async def test_sigterm_with_a_batch_stuck_exits_0_within_shutdown_timeout_and_keeps_it(
    tmp_path: Path, bridges: Any
) -> None:
    """SIGTERM while Splunk sits on a batch: exit 0 after shutdown_timeout; the next start delivers it (same ids)."""
    from bridge.sim.hec import HecSim

    async with HubitatSim(access_token=TOKEN, seed=5) as sim, HecSim(tokens=("hec-token",)) as hec:
        sinks = [
            _sink(tmp_path, "file"),
            {"name": "splunk", "type": "splunk_hec", "url": hec.url, "token": "hec-token", "gzip": False},
        ]
        cfg = write_config(tmp_path, hubs=[_hub(sim.url)], sinks=sinks, shutdown_timeout="1s")
        b = await bridges(cfg)
        await b.running()
        await b.wait_for(lambda: len(_events(tmp_path / "file.jsonl")) > 10, "the start-up poll is journalled")
        await b.wait_for(lambda: len(hec.ids()) >= len(_events(tmp_path / "file.jsonl")), "Splunk has caught up")
        hec.response_delay = 60.0  # far beyond the test's waits: the bridge must not wait for the answer
        asked = len(hec.requests)
        key = next(k for k, v in sim.state().items() if isinstance(v, int) and not isinstance(v, bool))
        sim.set_attribute(key[0], key[1], 987654)
        await b.wait_for(lambda: len(hec.requests) > asked, "a batch is on its way to Splunk")
        assert await b.stop() == 0, b.stderr
        left = b.entries("drain deadline reached; the rest is delivered at next start")
        assert left and left[0]["lag"]["splunk"] > 0, b.stderr

        hec.response_delay = 0.0
        again = await bridges(cfg)
        await again.running()
        wanted = {e["id"] for e in _events(tmp_path / "file.jsonl")}
        await again.wait_for(lambda: wanted <= set(hec.ids()), "Splunk has every journalled event")
        assert await again.stop() == 0, again.stderr


async def test_a_route_mounted_after_start_answers_and_others_stay_404() -> None:
    """A hub added by a reload gets its webhook route on the running listener; other paths keep the same 404."""
    import aiohttp
    from aiohttp import web

    from bridge.server import NOT_FOUND, Server

    server = Server("127.0.0.1", 0, lambda: (True, {}))
    await server.start()
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.match_info["secret"])
        return web.Response(text="ok")

    try:
        server.add_route("POST", "/hubitat/new/{secret}", handler)
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.port}"
            async with http.post(f"{base}/hubitat/new/s3cr3t", json={}) as resp:
                assert resp.status == 200 and await resp.text() == "ok"
            async with http.get(f"{base}/hubitat/new/s3cr3t") as resp:
                assert resp.status == 404 and await resp.text() == NOT_FOUND
            async with http.post(f"{base}/hubitat/other/s3cr3t", json={}) as resp:
                assert resp.status == 404 and await resp.text() == NOT_FOUND
    finally:
        await server.stop()
    assert seen == ["s3cr3t"]
