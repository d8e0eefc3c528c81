"""Edge -> JetStream -> central -> Splunk HEC, with two central bridges sharing one durable consumer (docs/scale.md).

The central bridges are real ``hubbridge run`` processes; the stream is a real nats-server; Splunk is the HEC
simulator. One central bridge is SIGKILLed while events flow; the user-visible promise is that every event the edge
published reaches Splunk at least once, any repeat carrying the same id, and that what the killed bridge had taken
(acknowledged to JetStream, still waiting in its journal) is delivered when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import load_config
from bridge.journal import Journal
from bridge.pipeline import Pipeline
from bridge.sim.hec import HecSim
from bridge.sinks import build_sink
from tests.brokers import free_port, nats_server
from tests.helpers import BIG, caught_up, delivering, ingest, running_journal, wait_until
from tests.sinks.test_nats import nats_config


def central_config(tmp: Path, name: str, nats_url: str, hec_url: str, token: str) -> tuple[Path, int]:
    port = free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(
        f"""\
state_dir: {tmp}/{name}
listen: 127.0.0.1:{port}
log:
  level: info
  format: json
hubs:
  - name: edge-events
    type: nats
    url: {nats_url}
    stream: HUBBRIDGE
    durable: central
    fetch: 50
    fetch_wait: 100ms
    ack_wait: 2s
sinks:
  - name: splunk
    type: splunk_hec
    url: {hec_url}
    token: {token}
    host: {name}
    gzip: false
    batch:
      max_events: 100
      max_wait: 20ms
    retry:
      initial: 50ms
      max: 300ms
""",
        encoding="utf-8",
    )
    return cfg, port


class Bridge:
    """A ``hubbridge run`` child process and its /healthz."""

    def __init__(self, cfg: Path, port: int, log: Path) -> None:
        self.cfg, self.port, self.log = cfg, port, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.log, "ab") as log:  # noqa: ASYNC230 - a log file for the child, opened once
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(self.cfg), stdout=log, stderr=log
            )
        await wait_until_async(self.ready, "the bridge answered /healthz", 30)

    async def health(self) -> dict[str, Any] | None:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{self.port}/healthz") as resp,
            ):
                body: dict[str, Any] = await resp.json()
                return body
        except (aiohttp.ClientError, ValueError):
            return None

    async def ready(self) -> bool:
        assert self.proc is not None and self.proc.returncode is None, self.log.read_text()[-2000:]
        return await self.health() is not None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def wait_until_async(cond: Any, what: str, timeout: float = 15.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await cond():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


@contextlib.asynccontextmanager
async def bridges(*items: Bridge) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.gather(*(b.stop() for b in items))


async def journal_head(bridge: Bridge) -> int:
    h = await bridge.health()
    return int(h["journal"]["head"]) if h else -1


async def test_two_central_bridges_share_a_consumer_and_a_killed_one_loses_nothing(tmp_path: Path) -> None:
    """One of two central bridges is SIGKILLed mid-stream: Splunk still gets every edge event, repeats share an id,
    and the killed bridge's own backlog is delivered when it restarts."""
    async with (
        nats_server(tmp_path / "nats") as server,
        HecSim(tokens=("token-a", "token-b")) as hec,
        running_journal(tmp_path / "edge" / "journal.sqlite3") as edge,
    ):
        a = Bridge(*central_config(tmp_path, "central-a", server.url, hec.url, "token-a"), tmp_path / "a.log")
        b = Bridge(*central_config(tmp_path, "central-b", server.url, hec.url, "token-b"), tmp_path / "b.log")
        # Splunk refuses central-a's token for now: what central-a takes from the stream waits in its journal.
        hec.disable_token("token-a")

        def delivered_by(host: str) -> set[str]:
            return {e["event"]["id"] for e in hec.events() if e.get("host") == host}

        pipeline = await Pipeline.open(edge)
        await edge.register_sinks(["stream"])
        sent: list[str] = []
        sink, _ = build_sink(nats_config(server.url))
        async with bridges(a, b), sink, delivering(sink, edge, max_events=50):
            sent += [ev.id for ev in await ingest(pipeline, 50)]
            await caught_up(edge, "stream")  # the stream exists before the consumers bind to it
            await asyncio.gather(a.start(), b.start())
            for _ in range(6):
                sent += [ev.id for ev in await ingest(pipeline, 50)]
                await caught_up(edge, "stream")
            await wait_until_async(lambda: _more_than(a, 60), "central-a recorded events from the stream")
            await a.kill()
            for _ in range(6):
                sent += [ev.id for ev in await ingest(pipeline, 50)]
            await caught_up(edge, "stream")
            # central-a is down: its journal holds what it acknowledged to JetStream and could not deliver yet.
            ja = Journal(tmp_path / "central-a" / "journal.sqlite3", inspect=True)
            await ja.open()
            try:
                backlog = {r.id for r in await ja.read(0, 100_000, BIG)} & set(sent)
            finally:
                await ja.close()
            assert backlog, "central-a had no backlog when it was killed"
            hec.enable_token("token-a")
            await a.start()
            await wait_until(lambda: set(hec.ids()) >= set(sent), "Splunk has every edge event", timeout=30)
            # Events central-a had recorded but not yet acknowledged when it was killed were redelivered by JetStream
            # and may have reached Splunk through central-b already: central-a still sends its whole backlog.
            await wait_until(lambda: backlog <= delivered_by("central-a"), "central-a delivered its backlog", 30)
            delivered_by_a, delivered_by_b = delivered_by("central-a"), delivered_by("central-b")
    assert delivered_by_b - delivered_by_a, "central-b took no share of the stream"
    by_id: dict[str, str] = {}
    for envelope in hec.events():
        event = envelope["event"]
        if event.get("kind") == "bridge":
            continue  # each central bridge's own hub_status for its consumer
        assert by_id.setdefault(event["id"], json.dumps(event, sort_keys=True)) == json.dumps(event, sort_keys=True)
    assert set(by_id) == set(sent)


async def _more_than(bridge: Bridge, n: int) -> bool:
    return await journal_head(bridge) > n


def test_the_configs_in_docs_scale_md_load(tmp_path: Path) -> None:
    """Every YAML example in docs/scale.md passes `check` (with its credential files present)."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "scale.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    for n, block in enumerate(blocks):
        for i, path in enumerate(sorted(set(re.findall(r"(/(?:run|etc)/[\w./-]+)", block)))):
            secret = tmp_path / f"secret-{n}-{i}"
            secret.write_text("from-a-file\n", encoding="utf-8")
            block = block.replace(path, str(secret))
        if "state_dir:" not in block:
            block = f"state_dir: {tmp_path}/state\n" + block
        if "sinks:" not in block:
            block += f"sinks:\n  - {{name: archive, type: file, path: {tmp_path}/events.jsonl}}\n"
        config = tmp_path / f"example-{n}.yaml"
        config.write_text(block, encoding="utf-8")
        load_config(config, env={})  # raises ConfigError naming the line if an example went stale
