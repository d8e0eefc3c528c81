"""The default device set, ``default_devices()``, read from ``data/devices.json``."""

from __future__ import annotations

from typing import Any

from bridge.sim.hubitat.fixtures import fixture_json


def default_devices() -> list[dict[str, Any]]:
    """A realistic device set built from the fixtures (ids are strings, ref §1.3); a fresh copy on every call.

    130 switch + 1360 hygrometer (devices_all.json / device_switch_130.json), 6 contact, 32 leak + temperature,
    176 outlet with duplicate ``switch`` (device_details.json), 93 lock (device_lock.json plus the Crestron
    attributes), 22 mmWave motion with DECIMAL-as-string attributes (device_attribute_samples.json), 2178 RGB
    bulb (hacs README sample), 999 TRV (devices_all_trv_item.json) and 412 thermostat
    (device_thermostat_capabilities.json plus HoneywellThermo-TCC#24 values). ``data/FIXTURES.md`` says how
    ``data/devices.json`` was put together from those fixtures.
    """
    devices = fixture_json("devices.json")
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ValueError("data/devices.json must hold a JSON list of device objects")
    return devices
