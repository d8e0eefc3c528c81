"""What the simulated Homey holds: zones, devices (V3 shape, or V2 from the fixture), Logic variables, credentials.

Changes go through :class:`HomeyState` methods, which stamp ``lastUpdated`` and tell the realtime server (the
``emit`` hook) what a real Homey would broadcast (homey.md 5.4); ``push=False`` makes a change no client hears
of (a missed event), for reconciliation tests.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Emit = Callable[[str, str, Any], Awaitable[None]]


@functools.cache
def fixture_text(name: str) -> str:
    """``bridge/sim/homey/data/<name>``: copies of ../shared/fixtures/homey/ (package data)."""
    return importlib.resources.files("bridge.sim.homey").joinpath("data", name).read_text("utf-8")


def fixture_json(name: str) -> Any:
    """``fixture_text(name)`` parsed; a fresh object every call."""
    return json.loads(fixture_text(name))


def iso_now(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _cap(cap_id: str, kind: str, value: Any, units: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": cap_id,
        "type": kind,
        "iconObj": None,
        "title": cap_id.replace("_", " ").capitalize(),
        "getable": True,
        "setable": kind in ("boolean", "enum") or cap_id in ("dim", "target_temperature"),
        "insights": True,
        "value": value,
        "lastUpdated": iso_now(),
    }
    if units is not None:
        entry["units"] = units
    entry.update(extra)
    return entry


ZONES = {
    "9919ee1e-ffbc-480b-bc4b-77fb047e9e68": "Hjem",
    "2d821372-45b9-4580-a80b-71893e772e6c": "Dressing",
    "b3f0c1d2-0000-4000-8000-000000000001": "Living room",
    "b3f0c1d2-0000-4000-8000-000000000002": "Kitchen",
}
HOME = "9919ee1e-ffbc-480b-bc4b-77fb047e9e68"


def _device(name: str, zone: str, klass: str, caps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    did = str(uuid.uuid4())
    device: dict[str, Any] = {
        "id": did,
        "driverId": "homey:app:com.example:sim",
        "ownerUri": "homey:app:com.example",
        "name": name,
        "note": None,
        "zone": zone,
        "class": klass,
        "virtualClass": None,
        "capabilities": [c["id"] for c in caps],
        "capabilitiesObj": {c["id"]: c for c in caps},
        "settings": {},
        "flags": [],
        "available": True,
        "unavailableMessage": None,
        "warningMessage": None,
        "ready": True,
        "color": "#000000",
    }
    device.update(extra)
    return device


def default_devices(n: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """The fixture's Homey Pro 2023 device, then ``n - 1`` generated devices of the common classes.

    Among them: a light with 0-1 dim/hue/saturation/temperature, sensors with °C/% units, a two-relay module
    with the sub-capabilities ``onoff.output1``/``onoff.output2``, a meter with a ``button.reset_meter``
    maintenance action, a thermostat with an enum, and (as the last) a device with ``capabilitiesObj: null``.
    """
    rng = random.Random(seed)
    zones = list(ZONES)
    out = [fixture_json("v3_device_pro2023.json")]
    makers: list[Callable[[int], dict[str, Any]]] = [
        lambda i: _device(
            f"Lamp {i}",
            zones[i % 4],
            "light",
            [
                _cap("onoff", "boolean", rng.random() < 0.5),
                _cap("dim", "number", round(rng.random(), 2), "%", min=0, max=1, decimals=2),
                _cap("light_hue", "number", round(rng.random(), 2), min=0, max=1),
                _cap("light_saturation", "number", round(rng.random(), 2), min=0, max=1),
                _cap("light_temperature", "number", 0.5, min=0, max=1),
                _cap("light_mode", "enum", "temperature"),
            ],
        ),
        lambda i: _device(
            f"Sensor {i}",
            zones[i % 4],
            "sensor",
            [
                _cap("measure_temperature", "number", round(18 + rng.random() * 5, 1), "°C", decimals=1),
                _cap("measure_humidity", "number", round(40 + rng.random() * 20, 1), "%"),
                _cap("alarm_motion", "boolean", False),
                _cap("measure_battery", "number", 90, "%", min=0, max=100),
            ],
        ),
        lambda i: _device(
            f"Relay {i}",
            zones[i % 4],
            "socket",
            [
                _cap("onoff.output1", "boolean", False),
                _cap("onoff.output2", "boolean", True),
                _cap("measure_power", "number", 0, "W"),
            ],
        ),
        lambda i: _device(
            f"Meter {i}",
            zones[i % 4],
            "sensor",
            [
                _cap("meter_power", "number", round(rng.random() * 1000, 2), "kWh", decimals=3),
                _cap("button.reset_meter", "boolean", None, maintenanceAction=True, getable=False),
            ],
        ),
        lambda i: _device(
            f"Thermostat {i}",
            zones[i % 4],
            "thermostat",
            [
                _cap("target_temperature", "number", 21, "°C", min=4, max=35),
                _cap("thermostat_mode", "enum", "heat"),
            ],
        ),
    ]
    for i in range(1, n - 1):
        out.append(makers[i % len(makers)](i))
    if n > 1:
        out.append(_device(f"New device {n}", HOME, "other", [], capabilitiesObj=None))
    return out


def default_variables() -> list[dict[str, Any]]:
    return [
        {"id": str(uuid.uuid4()), "name": "Away", "type": "boolean", "value": False},
        {"id": str(uuid.uuid4()), "name": "Guests", "type": "number", "value": 0},
        {"id": str(uuid.uuid4()), "name": "House mode", "type": "string", "value": "home"},
    ]


def session_token() -> str:
    """A bearer in the Homey's three-part shape ``<uuid>:<uuid>:<hex>`` (homey.md 6.1)."""
    return f"{uuid.uuid4()}:{uuid.uuid4()}:{secrets.token_hex(20)}"


