"""Hub health as data (hubitat.md 4): the admin UI's memory, load, temperature, database and alerts as readings.

The endpoints are undocumented and answer ``text/html`` whatever they carry: plain integers (``914716``), plain
floats (``38.2``), the ``freeOSMemoryLast`` CSV (a header and the latest row: 6 columns on a C-8 Pro, 5 on a C-4
without "Direct Java") and ``/hub2/hubData`` JSON (``alerts``, and on some firmware a deeper ``baseModel`` with
the radios' and the cloud's status). The parsers are pure; :class:`HubHealth` fetches one round with its own
concurrency budget (one request at a time, never the device poll's), skips an endpoint the hub does not have
(404, older firmware) after one info line, and reports every answer to the 5xx-storm watch.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bridge.errors import HubProtocolError, HubUnavailable
from bridge.events import Reading, clean_text, shorten
from bridge.http import transport_problem
from bridge.jsontext import NotJson, loads
from bridge.sources.base import HubContext
from bridge.sources.hubitat.config import HubitatConfig
from bridge.sources.hubitat.storm import StormWatch

# (attribute, value, unit)
HealthValue = tuple[str, Any, str | None]

MEMORY_CSV = "/hub/advanced/freeOSMemoryLast"
FREE_MEMORY = "/hub/advanced/freeOSMemory"
TEMPERATURE = "/hub/advanced/internalTempCelsius"
DATABASE = "/hub/advanced/databaseSize"
HUB_DATA = "/hub2/hubData"
# Health answers are a few hundred bytes; hubData with baseModel a few KB.
MAX_BODY = 1024 * 1024

# freeOSMemoryLast columns by header name (not position: the C-4 has one column fewer) -> attribute, type, unit.
_CSV_COLUMNS: dict[str, tuple[str, type, str | None]] = {
    "Free OS": ("free_os_memory", int, "KB"),
    "5m CPU avg": ("cpu_load_5m", float, None),
    "Total Java": ("java_heap_total", int, "KB"),
    "Free Java": ("java_heap_free", int, "KB"),
    "Direct Java": ("java_direct", int, "KB"),
}
# hubData.baseModel keys forwarded as strings, as the hub gives them (thebearmay reads zwaveStatus "false" as
# "enabled": an inverted flag, so the bridge does not interpret it).
_BASE_MODEL_STATUS = {"zigbeeStatus": "zigbee_status", "zwaveStatus": "zwave_status"}


class HealthFormatError(ValueError):
    """A health answer is not in the format of hubitat.md 4; ``str()`` says how in a few words."""


def _shown(text: str) -> str:
    return repr(shorten(" ".join(text.split()), 60))


def parse_int(text: str) -> int:
    """A plain integer answer (``914716``, ``6``)."""
    value = text.strip()
    if not value.lstrip("-").isdigit() or len(value) > 18:
        raise HealthFormatError(f"expected a plain integer, got {_shown(text)}")
    return int(value)


def parse_float(text: str) -> float:
    """A plain decimal answer (``38.2``, ``63.0``); never NaN or Infinity."""
    try:
        value = float(text.strip())
    except ValueError:
        raise HealthFormatError(f"expected a plain number, got {_shown(text)}") from None
    if not math.isfinite(value):
        raise HealthFormatError(f"expected a finite number, got {_shown(text)}")
    return value


def _number(cell: str, kind: type) -> int | float:
    return parse_int(cell) if kind is int else parse_float(cell)


def parse_memory_csv(text: str) -> list[HealthValue]:
    """freeOSMemoryLast (or the History form): the latest row's columns by their header names."""
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    if len(lines) < 2 or "," not in lines[0]:
        raise HealthFormatError(f"expected a CSV header and a row, got {_shown(text)}")
    header = [name.strip() for name in lines[0].split(",")]
    row = [cell.strip() for cell in lines[-1].split(",")]  # the History form lists oldest first
    if len(row) != len(header):
        raise HealthFormatError(f"the last row has {len(row)} cells for {len(header)} columns: {_shown(lines[-1])}")
    out: list[HealthValue] = []
    for name, cell in zip(header, row, strict=True):
        column = _CSV_COLUMNS.get(name)
        if column is not None:
            attribute, kind, unit = column
            out.append((attribute, _number(cell, kind), unit))
    if not out:
        raise HealthFormatError(f"no known column in {_shown(lines[0])}")
    return out


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


def _status_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return clean_text(str(value))


