"""``hubbridge demo --splunk-sample FILE``: a realistic day of hub events as the HEC sink would send them.

A day of a two-hub home, minute by minute: the simulated Hubitat hub's devices (``bridge.sim.hubitat``'s device
set, with its labels, rooms, units and starting values) living through a day (temperatures following the sun,
people coming and going, a door left open, a leak, batteries draining, modes and HSM), the hub's own health every
five minutes with a low-memory spell and a reboot, a Homey hub with Logic variables, and one outage where the
bridge loses the Hubitat hub and catches up by reconciliation. The readings go through the bridge's own diff
(``bridge.diff.Differ``: ids, ``previous``, what counts as a change) and its own HEC encoder (``metrics: also``),
so each line of the file is exactly an envelope the ``splunk_hec`` sink would POST.

The day is computed, not recorded from live simulators: a day of real time cannot be waited for. Hub health,
Homey devices and Logic variables are written in the event contract's form (``kind: hub``, ``kind: variable``,
``hub_type: homey``) as the bridge's sources for them send them.

Use the file with a test Splunk: POST it to HEC as it is (``curl --data-binary @FILE``: events into ``smarthome``,
metrics into ``home_metrics``), or ``splunk add oneshot FILE -sourcetype hubbridge:hec_sample -index smarthome``
(the app's props.conf unwraps the envelopes and drops the metric lines).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.diff import Differ
from bridge.errors import EnvironmentProblem
from bridge.events import Event, Kind, Reading, SourceName, encode_event
from bridge.journal.store import Record
from bridge.sim.hubitat.devices import default_devices
from bridge.sim.hubitat.model import Device, device_from_spec
from bridge.sim.hubitat.state import FIRMWARE
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig
from bridge.sinks.splunk_hec.encoder import Encoder

DAY = 86400
STEP = 60  # the day is walked minute by minute
INDEX = "smarthome"
METRICS_INDEX = "home_metrics"
HUBITAT = "house"
HOMEY = "cabin"
# The Hubitat hub's outage as the bridge sees it (seconds into the day): offline, then online and a reconcile.
OUTAGE = (12 * 3600 + 30 * 60 + 5, 12 * 3600 + 42 * 60 + 10)
# The hub's low-memory spell, ended by a reboot.
DEGRADED = (3 * 3600 + 10 * 60, 3 * 3600 + 45 * 60)

_SHORT = frozenset({"switch", "contact", "motion", "water", "lock", "presence", "tamper"})


@dataclass(slots=True)
class SampleSummary:
    path: Path
    events: int
    metrics: int
    start: float


def _at(h: int, m: int = 0) -> int:
    return h * 3600 + m * 60


class _Day:
    """The readings of the day, in time order: ``(t, hub, hub_type, Reading)``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.devices: dict[str, Device] = {
            d.id: d for d in (device_from_spec(s) for s in default_devices()) if d.id in _DEVICE_PLAN
        }
        self.out: list[tuple[int, str, str, Reading]] = []

    def device(self, t: int, dev_id: str, attribute: str, value: Any, *, momentary: bool = False) -> None:
        dev = self.devices[dev_id]
        attr = dev.attributes.get(attribute)
        unit = attr.unit if attr is not None else None
        shown = f"{value}" if attribute in _SHORT else f"{attribute} is {value}{unit or ''}"
        reading = Reading(
            kind="device",
            device_id=dev.id,
            attribute=attribute,
            value=value,
            source="eventsocket",
            device=dev.label,
            room=dev.room,
            unit=unit,
            description=f"{dev.label} is {shown}" if attribute in _SHORT else f"{dev.label} {shown}",
            momentary=momentary,
        )
        self.out.append((t, HUBITAT, "hubitat", reading))

    def other(self, t: int, hub: str, hub_type: str, kind: Kind, attribute: str, value: Any, **kw: Any) -> None:
        source: SourceName = kw.pop("source", "realtime" if hub_type == "homey" else "eventsocket")
        self.out.append(
            (
                t,
                hub,
                hub_type,
                Reading(
                    kind=kind,
                    device_id=kw.pop("device_id", None),
                    attribute=attribute,
                    value=value,
                    source=source,
                    **kw,
                ),
            )
        )


# The simulated hub's devices the day uses (all of data/devices.json but the kitchen scene switch's extras).
_DEVICE_PLAN = {"6", "32", "176", "130", "1360", "999", "93", "22", "2178", "412"}


