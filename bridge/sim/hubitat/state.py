"""Hub state and the events it publishes: devices, modes, HSM, ``set_attribute`` & co., random demo activity."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import Any, Final, NamedTuple

from bridge.sim.hubitat.devices import default_devices
from bridge.sim.hubitat.fixtures import fixture_json
from bridge.sim.hubitat.model import DEFAULT_UNITS, Attribute, Device, device_from_spec
from bridge.sim.hubitat.values import coerce, infer_type, wire_string

FIRMWARE: Final = "2.4.4.156"  # build seen in hub_eventsJson.json / hubData.json (ref §4)
LOCATION_NAME: Final = "Home"  # location displayName in postURL_events.json (ref §1.4)

# ENUM attributes whose hub descriptionText reads "<label> is <value>" ("Loft Fan is on", ref §1.4); other
# attributes read "<label> <name> is <value><unit>" ("Zooz Outlet 3 power is 0W", postURL_content_2020.json).
_SHORT_DESCRIPTION: Final = frozenset({"switch", "contact", "motion", "water", "lock", "presence", "tamper"})


class HubEvent(NamedTuple):
    """One event as the hub publishes it, before each push channel renders it in its own format."""

    source: str  # DEVICE, LOCATION or HUB
    name: str
    value: str | None
    display_name: str | None
    device_id: str | None  # None for location and hub events
    int_device_id: int  # the eventsocket's integer deviceId, 0 when not a device
    description: str | None
    unit: str | None
    event_type: str | None
    data: str | None


class HubState:
    """The hub's state (devices, modes, HSM) and its event generation; the push channels subclass ``_publish``."""

    def __init__(self, *, devices: list[dict[str, Any]] | None, seed: int) -> None:
        self._seed = seed
        specs = default_devices() if devices is None else devices
        self._devices: dict[str, Device] = {}
        for spec in specs:
            dev = device_from_spec(spec)
            if dev.id in self._devices:
                raise ValueError(f"duplicate device id {dev.id}")
            self._devices[dev.id] = dev
        self._modes: list[dict[str, Any]] = [
            {"id": int(m["id"]), "name": str(m["name"])} for m in fixture_json("modes.json")
        ]
        self._mode_id: int = next(int(m["id"]) for m in fixture_json("modes.json") if m["active"])
        self._hsm: str = str(fixture_json("hsm.json")["hsm"])
        self.firmware: str = FIRMWARE
        self.location_name: str = LOCATION_NAME
        # --- quirks and faults of the hub as a whole -----------------------------------------------------------
        self.omit_event_type: bool = False  # 2020-era builds: no `type` key in frames/POSTs (ref §1.4, §2.2)
        self.starting_up: bool = False  # every endpoint answers "Your hub is starting up" (ref §4)
        self.starting_up_status: int = 503
        # --- observation ---------------------------------------------------------------------------------------
        self.events_emitted: int = 0
        # --- plumbing ------------------------------------------------------------------------------------------
        self._background: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task that ``stop()`` cancels."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ----------------------------------------------------------------------------------------------------------
    # Reading the state
    # ----------------------------------------------------------------------------------------------------------

    def devices(self) -> list[str]:
        return list(self._devices)

    def value(self, device_id: str, attribute: str) -> Any:
        """Current value as /devices/<id> would return it (NUMBER typed, DECIMAL/ENUM/STRING as strings)."""
        return self._devices[str(device_id)].attributes[attribute].value

    def state(self) -> dict[tuple[str, str], Any]:
        return {(d.id, a.name): a.value for d in self._devices.values() for a in d.attributes.values()}

    @property
    def mode(self) -> str:
        return str(next(m["name"] for m in self._modes if m["id"] == self._mode_id))

    @property
    def hsm(self) -> str:
        return self._hsm

    # ----------------------------------------------------------------------------------------------------------
    # Changing the state
    # ----------------------------------------------------------------------------------------------------------

    def set_attribute(
        self,
        device_id: str,
        attribute: str,
        value: Any,
        *,
        push: bool = True,
        unit: str | None = None,
        description: str | None = None,
        event_type: str | None = None,
        data: str | None = None,
        is_state_change: bool = False,
    ) -> bool:
        """Change hub state like a driver's ``sendEvent`` and, if ``push``, publish the event.

        Like the real platform, an event whose value equals the current one is filtered out (ref §1.5,
        ``isStateChange`` default) and ``False`` is returned; pass ``is_state_change=True`` to force it (as
        button drivers do). ``push=False`` changes state silently (a missed event). Unknown attributes are
        created on the fly with an inferred dataType. Publishing only enqueues (cheap); per-socket sender tasks
        and one POST worker do the I/O. Returns whether an event was generated. Call from the event-loop
        thread.
        """
        dev = self._devices[str(device_id)]
        attr = dev.attributes.get(attribute)
        if attr is None:
            data_type = infer_type(value)
            attr = Attribute(attribute, data_type, None, False, unit or DEFAULT_UNITS.get(attribute), None)
            dev.attributes[attribute] = attr
            dev.layout.append(attribute)
        new = coerce(attr.data_type, value)
        if new == attr.value and type(new) is type(attr.value) and not is_state_change:
            return False
        attr.value = new
        now = time.time()
        dev.last_event = now
        text = wire_string(new)
        ev_unit = unit if unit is not None else attr.unit
        dev.history.append((now, attribute, text, ev_unit))
        if not push:
            return True
        if description is None:
            shown = "null" if text is None else text
            if attribute in _SHORT_DESCRIPTION:
                description = f"{dev.label} is {shown}"
            else:
                description = f"{dev.label} {attribute} is {shown}{ev_unit or ''}"
        self._emit(
            HubEvent("DEVICE", attribute, text, dev.label, dev.id, dev.int_id, description, ev_unit, event_type, data)
        )
        return True

    def set_mode(self, name: str) -> None:
        """Switch the location mode (adds the mode if unknown) and publish a ``mode`` location event."""
        mode = next((m for m in self._modes if m["name"] == name), None)
        if mode is None:
            mode = {"id": max((m["id"] for m in self._modes), default=0) + 1, "name": name}
            self._modes.append(mode)
        self._mode_id = int(mode["id"])
        # Shape of postURL_events.json "mode": type LOCATION_MODE_CHANGE, displayName = location name.
        self._emit_location("mode", name, f"{self.location_name} is now in {name} mode", "LOCATION_MODE_CHANGE")

    def set_hsm(self, status: str) -> None:
        self._hsm = status
        self._emit_location("hsmStatus", status, "hsmEvent", None)  # descriptionText as in postURL_events.json

    def hsm_alert(self, value: str) -> None:
        self._emit_location("hsmAlert", value, "hsmEvent", None)

    def system_start(self) -> None:
        """Publish ``systemStart`` as a rebooted hub does (value = firmware build, ref §1.4 / §4).

        On the eventsocket the frame carries ``source":"HUB"`` (the source the hub's own /hub/eventsJson uses
        for this event, ref §2.2 — an inference); on the webhook it is a location event (``deviceId`` null).
        """
        description = f"System startup with build: {self.firmware}"
        self._emit(
            HubEvent("HUB", "systemStart", self.firmware, self.location_name, None, 0, description, None, None, None)
        )

    def _emit_location(self, name: str, value: str, description: str, event_type: str | None) -> None:
        self._emit(HubEvent("LOCATION", name, value, self.location_name, None, 0, description, None, event_type, None))

    def _emit(self, event: HubEvent) -> None:
        self.events_emitted += 1
        self._publish(event)

    def _publish(self, event: HubEvent) -> None:
        """Hand ``event`` to the push channels. Each channel overrides this, queues its rendering, and calls
        ``super()._publish(event)``; queuing only, the I/O happens in the channel's own tasks."""

    # ----------------------------------------------------------------------------------------------------------
    # Demo activity
    # ----------------------------------------------------------------------------------------------------------

    async def random_activity(self, interval: float = 1.0) -> None:
        """Forever: every ``interval`` seconds change one to three attributes like live devices would."""
        rng = random.Random(self._seed + 1)
        while True:
            await asyncio.sleep(interval)
            for _ in range(rng.randint(1, 3)):
                self._random_change(rng)

    def _random_change(self, rng: random.Random) -> None:
        skip = {"numberOfButtons", "maxCodes", "codeLength", "pushed", "held", "hue", "saturation"}
        candidates = [
            (dev, attr)
            for dev in self._devices.values()
            for attr in dev.attributes.values()
            if attr.name not in skip
            and (
                (attr.data_type == "NUMBER" and isinstance(attr.value, (int, float)))
                or (attr.data_type == "ENUM" and attr.values and len(attr.values) > 1)
            )
        ]
        if not candidates:
            return
        dev, attr = rng.choice(candidates)
        new: Any
        if attr.data_type == "ENUM":
            assert attr.values is not None
            new = rng.choice([v for v in attr.values if v != attr.value] or attr.values)
        elif isinstance(attr.value, float):
            new = round(attr.value + rng.choice([-1, 1]) * rng.uniform(0.1, 0.6), 1)
        else:
            new = attr.value + rng.choice([-1, 1]) * rng.randint(1, 3)
            if attr.unit == "%":
                new = min(100, max(0, new))
        self.set_attribute(dev.id, attr.name, new, event_type="physical")