def parse_hub_data(data: Any) -> list[HealthValue]:
    """/hub2/hubData: ``alert.<name>`` per alert as the hub types it, and the radios'/cloud's status as strings."""
    if not isinstance(data, dict):
        raise HealthFormatError(f"expected a JSON object, got {type(data).__name__}")
    out: list[HealthValue] = []
    alerts = data.get("alerts")
    if isinstance(alerts, dict):
        for name, value in alerts.items():
            if _scalar(value):
                out.append(
                    (f"alert.{clean_text(str(name))}", clean_text(value) if isinstance(value, str) else value, None)
                )
    base = data.get("baseModel")
    if isinstance(base, dict):
        for key, attribute in _BASE_MODEL_STATUS.items():
            if base.get(key) is not None and _scalar(base[key]):
                out.append((attribute, _status_text(base[key]), None))
        cloud = base.get("cloudDisconnected")
        if cloud is not None and _scalar(cloud):
            out.append(("cloud_status", "disconnected" if _status_text(cloud) == "true" else "connected", None))
    return out


def _plain(attribute: str, unit: str | None, parse: Callable[[str], Any]) -> Callable[[str], list[HealthValue]]:
    return lambda text: [(attribute, parse(text), unit)]


def _hub_data(text: str) -> list[HealthValue]:
    try:
        return parse_hub_data(loads(text))
    except NotJson as exc:
        kind = "an HTML page" if text.lstrip()[:1] == "<" else f"malformed JSON ({exc})"
        raise HealthFormatError(f"expected JSON, got {kind}: {_shown(text)}") from None


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, or its first MAX_BODY + 1 bytes (then the caller refuses it): a hub page is never this big."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            break
    return b"".join(chunks)


class HubHealth:
    """One round of health reads against the hub's admin endpoints, one request at a time."""

    def __init__(self, cfg: HubitatConfig, session: aiohttp.ClientSession, hub: HubContext, storm: StormWatch) -> None:
        self.cfg = cfg
        self.session = session
        self.hub = hub
        self.storm = storm
        # Its own budget: a health round never takes a slot of the device poll (MakerApi.limit).
        self.limit = asyncio.Semaphore(1)
        self.timeout = aiohttp.ClientTimeout(total=cfg.request_timeout)
        self.missing: set[str] = set()  # endpoints the hub does not have (404): not asked again
        self.refused: set[str] = set()  # endpoints behind the hub's login (a redirect): not asked again either

    async def read(self) -> list[Reading]:
        """The hub's health now as ``kind: hub`` readings. Raises HubUnavailable when the hub struggles."""
        started, now = time.monotonic(), time.time()
        values: list[HealthValue] = []
        memory = await self._fetch(MEMORY_CSV, parse_memory_csv)
        if memory is None and MEMORY_CSV in self.missing:
            memory = await self._fetch(FREE_MEMORY, _plain("free_os_memory", "KB", parse_int))
        values += memory or []
        values += await self._fetch(TEMPERATURE, _plain("internal_temperature", "C", parse_float)) or []
        values += await self._fetch(DATABASE, _plain("database_size", "MB", parse_int)) or []
        values += await self._fetch(HUB_DATA, _hub_data) or []
        return [
            Reading("hub", None, attribute, value, "poll", unit=unit, time=now, observed=started)
            for attribute, value, unit in values
        ]

    async def _fetch(self, path: str, parse: Callable[[str], list[HealthValue]]) -> list[HealthValue] | None:
        text = await self._get(path)
        if text is None:
            return None
        try:
            return parse(text)
        except HealthFormatError as exc:
            self.hub.rate_log.warning(
                ("health-format", path), "hub health answer not understood", path=path, error=str(exc)
            )
            return None

    async def _get(self, path: str) -> str | None:
        """The body of ``GET <hub><path>``; None when the hub does not have the endpoint (or wants a login)."""
        if path in self.missing or path in self.refused:
            return None
        hub, where = self.cfg.name, f"GET {path}"
        async with self.limit:
            try:
                async with self.session.get(
                    f"{self.cfg.url}{path}", timeout=self.timeout, allow_redirects=False
                ) as resp:
                    status, location = resp.status, resp.headers.get("Location", "")
                    raw = await _read_bounded(resp)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise HubUnavailable(
                    hub, f"{where}: {transport_problem(exc, self.cfg.url, self.cfg.request_timeout)}"
                ) from None
        text = raw.decode("utf-8", errors="replace")
        starting = "starting up" in text.lower()
        await self.storm.answered(status, starting=starting)
        if starting:
            raise HubUnavailable(hub, f"{where}: the hub is starting up (HTTP {status})", status)
        if status >= 500:
            raise HubUnavailable(hub, f"{where}: HTTP {status} {_shown(text)}", status)
        if status == 404:
            self.missing.add(path)
            self.hub.log.info("the hub has no such health endpoint (older firmware?); not asking again", path=path)
            return None
        if 300 <= status < 400:
            self.refused.add(path)
            self.hub.log.warning(
                "the hub redirects a health endpoint (hub security on?); not asking again",
                path=path,
                status=status,
                location=shorten(location, 80),
            )
            return None
        if status != 200:
            raise HubProtocolError(hub, f"{where}: HTTP {status} {_shown(text)}", status)
        if len(raw) > MAX_BODY:
            raise HubProtocolError(hub, f"{where}: answer is over {MAX_BODY} bytes")
        return text
