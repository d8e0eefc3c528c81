"""The Athom Homey source: polling the Web API, the Socket.IO realtime stream, Logic variables.

Wire formats follow ../shared/reference/homey.md; this module only wires them to the runner: a poll turns the
zone map, the device map and the variable map into readings; the realtime stream (``realtime``) hands capability
and variable events to the runner's queue and keeps device labels and zones current between polls.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import aiohttp

from bridge.errors import HubAuthError, HubProtocolError
from bridge.events import Event, Reading, SourceName
from bridge.http import connector_tls
from bridge.sources.base import HubContext, Source, Stream
from bridge.sources.homey.api import Auth, HomeyApi
from bridge.sources.homey.auth import ApiKeyAuth, CloudAuth
from bridge.sources.homey.config import HomeyConfig
from bridge.sources.homey.values import (
    CapabilityEvent,
    Device,
    device_readings,
    items,
    parse_device,
    typed,
    variable_reading,
    zone_names,
)


class HomeySource(Source):
    """All paths of one Homey."""

    type_name = "homey"
    hub_type = "homey"
    Config = HomeyConfig

    def __init__(self, cfg: Any, hub: HubContext) -> None:
        super().__init__(cfg, hub)
        self.cfg: HomeyConfig = cast(HomeyConfig, cfg)
        self.poll_interval = self.cfg.poll_interval
        self.reconcile_interval = self.cfg.reconcile_interval
        self.backoff_max = self.cfg.backoff_max
        self._session: aiohttp.ClientSession | None = None
        self._auth: Auth | None = None
        self._api: HomeyApi | None = None
        self.devices: dict[str, Device] = {}
        self.zones: dict[str, str] = {}
        self._optional_off: set[str] = set()  # zones/variables the key may not read: skipped, said once
        self._realtime: Any = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def api(self) -> HomeyApi:
        assert self._api is not None, "open() creates the client"
        return self._api

    @property
    def auth(self) -> Auth:
        assert self._auth is not None, "open() creates the auth"
        return self._auth

    async def open(self) -> None:
        cfg = self.cfg
        tls = connector_tls(cfg.url, cfg.tls, self.hub.log)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=cfg.max_concurrency + 4))
        if cfg.api_key is not None:
            self._auth = ApiKeyAuth(cfg, self._session)
        else:
            self._auth = CloudAuth(cfg, self._session, self.hub.state_dir)
        self._api = HomeyApi(cfg.name, self._auth, self._session, cfg.request_timeout, cfg.max_concurrency)
        if cfg.realtime:
            from bridge.sources.homey.realtime import Realtime

            self._realtime = Realtime(self)

    async def close(self) -> None:
        if self._realtime is not None:
            await self._realtime.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def streams(self) -> dict[str, Stream]:
        return {"realtime": self._realtime.run} if self._realtime is not None else {}

    @property
    def stream_live(self) -> bool:
        return self._realtime is not None and self._realtime.live

    @property
    def reconciles(self) -> bool:
        return self.cfg.realtime

    # ------------------------------------------------------------------ polling

    async def poll(self, source: SourceName) -> list[Reading]:
        """The zones, devices and Logic variables as readings (the diff keeps only changes)."""
        observed = time.monotonic()
        zones = await self._optional("zones/zone", "homey.zone.readonly", "room names")
        if zones is not None:
            self.zones = zone_names(zones)
        devices = await self.api.get("devices/device", scope="homey.device.readonly")
        if not isinstance(devices, dict | list):
            raise HubProtocolError(
                self.cfg.name, f"GET devices/device: expected a map of devices, got {type(devices).__name__}"
            )
        readings: list[Reading] = []
        seen: dict[str, Device] = {}
        for device_id, obj in items(devices):
            device = parse_device(device_id, obj)
            seen[device_id] = device
            readings.extend(device_readings(device, obj, self.room_of(device), source, observed))
        self.devices = seen
        self.hub.show("address", self.auth.base_url)
        if self.cfg.variables:
            variables = await self._optional("logic/variable", "homey.logic.readonly", "Logic variables")
            now = time.time()
            for _vid, obj in items(variables):
                reading = variable_reading(obj, source, now, observed)
                if reading is not None:
                    readings.append(reading)
        if self._realtime is not None:
            self._realtime.polled(seen)
            # Events the stream received before now go in before these readings (see Realtime.flushed).
            await self._realtime.flushed(self.cfg.request_timeout)
        return readings

    def polled(self, events: list[Event], committed: asyncio.Future[None]) -> None:
        if self._realtime is not None:
            self._realtime.check_missed(events)

    async def _optional(self, path: str, scope: str, what: str) -> Any:
        """A map the bridge can do without (zones, variables): a refused scope is said once, then skipped."""
        try:
            result = await self.api.get(path, scope=scope)
        except HubAuthError as exc:
            if "lacks the permission" not in str(exc):
                raise
            if path not in self._optional_off:
                self.hub.log.warning(f"no {what}: the key may not read them", error=str(exc))
                self._optional_off.add(path)
            return None
        self._optional_off.discard(path)
        return result

    # ------------------------------------------------------------------ what realtime needs

    def room_of(self, device: Device) -> str | None:
        if device.zone is not None and device.zone in self.zones:
            return self.zones[device.zone]
        return device.zone_name

    def capability_reading(self, ev: CapabilityEvent, observed: float) -> Reading | None:
        """A realtime capability event as a reading typed by what the last poll said of the capability."""
        device = self.devices.get(ev.device_id)
        if device is None:
            return None
        cap = device.capabilities.get(ev.capability)  # None for a capability the last poll did not list
        return Reading(
            kind="device",
            device_id=ev.device_id,
            attribute=ev.capability,
            value=typed(ev.value, cap.type if cap else None),
            source="realtime",
            device=device.name,
            room=self.room_of(device),
            unit=cap.unit if cap else None,
            time=ev.time,
            observed=observed,
        )