def _climate(day: _Day) -> None:
    rng = day.rng
    for dev in day.devices.values():
        for name in ("temperature", "humidity"):
            attr = dev.attributes.get(name)
            if attr is None or not isinstance(attr.value, int | float):
                continue
            base = float(attr.value)
            if name == "temperature":
                base = 21.0 if attr.unit == "°C" and base > 25 else base  # the fixture's 29 °C living room is a hot day
                swing = 2.7 if attr.unit == "°F" else 1.5
            else:
                base, swing = max(base, 35.0), 6.0
            every = 300 if name == "temperature" else 600
            for t in range(rng.randrange(every), DAY, every):
                # Warmest mid-afternoon, most humid before dawn.
                phase = math.cos((t / DAY - 16 / 24) * 2 * math.pi)
                v = base + swing * (phase if name == "temperature" else -phase) + rng.gauss(0, swing / 10)
                day.device(t, dev.id, name, round(v, 1) if name == "temperature" else round(v))


def _activity(day: _Day) -> None:
    rng = day.rng
    # Motion in the office during the working day, with the light level following the sun.
    t = _at(8, 5)
    while t < _at(18, 30):
        day.device(t, "22", "motion", "active")
        t += rng.randrange(90, 420)
        day.device(t, "22", "motion", "inactive")
        t += rng.randrange(600, 2400)
    for t in range(0, DAY, 900):
        sun = max(0.0, math.sin((t / DAY - 6.5 / 24) * 2 * math.pi * 24 / 26))
        day.device(t, "22", "illuminance", int(sun * 420 + rng.randrange(0, 8)))
    # The office door: short openings, and once left open for 45 minutes.
    for h, m, minutes in ((8, 2, 1), (10, 31, 2), (13, 5, 45), (15, 47, 1), (17, 58, 3)):
        day.device(_at(h, m), "6", "contact", "open")
        day.device(_at(h, m) + minutes * 60, "6", "contact", "closed")
    # The front door lock, with who unlocked it.
    for h, m, state, who in (
        (7, 45, "unlocked", "AJ"),
        (8, 50, "locked", None),
        (17, 55, "unlocked", "Virginia"),
        (22, 30, "locked", None),
    ):
        if who:
            day.device(_at(h, m), "93", "lastCodeName", who)
        day.device(_at(h, m), "93", "lock", state)
    # A leak in the basement, mopped up.
    day.device(_at(14, 10), "32", "water", "wet")
    day.device(_at(14, 25), "32", "water", "dry")
    day.other(_at(14, 10), HUBITAT, "hubitat", "location", "hsmAlert", "water", description="hsmEvent")
    # Loft fan in the afternoon, the sofa lamp in the evening, the kitchen scene button.
    day.device(_at(12, 0), "176", "switch", "on")
    day.device(_at(12, 0) + 2, "176", "power", 44)
    day.device(_at(16, 0), "176", "switch", "off")
    day.device(_at(16, 0) + 2, "176", "power", 0)
    day.device(_at(18, 30), "2178", "switch", "on")
    day.device(_at(18, 30), "2178", "level", 60)
    day.device(_at(21, 0), "2178", "level", 35)
    day.device(_at(23, 15), "2178", "switch", "off")
    for h, m, button in ((7, 30, 1), (19, 2, 3), (22, 58, 2)):
        day.device(_at(h, m), "130", "pushed", button, momentary=True)
    # Heating: the TRV follows its setpoint, night setback at 23:00.
    for h, m, setpoint in ((6, 30, 20.0), (23, 0, 17.0)):
        day.device(_at(h, m), "999", "thermostatSetpoint", setpoint)
    for h, m, state in ((6, 31, "heating"), (8, 15, "idle"), (16, 40, "heating"), (18, 5, "idle"), (23, 1, "idle")):
        day.device(_at(h, m), "999", "thermostatOperatingState", state)
    for h, m, state in ((0, 0, "idle"), (9, 40, "cooling"), (17, 20, "idle")):
        day.device(_at(h, m), "412", "thermostatOperatingState", state)
    # Batteries drain; the TRV's is nearly flat.
    day.device(0, "999", "battery", 19)
    for dev_id, h in (("999", 4), ("999", 15), ("32", 11), ("6", 20)):
        current = {"999": 19, "32": 66, "6": 100}[dev_id]
        drop = 1 + (h == 15)
        day.device(_at(h, 7), dev_id, "battery", current - drop)
    # Modes and HSM.
    for h, m, mode, hsm in (
        (6, 30, "Day", "disarmed"),
        (9, 0, "Away", "armedAway"),
        (17, 55, "Evening", "disarmed"),
        (23, 0, "Night", "armedNight"),
    ):
        day.other(_at(h, m), HUBITAT, "hubitat", "location", "mode", mode, description=f"Home is now in {mode} mode")
        day.other(_at(h, m) + 1, HUBITAT, "hubitat", "location", "hsmStatus", hsm, description="hsmEvent")