@dataclass
class Credential:
    """An API key or a session: its scopes and, for a session, when it expires (epoch seconds)."""

    scopes: list[str]
    expires: float | None = None
    kind: str = "PAT"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def alive(self) -> bool:
        return self.expires is None or time.time() < self.expires


def covers(granted: list[str], needed: str) -> bool:
    """A broader scope covers its sub-scopes (``homey`` covers all; homey.md 3)."""
    return any(needed == g or needed.startswith(g + ".") for g in granted)


class HomeyState:
    """The hub's data and how it changes."""

    def __init__(
        self,
        devices: list[dict[str, Any]] | None = None,
        variables: list[dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        self.zones: dict[str, dict[str, Any]] = {
            zid: {
                "id": zid,
                "name": name,
                "parent": None if zid == HOME else HOME,
                "icon": "home" if zid == HOME else "default",
                "active": False,
                "activeOrigins": [],
                "activeLastUpdated": None,
            }
            for zid, name in ZONES.items()
        }
        devs = default_devices(seed=seed) if devices is None else copy.deepcopy(devices)
        self.devices: dict[str, dict[str, Any]] = {str(d["id"]): d for d in devs}
        vars_ = default_variables() if variables is None else copy.deepcopy(variables)
        self.variables: dict[str, dict[str, Any]] = {str(v["id"]): v for v in vars_}
        self.emit: Emit | None = None
        self.changes: list[tuple[str, str, Any]] = []  # (device id or "variable", capability or name, value)

    async def _send(self, uri: str, event: str, data: Any) -> None:
        if self.emit is not None:
            await self.emit(uri, event, data)

    async def set_capability(
        self, device_id: str, cap: str, value: Any, *, push: bool = True, transaction_id: str | None = None
    ) -> None:
        """Change one capability value as the device reported it; realtime hears of it unless ``push=False``."""
        entry = self.devices[device_id]["capabilitiesObj"][cap]
        now = time.time()
        entry["value"] = value
        entry["lastUpdated"] = iso_now(now)
        self.changes.append((device_id, cap, value))
        if push:
            await self._send(
                f"homey:device:{device_id}",
                "capability",
                {
                    "capabilityId": cap,
                    "value": value,
                    "transactionId": transaction_id or f"sim-{uuid.uuid4()}",
                    "transactionTime": int(now * 1000),
                },
            )

    async def set_variable(self, var_id: str, value: Any, *, push: bool = True) -> None:
        var = self.variables[var_id]
        var["value"] = value
        self.changes.append(("variable", var["name"], value))
        if push:
            await self._send("homey:manager:logic", "variable.update", copy.deepcopy(var))

    async def add_device(self, device: dict[str, Any]) -> None:
        """Pair a device: ``device.create`` goes out with ``capabilitiesObj: null`` (homey.md 8.5)."""
        self.devices[str(device["id"])] = device
        await self._send("homey:manager:devices", "device.create", {**copy.deepcopy(device), "capabilitiesObj": None})

    async def update_device(self, device_id: str, **changes: Any) -> None:
        """Rename, move to another zone, mark unavailable...: ``device.update`` with the whole device."""
        self.devices[device_id].update(changes)
        await self._send("homey:manager:devices", "device.update", copy.deepcopy(self.devices[device_id]))

    async def delete_device(self, device_id: str) -> None:
        del self.devices[device_id]
        await self._send("homey:manager:devices", "device.delete", {"id": device_id})

    def numeric_capabilities(self) -> list[tuple[str, str]]:
        out = []
        for did, dev in self.devices.items():
            caps = dev.get("capabilitiesObj") or {}
            for cid, entry in caps.items():
                if entry.get("type") == "number" and entry.get("getable", True):
                    out.append((did, cid))
        return out

    async def random_change(self) -> None:
        """One plausible change: a new numeric reading, a switch flip, or a variable."""
        if self.rng.random() < 0.1 and self.variables:
            vid = self.rng.choice(list(self.variables))
            var = self.variables[vid]
            if var["type"] == "number":
                await self.set_variable(vid, int(var["value"] or 0) + 1)
            elif var["type"] == "boolean":
                await self.set_variable(vid, not var["value"])
            else:
                await self.set_variable(vid, self.rng.choice(["home", "away", "night"]))
            return
        did, cid = self.rng.choice(self.numeric_capabilities())
        entry = self.devices[did]["capabilitiesObj"][cid]
        if entry.get("max") == 1:
            value: Any = round(self.rng.random(), 2)
        else:
            value = round(float(entry.get("value") or 0) + self.rng.uniform(-1, 1), 2)
        await self.set_capability(did, cid, value)
