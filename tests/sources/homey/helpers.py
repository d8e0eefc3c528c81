"""The real bridge (Runtime, loaded from YAML) against the Homey simulator, writing to a file sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.sources.runner import HubStatus
from tests.helpers import BridgeUnderTest, wait_until

HUB = "cabin"
WAIT = 15.0


class Bridge(BridgeUnderTest):
    """One bridge (Runtime) configured from YAML in ``directory`` with one Homey hub and a file sink."""

    hub_name = HUB

    def __init__(self, directory: Path, **hub: Any) -> None:
        hub_cfg: dict[str, Any] = {
            "name": HUB,
            "type": "homey",
            "realtime": False,
            "poll_interval": "60s",
            "request_timeout": "2s",
            "backoff_max": "1s",
        }
        hub_cfg.update(hub)
        super().__init__(directory, hub_cfg)

    async def __aenter__(self) -> Bridge:
        await self.start(WAIT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(WAIT + 10)

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
