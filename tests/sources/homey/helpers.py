"""The real bridge (Runtime, loaded from YAML) against the Homey simulator, writing to a file sink."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from bridge.config import load_config
from bridge.events import Event
from bridge.runtime import Runtime
from bridge.sources.runner import HubStatus
from tests.helpers import wait_until

HUB = "cabin"
WAIT = 15.0


def matches(ev: dict[str, Any], **want: Any) -> bool:
    return all(ev.get(k) == v for k, v in want.items())


class Bridge:
    """One bridge (Runtime) configured from YAML in ``directory`` with one Homey hub and a file sink."""

    def __init__(self, directory: Path, **hub: Any) -> None:
        self.dir = directory
        self.sink_path = directory / "events.jsonl"
        hub_cfg: dict[str, Any] = {
            "name": HUB,
            "type": "homey",
            "realtime": False,
            "poll_interval": "60s",
            "request_timeout": "2s",
            "backoff_max": "1s",
        }
        hub_cfg.update(hub)
        config = {
            "state_dir": str(directory / "state"),
            "listen": "127.0.0.1:0",
            "hubs": [hub_cfg],
            "sinks": [
                {
                    "name": "archive",
                    "type": "file",
                    "path": str(self.sink_path),
                    "fsync": False,
                    "batch": {"max_wait": "20ms"},
                }
            ],
        }
        self.config_path = directory / "hubbridge.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.cfg = load_config(self.config_path, env={})
        self.events: list[dict[str, Any]] = []
        self.runtime = Runtime(self.cfg, on_events=self._on_events)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _on_events(self, events: list[Event]) -> None:
        self.events.extend(ev.to_dict() for ev in events)

    async def __aenter__(self) -> Bridge:
        self._task = asyncio.create_task(self.runtime.run(self._stop), name="bridge-under-test")
        ready = asyncio.create_task(self.runtime.ready.wait())
        async with asyncio.timeout(WAIT):
            await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            ready.cancel()
            self._task.result()
            raise AssertionError("the runtime returned before it was ready")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is None:
            return
        self._stop.set()
        async with asyncio.timeout(WAIT + 10):
            await self._task
        self._task = None

    @property
    def status(self) -> HubStatus:
        return self.runtime.hubs[HUB].status

    @property
    def source(self) -> Any:
        runner = self.runtime.hubs[HUB].runner
        return runner.source if runner is not None else None

    @property
    def live(self) -> bool:
        return self.source is not None and self.source.stream_live

    def reconcile(self) -> None:
        self.runtime.runners[HUB].reconcile("test")

    def find(self, **want: Any) -> list[dict[str, Any]]:
        return [ev for ev in self.events if matches(ev, **want)]

    async def wait_event(self, what: str = "", timeout: float = WAIT, **want: Any) -> dict[str, Any]:
        await wait_until(lambda: bool(self.find(**want)), what=what or f"an event {want}", timeout=timeout)
        return self.find(**want)[0]

    async def polled(self, n: int = 1) -> None:
        await wait_until(lambda: self.status.polls >= n, what=f"{n} poll(s)")

    async def settled(self) -> None:
        """Realtime live and followed by its reconciliation: no poll running or asked for."""

        def idle() -> bool:
            runner = self.runtime.hubs[HUB].runner
            return (
                runner is not None
                and self.live
                and self.status.polls >= 1
                and not runner.polling
                and not runner._reconcile.is_set()
            )

        await wait_until(idle, what="realtime live and reconciled")

    def written(self) -> list[dict[str, Any]]:
        if not self.sink_path.exists():
            return []
        lines = self.sink_path.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in lines if line]