def _hub_health(day: _Day) -> None:
    """The Hubitat hub's own figures every five minutes (Hub Information driver style), the Homey hub's status."""
    rng = day.rng
    db = 42.0
    for t in range(0, DAY, 300):
        degraded = DEGRADED[0] <= t < DEGRADED[1]
        after_reboot = t >= DEGRADED[1]
        free = (
            (70_000 + rng.randrange(0, 9000))
            if degraded
            else int(452_000 - (t % DAY) * (0.9 if after_reboot else 3.2) - rng.randrange(0, 4000))
        )
        figures: dict[str, Any] = {
            "free_os_memory": free,
            "cpu_load_5m": round((3.4 if degraded else 0.35) + rng.uniform(0, 0.5), 2),
            "java_heap_total": 262_144,
            "java_heap_free": (21_000 if degraded else 96_000) + rng.randrange(0, 30_000),
            "java_direct": 31_000 + rng.randrange(0, 2000),
            "internal_temperature": round(44 + 3 * math.cos((t / DAY - 16 / 24) * 2 * math.pi) + rng.uniform(0, 1), 1),
            "database_size": round(db, 1),
        }
        db += 0.01
        unit = {
            "free_os_memory": "KB",
            "java_heap_total": "KB",
            "java_heap_free": "KB",
            "java_direct": "KB",
            "internal_temperature": "°C",
            "database_size": "MB",
        }
        for name, value in figures.items():
            day.other(t, HUBITAT, "hubitat", "hub", name, value, unit=unit.get(name), source="poll")
        day.other(t, HUBITAT, "hubitat", "hub", "hub_status", "degraded" if degraded else "online", source="poll")
        day.other(t, HUBITAT, "hubitat", "hub", "alert.hubLowMemory", degraded, source="poll")
        day.other(t, HUBITAT, "hubitat", "hub", "alert.hubLoadElevated", degraded, source="poll")
        for radio in ("zigbee_status", "zwave_status"):
            day.other(t, HUBITAT, "hubitat", "hub", radio, "online", source="poll")
        day.other(t, HUBITAT, "hubitat", "hub", "cloud_status", "offline" if degraded else "online", source="poll")
        homey_cloud = "offline" if _at(19, 0) <= t < _at(19, 20) else "online"
        day.other(t, HOMEY, "homey", "hub", "cloud_status", homey_cloud, source="poll")
        day.other(t, HOMEY, "homey", "hub", "hub_status", "online", source="poll")
    day.other(
        DEGRADED[1] + 30,
        HUBITAT,
        "hubitat",
        "hub",
        "systemStart",
        FIRMWARE,
        momentary=True,
        description=f"System startup with build: {FIRMWARE}",
    )


def _homey(day: _Day) -> None:
    """The cabin's Homey: a thermometer, a door, motion, and Logic variables (device_id null, kind variable)."""
    rng = day.rng
    devices = {
        "thermo": ("6f1c2a4e-0b7d-4a55-9b1e-2f7c3d9a1b01", "Cabin Thermometer", "Cabin lounge"),
        "door": ("a3e9b2c1-55d4-4f0e-8a6b-7c2d1e9f3a02", "Cabin Door", "Cabin hall"),
        "motion": ("c7d2e1f0-2b3a-4c5d-9e8f-1a2b3c4d5e03", "Cabin Motion", "Cabin lounge"),
    }

    def dev(t: int, key: str, attribute: str, value: Any, unit: str | None = None) -> None:
        dev_id, label, room = devices[key]
        day.other(t, HOMEY, "homey", "device", attribute, value, device_id=dev_id, device=label, room=room, unit=unit)

    for t in range(rng.randrange(600), DAY, 600):
        phase = math.cos((t / DAY - 15 / 24) * 2 * math.pi)
        dev(t, "thermo", "measure_temperature", round(14 + 3 * phase + rng.gauss(0, 0.2), 1), "°C")
        dev(t, "thermo", "measure_humidity", round(62 - 8 * phase), "%")
    for h, m in ((10, 12), (16, 40)):
        dev(_at(h, m), "door", "alarm_contact", True)
        dev(_at(h, m) + 120, "door", "alarm_contact", False)
        dev(_at(h, m) + 60, "motion", "alarm_motion", True)
        dev(_at(h, m) + 600, "motion", "alarm_motion", False)
    variables = (
        (0, "heating_boost", False),
        (0, "guests_expected", False),
        (0, "target_temperature", 16),
        (_at(9, 30), "guests_expected", True),
        (_at(10, 12), "last_visitor", "Virginia"),
        (_at(10, 15), "target_temperature", 20),
        (_at(10, 15), "heating_boost", True),
        (_at(11, 15), "heating_boost", False),
        (_at(16, 45), "guests_expected", False),
        (_at(16, 45), "target_temperature", 16),
    )
    for t, name, value in variables:
        day.other(t, HOMEY, "homey", "variable", name, value)


