"""Snapshot data for the dashboard renders: each panel's search result, computed from a --splunk-sample file.

No Splunk runs here, so each data source's SPL is mirrored by a few lines of Python over the sample's envelopes
(the same filters, the same statistics, the fields the search outputs). The renders show what the dashboards look
like on that day; whether Splunk computes the same is what a test Splunk with the sample loaded shows.

    python splunk/tools/snapshots.py SAMPLE.json OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Table = dict[str, Any]

# props.conf's common_attribute / common_value: Homey capability names under their Hubitat names.
_COMMON = {
    "measure_temperature": "temperature",
    "measure_humidity": "humidity",
    "measure_battery": "battery",
    "measure_power": "power",
    "measure_luminance": "illuminance",
    "alarm_contact": "contact",
    "alarm_motion": "motion",
    "alarm_water": "water",
    "alarm_smoke": "smoke",
    "locked": "lock",
    "onoff": "switch",
}
_BOOL_STATES = {
    "alarm_contact": ("open", "closed"),
    "alarm_motion": ("active", "inactive"),
    "alarm_water": ("wet", "dry"),
    "alarm_smoke": ("detected", "clear"),
    "locked": ("locked", "unlocked"),
    "onoff": ("on", "off"),
}


def _text(v: Any) -> Any:
    """A JSON value as Splunk's KV_MODE=json extracts it: true/false/null as text, numbers kept."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return v


def load(path: Path) -> tuple[list[Row], list[Row]]:
    events, metrics = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        env = json.loads(line)
        if env["event"] == "metric":
            f = env["fields"]
            [name] = [k for k in f if k.startswith("metric_name:")]
            metrics.append(
                {
                    "_time": env["time"],
                    "metric_name": name.split(":", 1)[1],
                    "_value": f[name],
                    **{k: v for k, v in f.items() if k != name},
                }
            )
            continue
        ev = dict(env["event"])
        ev["_time"] = env["time"]
        ev["event_source"] = ev.pop("source")
        ev["value"] = _text(ev["value"])
        ev["previous"] = _text(ev["previous"])
        v = ev["value"]
        try:
            ev["value_num"] = float(v) if v is not None and not isinstance(v, bool) else None
        except (TypeError, ValueError):
            ev["value_num"] = None
        attr = ev["attribute"]
        ev["common_attribute"] = _COMMON.get(attr, attr)
        states = _BOOL_STATES.get(attr)
        ev["common_value"] = (states[0] if v == "true" else states[1]) if states else v
        events.append(ev)
    events.sort(key=lambda e: e["_time"])
    metrics.sort(key=lambda e: e["_time"])
    return events, metrics


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(t))


