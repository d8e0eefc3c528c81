"""Maker API JSON bodies built from the device model: /devices, /devices/all, /devices/<id> and its sub-resources."""

from __future__ import annotations

from typing import Any

from bridge.sim.hubitat.model import COMMAND_ARG_TYPES, Attribute, Device
from bridge.sim.hubitat.values import hub_date, wire_string


def device_list(devices: list[Device]) -> list[dict[str, Any]]:
    """GET /devices: ref §1.3 DeviceInfo.json (newer firmware adds `type`)."""
    return [{"id": d.id, "name": d.name, "label": d.label, "type": d.type} for d in devices]


def modes_json(modes: list[dict[str, Any]], active_id: int) -> list[dict[str, Any]]:
    """GET /modes, as modes.json: integer ids, exactly one active (ref §1.2)."""
    return [{"active": m["id"] == active_id, "id": m["id"], "name": m["name"]} for m in modes]


def attr_entry(attr: Attribute) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": attr.name, "currentValue": attr.value, "dataType": attr.data_type}
    if attr.has_values_key:
        entry["values"] = attr.values
    return entry


def detail(dev: Device) -> dict[str, Any]:
    """GET /devices/<id>: device_switch_130.json / device_lock.json order; typed currentValue; duplicates kept
    (ref §1.3)."""
    out: dict[str, Any] = {"id": dev.id, "name": dev.name, "label": dev.label, "type": dev.type}
    if dev.room is not None:
        out["room"] = dev.room
    out["attributes"] = [attr_entry(dev.attributes[n]) for n in dev.layout]
    out["capabilities"] = dev.capabilities
    out["commands"] = dev.commands
    return out


def all_attributes(dev: Device) -> dict[str, Any]:
    """The /devices/all attribute map: *strings* plus the junk "dataType"/"values" keys (devices_all.json, ref §1.3).

    In both fixture devices the junk dataType equals the dataType of the device's last attribute and values is
    null; that rule is what we reproduce.
    """
    attrs: dict[str, Any] = {}
    unique = list(dev.attributes.values())
    for index, attr in enumerate(unique):
        if index == dev.junk_position:
            attrs["dataType"] = dev.attributes[dev.layout[-1]].data_type
            attrs["values"] = None
        attrs[attr.name] = wire_string(attr.value)
    if unique and "dataType" not in attrs:
        attrs["dataType"] = dev.attributes[dev.layout[-1]].data_type
        attrs["values"] = None
    return attrs


def all_item(dev: Device) -> dict[str, Any]:
    """One item of GET /devices/all."""
    return {
        "name": dev.name,
        "label": dev.label,
        "type": dev.type,
        "id": dev.id,
        "date": dev.date if dev.last_event is None else hub_date(dev.last_event),
        "model": dev.model,
        "manufacturer": dev.manufacturer,
        "room": dev.room,
        "capabilities": [c for c in dev.capabilities if isinstance(c, str)],
        "attributes": all_attributes(dev),
        "commands": [{"command": c} for c in dev.commands],
    }


def list_form(dev: Device) -> dict[str, Any]:
    """One item of GET /devices/*: /devices/all content with attributes as a typed list (ref §1.2, inferred from
    clients)."""
    item = all_item(dev)
    item["attributes"] = [attr_entry(dev.attributes[n]) for n in dev.layout]
    return item


def commands_json(dev: Device) -> list[dict[str, Any]]:
    """GET /devices/<id>/commands: each command once, with its argument types (device_commands.json)."""
    seen: dict[str, None] = dict.fromkeys(dev.commands)
    return [{"command": c, "type": COMMAND_ARG_TYPES.get(c, ["n/a"])} for c in seen]


def capabilities_with_values(dev: Device) -> list[Any]:
    """GET /devices/<id>/capabilities, as device_thermostat_capabilities.json: values as strings, "values": null
    for non-enums."""
    out: list[Any] = []
    for cap in dev.capabilities:
        if isinstance(cap, dict):
            entries = []
            for ref in cap.get("attributes", []):
                attr = dev.attributes.get(ref.get("name"))
                if attr is not None:
                    entries.append(
                        {
                            "name": attr.name,
                            "currentValue": wire_string(attr.value),
                            "dataType": attr.data_type,
                            "values": attr.values,
                        }
                    )
            out.append({"attributes": entries})
        else:
            out.append(cap)
    return out


def events_json(dev: Device, num: str | None) -> list[dict[str, Any]]:
    """GET /devices/<id>/events: rows {device_id,label,name,value,date,unit,isStateChange,source}, newest first
    (ref §1.2, [3P])."""
    rows = list(reversed(dev.history))
    if num is not None and num.isdigit():
        rows = rows[: int(num)]
    return [
        {
            "device_id": dev.id,
            "label": dev.label,
            "name": name,
            "value": value,
            "date": hub_date(ts),
            "unit": unit,
            "isStateChange": True,
            "source": "DEVICE",
        }
        for ts, name, value, unit in rows
    ]
