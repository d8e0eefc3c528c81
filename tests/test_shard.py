"""Sharding hubs across instances (bridge.shard): which instance runs which hub, and what `check` says about it."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.runtime import Runtime
from bridge.shard import Shard, ShardOptions, owner, resolve
from bridge.sim.hubitat import HubitatSim
from tests.brokers import nats_server
from tests.helpers import wait_until
from tests.test_cli import cli, write_config

NAMES = [f"house-{n}" for n in range(1000)]


def hub(name: str, type_: str = "hubitat") -> dict[str, Any]:
    if type_ == "nats":
        return {"name": name, "type": "nats", "url": "nats://127.0.0.1:1", "stream": "HUBBRIDGE", "durable": "c"}
    # Nothing listens on port 1: the hub is simply offline, which is all these tests need of it.
    return {"name": name, "type": "hubitat", "url": "http://127.0.0.1:1", "app_id": 1, "access_token": "t0k"}


def test_the_assignment_depends_only_on_the_names_and_count() -> None:
    """Every instance computes the same assignment on its own, and it does not change between versions."""
    # Pinned: a different hash would move hubs between instances at the upgrade.
    assert [owner(name, 8) for name in ("home", "cabin", "office", "house-0", "house-5")] == [2, 3, 2, 4, 6]


def test_hubs_spread_evenly_and_a_new_shard_only_takes_hubs() -> None:
    """Each of 8 shards runs about an eighth of 1000 hubs; going to 9 moves only the hubs the new shard takes."""
    counts = Counter(owner(name, 8) for name in NAMES)
    assert set(counts) == set(range(8)) and all(90 <= c <= 160 for c in counts.values()), counts
    moved = [name for name in NAMES if owner(name, 8) != owner(name, 9)]
    assert all(owner(name, 9) == 8 for name in moved)
    assert 70 <= len(moved) <= 160  # about 1000/9


def test_the_shard_comes_from_the_environment_the_config_or_the_pod_ordinal() -> None:
    """HUBBRIDGE_SHARD wins over the config; `shard: {count}` alone takes the StatefulSet ordinal of the host name."""
    opts = ShardOptions(index=1, count=4)
    assert resolve(opts, {"HUBBRIDGE_SHARD": "2/8"}) == Shard(2, 8, "HUBBRIDGE_SHARD")
    assert resolve(opts, {}) == Shard(1, 4, "config")
    assert resolve(ShardOptions(count=4), {}, host="hubbridge-3") == Shard(3, 4, "host name hubbridge-3")
    assert resolve(None, {}) is None
    with pytest.raises(ConfigError, match="does not end in a StatefulSet ordinal"):
        resolve(ShardOptions(count=4), {}, host="nas")
    with pytest.raises(ConfigError, match=r"not below shard\.count 4"):
        resolve(ShardOptions(count=4), {}, host="hubbridge-4")
    for bad in ("8/8", "2-8", "x/8", "1/0"):
        with pytest.raises(ConfigError, match="expected index/count"):
            resolve(None, {"HUBBRIDGE_SHARD": bad})
    with pytest.raises(ValueError, match="not below count"):
        ShardOptions(index=4, count=4)


def test_check_prints_the_assignment(tmp_path: Path) -> None:
    """`hubbridge check` with HUBBRIDGE_SHARD says which hubs this instance runs and where the others run."""
    names = ["home", "cabin", "office", "lake"]
    config = write_config(tmp_path, hubs=[*map(hub, names), hub("edge-events", "nats")])
    result = cli("check", "-c", str(config), cwd=tmp_path, env={**os.environ, "HUBBRIDGE_SHARD": "1/3"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    mine = [n for n in names if owner(n, 3) == 1]
    assert lines[1] == f"shard 1/3 (from HUBBRIDGE_SHARD): this instance runs {len(mine) + 1} of 5 hub(s)"
    for name in names:
        n = owner(name, 3)
        assert f"  {name}: shard {n}" + ("  <- this instance" if n == 1 else "") in lines
    assert "  edge-events: every shard (a nats consumer shares the work itself)" in lines
    bad = cli("check", "-c", str(config), cwd=tmp_path, env={**os.environ, "HUBBRIDGE_SHARD": "3/3"})
    assert bad.returncode == 2 and "HUBBRIDGE_SHARD" in bad.stderr and "Traceback" not in bad.stderr


async def test_a_shard_change_moves_hubs_between_running_instances(tmp_path: Path) -> None:
    """Two instances run disjoint hubs that together are all of them; after a change to three, each runs its new set."""
    names = [f"house-{n}" for n in range(12)]

    async def running(shard: str, where: Path) -> set[str]:
        index, count = map(int, shard.split("/"))
        cfg = load_config(write_config(where, hubs=[hub(n) for n in names], shard={"index": index, "count": count}))
        runtime = Runtime(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await wait_until(runtime.ready.is_set, "the instance is running")
            return set(runtime.hubs)
        finally:
            stop.set()
            await task

    for d in [*(f"two-{i}" for i in range(2)), *(f"three-{i}" for i in range(3))]:
        (tmp_path / d).mkdir()
    before = [await running(f"{i}/2", tmp_path / f"two-{i}") for i in range(2)]
    after = [await running(f"{i}/3", tmp_path / f"three-{i}") for i in range(3)]
    for sets in (before, after):
        assert set().union(*sets) == set(names) and sum(map(len, sets)) == len(names)  # each hub runs exactly once
    moved = {n for n in names if owner(n, 2) != owner(n, 3)}
    assert moved and all(owner(n, 3) == 2 for n in moved)  # only to the new instance
    assert after[2] == moved


async def test_a_hub_taken_over_by_another_instance_keeps_its_last_values(tmp_path: Path) -> None:
    """The instance that takes a hub over reads its last values from the stream: its first poll reports only what
    changed meanwhile, with the right `previous`, not every value of the hub again."""
    async with nats_server(tmp_path / "nats") as server, HubitatSim(access_token="t0k", seed=3) as sim:
        home = {**hub("home"), "url": sim.url, "app_id": 12, "eventsocket": False, "poll_interval": "10s"}
        nats_sink = {"name": "stream", "type": "nats", "url": server.url, "stream": "HUBBRIDGE"}

        async def run_until_polled(name: str, shard: dict[str, int]) -> list[dict[str, Any]]:
            """Instance ``name`` runs until it polled the hub and published what it saw; its events (file)."""
            where = tmp_path / name
            file_sink = {"name": "archive", "type": "file", "path": str(where / "events.jsonl"), "fsync": False}
            cfg = load_config(write_config(where, hubs=[home], sinks=[file_sink, nats_sink], shard=shard))
            runtime = Runtime(cfg)
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            try:
                await wait_until(lambda: "home" in runtime.hubs and runtime.hubs["home"].status.polls >= 1, "a poll")
                await wait_until(lambda: all(s.lag == 0 for s in runtime.sinks.values()), "all delivered")
            finally:
                stop.set()
                await task
            return [json.loads(line) for line in (where / "events.jsonl").read_text().splitlines()]

        for d in ("a", "b"):
            (tmp_path / d).mkdir()
        first = [e for e in await run_until_polled("a", {"index": 0, "count": 1}) if e["kind"] == "device"]
        assert len(first) > 5  # the first owner reports every value once
        changed = first[0]
        new_value = (changed["value"] + 1) if isinstance(changed["value"], int | float) else f"{changed['value']}-x"
        sim.set_attribute(changed["device_id"], changed["attribute"], new_value, push=False)
        # The hub moves to another instance (another machine, its own journal): it has never run it.
        second = [e for e in await run_until_polled("b", {"index": 0, "count": 1}) if e["kind"] == "device"]
    assert [(e["device_id"], e["attribute"], e["previous"], e["value"]) for e in second] == [
        (changed["device_id"], changed["attribute"], changed["value"], new_value)
    ]