def _readings(seed: int) -> list[tuple[int, str, str, Reading]]:
    day = _Day(seed)
    _climate(day)
    _activity(day)
    _hub_health(day)
    _homey(day)
    day.out.sort(key=lambda item: item[0])
    return day.out


def sample_events(start: float, seed: int = 7) -> Iterator[Event]:
    """The day's change events from ``start`` (epoch seconds), as the bridge would journal them."""
    differ = Differ(install_id=f"sample-{seed}")

    def changes(t: float, hub: str, hub_type: str, readings: list[Reading]) -> list[Event]:
        for r in readings:
            r.time = t
        return differ.diff(hub, hub_type, readings, now=t).events

    def bridge_status(t: float, hub: str, hub_type: str, value: str, description: str) -> list[Event]:
        r = Reading(
            kind="bridge", device_id=None, attribute="hub_status", value=value, source="poll", description=description
        )
        return changes(t, hub, hub_type, [r])

    yield from bridge_status(start, HUBITAT, "hubitat", "online", "hub answered the first poll")
    yield from bridge_status(start, HOMEY, "homey", "online", "hub answered the first poll")
    missed: dict[tuple[str, str, str], Reading] = {}
    outage = "before"
    for offset, hub, hub_type, reading in _readings(seed):
        # Hubs stamp events to the millisecond; the fraction only has to look like one and stay reproducible.
        t = start + offset + (offset * 7919 % 1000) / 1000
        if hub == HUBITAT and outage == "before" and offset >= OUTAGE[0]:
            outage = "during"
            yield from bridge_status(
                start + OUTAGE[0], hub, hub_type, "offline", "no answer from the hub for 30 s (eventsocket, Maker API)"
            )
        if hub == HUBITAT and outage == "during":
            if offset < OUTAGE[1]:
                if not reading.momentary and reading.kind in ("device", "location"):
                    # What the hub changed meanwhile; the reconcile poll sees the last value of each.
                    missed[(reading.kind, reading.device_id or "", reading.attribute)] = reading
                continue
            outage = "after"
            back = start + OUTAGE[1]
            yield from bridge_status(back, hub, hub_type, "online", "hub answers again after 12 min")
            for r in missed.values():
                # A poll carries neither the hub's event time nor units nor descriptions.
                r.source, r.unit, r.description = "reconcile", None, None
            yield from changes(back + 1, hub, hub_type, list(missed.values()))
        if offset == 0 and reading.kind == "device":
            # The first poll at the bridge's start: every current value, as Maker API lists them.
            reading.source, reading.unit, reading.description = "poll", None, None
        yield from changes(t, hub, hub_type, [reading])


def write_sample(path: Path, start: float | None = None, seed: int = 7) -> SampleSummary:
    """Write the day's HEC envelopes (events and, with ``metrics: also``, metrics) to ``path``, one per line.

    ``start`` defaults to yesterday's midnight (local time), so the day's clock matches the events (people leave
    at nine, the heating sets back at eleven) and the whole day is the time range "Yesterday".
    """
    if start is None:
        today = time.localtime()
        start = time.mktime((today.tm_year, today.tm_mon, today.tm_mday - 1, 0, 0, 0, 0, 0, -1))
    start = float(start)  # envelope times are epoch seconds with a fraction, as the bridge sends them
    cfg = SplunkHecSinkConfig.model_validate(
        {
            "name": "sample",
            "type": "splunk_hec",
            "url": "http://127.0.0.1:8088",
            "token": "sample",
            "index": INDEX,
            "metrics": "also",
            "metrics_index": METRICS_INDEX,
        }
    )
    encoder = Encoder(cfg)
    lines: list[str] = []
    events = metrics = 0
    for seq, ev in enumerate(sample_events(start, seed), start=1):
        body, _ = encode_event(ev)
        for envelope in encoder.envelopes(Record(seq, ev.id, body)):
            lines.append(envelope)
            if json.loads(envelope)["event"] == "metric":
                metrics += 1
            else:
                events += 1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write the Splunk sample to {path}: {exc.strerror or exc}; give a writable file path"
        ) from None
    return SampleSummary(path, events, metrics, start)


def run_sample(path: str) -> int:
    """The ``hubbridge demo --splunk-sample FILE`` command."""
    summary = write_sample(Path(path))
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary.start))
    print(
        f"{summary.path}: {summary.events} events and {summary.metrics} metrics from {day}, 24 hours, as HEC "
        f"envelopes (index {INDEX}, metrics index {METRICS_INDEX}); see docs/splunk.md to load them into Splunk"
    )
    return 0