def ftime(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def table(fields: list[str], rows: Iterable[Row]) -> Table:
    rows = list(rows)
    return {"fields": [{"name": f} for f in fields], "columns": [[r.get(f) for r in rows] for f in fields]}


def where(events: list[Row], **match: Any) -> list[Row]:
    out = []
    for e in events:
        if all((e.get(k) in v) if isinstance(v, set | tuple | list) else e.get(k) == v for k, v in match.items()):
            out.append(e)
    return out


def latest_by(events: list[Row], keys: tuple[str, ...], **agg: str) -> list[Row]:
    """``stats latest(f) as name ... by keys`` (latest non-null value of each field)."""
    groups: dict[tuple[Any, ...], Row] = {}
    for e in events:  # time order: later overwrites
        row = groups.setdefault(tuple(e.get(k) for k in keys), {k: e.get(k) for k in keys})
        for name, f in agg.items():
            if e.get(f) is not None:
                row[name] = e[f]
    return list(groups.values())


def count_by(events: list[Row], key: str) -> list[Row]:
    counts: dict[Any, int] = defaultdict(int)
    for e in events:
        if e.get(key) is not None:
            counts[e[key]] += 1
    return [{key: k, "count": n} for k, n in counts.items()]


def timechart(
    events: list[Row],
    span: int,
    split: str | None,
    value: Callable[[list[Row]], Any],
    field: str = "value_num",
    start: float = 0,
    end: float = 0,
) -> Table:
    """``timechart span=S <agg>(field) by split``: one row per bucket, one column per split value."""
    series = sorted({e[split] for e in events if e.get(split) is not None}) if split else ["count"]
    buckets: dict[int, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        buckets[int(e["_time"] // span * span)][e.get(split) if split else "count"].append(e)
    first, last = int(start // span * span), int(end // span * span)
    rows = []
    for b in range(first, last + 1, span):
        row: Row = {"_time": iso(b)}
        for s in series:
            group = buckets.get(b, {}).get(s, [])
            row[s] = value(group) if group else (0 if value is _count else None)
        rows.append(row)
    return table(["_time", *series], rows)


def filldown(t: Table) -> Table:
    """``| filldown``: an empty cell takes the value above it (a value that did not change is no event)."""
    for col in t["columns"][1:]:
        for i in range(1, len(col)):
            if col[i] is None:
                col[i] = col[i - 1]
    return t


def _count(group: list[Row]) -> int:
    return len(group)


def _avg(field: str) -> Callable[[list[Row]], Any]:
    def f(group: list[Row]) -> Any:
        vals = [e[field] for e in group if e.get(field) is not None]
        return round(sum(vals) / len(vals), 2) if vals else None

    return f


def _latest(field: str) -> Callable[[list[Row]], Any]:
    def f(group: list[Row]) -> Any:
        vals = [e[field] for e in group if e.get(field) is not None]
        return vals[-1] if vals else None

    return f


def snapshots(events: list[Row], metrics: list[Row]) -> dict[str, dict[str, Table]]:
    start = min(e["_time"] for e in events)
    end = start + 86400 - 1
    now = end
    dev = where(events, kind="device")
    tc = {"start": start, "end": end}
    out: dict[str, dict[str, Table]] = {}

    # ---------------------------------------------------------------------------------------- Overview
    status = latest_by(
        where(events, attribute="hub_status", kind=("bridge", "hub")),
        ("hub", "hub_type", "kind"),
        status="value",
        since="_time",
    )
    for r in status:
        r["seen_by"] = "bridge: reachability" if r["kind"] == "bridge" else "hub: own health"
        r["since"] = ftime(r["since"])
    bridge_now = latest_by(where(events, kind="bridge", attribute="hub_status"), ("hub",), status="value")
    out["hubbridge_overview"] = {
        "ds_changes": table(["count"], [{"count": len(events)}]),
        "ds_hubs": table(["hubs"], [{"hubs": len({e["hub"] for e in events})}]),
        "ds_devices": table(["devices"], [{"devices": len({(e["hub"], e["device_id"]) for e in dev})}]),
        "ds_offline": table(["offline"], [{"offline": sum(r["status"] == "offline" for r in bridge_now)}]),
        "ds_per_hub": timechart(events, 900, "hub", _count, **tc),
        "ds_top_devices": table(["device", "count"], sorted(count_by(dev, "device"), key=lambda r: -r["count"])[:10]),
        "ds_status": table(["hub", "hub_type", "seen_by", "status", "since"], status),
        "ds_kinds": table(["kind", "count"], count_by(events, "kind")),
        "ds_attrs": table(
            ["attribute", "count"], sorted(count_by(events, "attribute"), key=lambda r: -r["count"])[:10]
        ),
    }

    # ---------------------------------------------------------------------------------------- Devices
    battery = sorted(
        latest_by(where(dev, common_attribute="battery"), ("device",), battery="value_num"), key=lambda r: r["battery"]
    )
    silent = latest_by(dev, ("hub", "room", "device"), last_seen="_time")
    for r in silent:
        r["silent_hours"] = round((now - r["last_seen"]) / 3600, 1)
        r["last_seen"] = ftime(r["last_seen"])
    silent = sorted((r for r in silent if r["silent_hours"] > 6), key=lambda r: -r["silent_hours"])
    last = latest_by(dev, ("hub", "room", "device", "attribute"), value="value", unit="unit", changed="_time")
    for r in last:
        r["changed"] = ftime(r["changed"])
        r["value"] = json.dumps(r["value"]) if isinstance(r["value"], dict | list) else r["value"]
    last.sort(key=lambda r: (r["hub"], r["room"] or "", r["device"] or "", r["attribute"]))
    variables = latest_by(
        where(events, kind="variable"), ("hub", "attribute"), value="value", previous="previous", changed="_time"
    )
    for r in variables:
        r["variable"] = r.pop("attribute")
        r["changed"] = ftime(r["changed"])
    out["hubbridge_devices"] = {
        "ds_battery": table(["device", "battery"], battery),
        "ds_silent": table(["hub", "room", "device", "last_seen", "silent_hours"], silent),
        "ds_last": table(["hub", "room", "device", "attribute", "value", "unit", "changed"], last),
        "ds_vars": table(["hub", "variable", "value", "previous", "changed"], variables),
    }

    # ---------------------------------------------------------------------------------------- Climate
    climate: dict[str, Table] = {}
    for m in ("temperature", "humidity"):
        climate[f"ds_m_{m}"] = timechart(
            where(metrics, metric_name=(m, f"measure_{m}")), 900, "room", _avg("_value"), **tc
        )
        climate[f"ds_e_{m}"] = timechart(where(dev, common_attribute=m), 900, "room", _avg("value_num"), **tc)
    readings = latest_by(
        where(dev, common_attribute=("temperature", "humidity", "thermostatSetpoint")),
        ("hub", "room", "common_attribute"),
        reading="value_num",
    )
    cols = sorted({r["common_attribute"] for r in readings})
    rooms: dict[str, Row] = {}
    for r in readings:
        rooms.setdefault(r["room"], {"room": r["room"]})[r["common_attribute"]] = r["reading"]
    climate["ds_now"] = table(["room", *cols], sorted(rooms.values(), key=lambda r: r["room"]))
    out["hubbridge_climate"] = climate

    # ---------------------------------------------------------------------------------------- Security
    sec = where(dev, common_attribute=("contact", "lock", "motion", "presence"))
    timeline = [
        {
            "_time": iso(e["_time"]),
            "common_attribute": e["common_attribute"],
            "state": f"{e['device']}: {e['common_value']}",
        }
        for e in sec
    ]
    state = latest_by(
        where(dev, common_attribute=("contact", "lock", "presence", "water")),
        ("hub", "room", "device", "common_attribute"),
        state="common_value",
        since="_time",
    )
    for r in state:
        r["since"] = ftime(r["since"])
    state.sort(key=lambda r: (r["common_attribute"], r["room"]))
    modes = [
        dict(e, time=ftime(e["_time"]))
        for e in reversed(where(events, kind="location", attribute=("mode", "hsmStatus", "hsmAlert")))
    ]
    log = [
        dict(e, time=ftime(e["_time"]))
        for e in reversed(where(dev, common_attribute=("contact", "lock", "motion", "presence", "water")))
    ]
    out["hubbridge_security"] = {
        "ds_timeline": table(["_time", "common_attribute", "state"], timeline),
        "ds_per_hour": timechart(
            where(dev, common_attribute=("contact", "lock", "motion", "presence", "water")),
            3600,
            "common_attribute",
            _count,
            **tc,
        ),
        "ds_state": table(
            ["hub", "room", "device", "sensor", "state", "since"],
            [dict(r, sensor=r["common_attribute"]) for r in state],
        ),
        "ds_modes": table(["time", "hub", "attribute", "value", "previous"], modes),
        "ds_security_log": table(
            ["time", "hub", "room", "device", "sensor", "state"],
            [dict(e, sensor=e["common_attribute"], state=e["common_value"]) for e in log[:200]],
        ),
    }

    # ---------------------------------------------------------------------------------------- Hub health
    hub = where(events, kind="hub")
    health: dict[str, Table] = {}
    for attr in ("free_os_memory", "cpu_load_5m", "internal_temperature", "database_size"):
        health[f"ds_{attr}"] = timechart(where(hub, attribute=attr), 600, "hub", _latest("value_num"), **tc)
    health["ds_heap"] = timechart(
        where(hub, attribute=("java_heap_free", "java_heap_total", "java_direct")),
        600,
        "attribute",
        _latest("value_num"),
        **tc,
    )
    radios = latest_by(
        where(hub, attribute=("hub_status", "zigbee_status", "zwave_status", "cloud_status")),
        ("hub", "attribute"),
        status="value",
        since="_time",
    )
    for r in radios:
        r["since"] = ftime(r["since"])
    health["ds_radios"] = table(["hub", "attribute", "status", "since"], radios)
    degraded = [dict(e, time=ftime(e["_time"])) for e in reversed(where(hub, attribute="hub_status"))]
    health["ds_degraded"] = table(["time", "hub", "value", "previous", "description"], degraded)
    alerts = [e for e in hub if e["attribute"].startswith("alert.") or e["attribute"] == "systemStart"]
    rows = latest_by(alerts, ("hub", "attribute"), raised="value", since="_time")
    counts = {
        (r["hub"], r["attribute"]): r["count"]
        for r in (
            {"hub": k[0], "attribute": k[1], "count": n}
            for k, n in Counter((e["hub"], e["attribute"]) for e in alerts).items()
        )
    }
    for r in rows:
        r["changes"] = counts[(r["hub"], r["attribute"])]
    rows.sort(key=lambda r: -r["since"])
    for r in rows:
        r["since"] = ftime(r["since"])
    health["ds_alerts"] = table(["hub", "attribute", "raised", "changes", "since"], rows)
    out["hubbridge_hub_health"] = health

    # ---------------------------------------------------------------------------------------- Delivery
    bridge = where(events, kind="bridge", attribute="hub_status")
    reconciled = where(events, event_source="reconcile")
    pushed = sum(e["event_source"] not in ("poll", "reconcile") for e in dev)
    up_rows = []
    for e in bridge:
        up_rows.append(dict(e, up=1 if e["value"] == "online" else 0))
    up = filldown(timechart(up_rows, 600, "hub", _latest("up"), **tc))
    out["hubbridge_delivery"] = {
        "ds_offline_count": table(["count"], [{"count": sum(e["value"] == "offline" for e in bridge)}]),
        "ds_reconciled_count": table(["count"], [{"count": len(reconciled)}]),
        "ds_pushed_share": table(["pushed_pct"], [{"pushed_pct": round(100 * pushed / len(dev), 1)}]),
        "ds_up": up,
        "ds_how": table(["event_source", "count"], count_by(events, "event_source")),
        "ds_reconcile_time": timechart(reconciled, 3600, "hub", _count, **tc),
        "ds_history": table(
            ["time", "hub", "value", "previous", "description"],
            [dict(e, time=ftime(e["_time"])) for e in reversed(bridge)],
        ),
        "ds_reconciled": table(
            ["time", "hub", "device", "attribute", "value", "previous"],
            [dict(e, time=ftime(e["_time"])) for e in reversed(reconciled)],
        ),
    }
    return out


if __name__ == "__main__":
    ev, mx = load(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(snapshots(ev, mx)), encoding="utf-8")
