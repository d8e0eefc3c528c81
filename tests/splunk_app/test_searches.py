"""The app's searches read only what hubbridge sends: a change in the event shape cannot silently break a panel.

Every search of every dashboard, alert and event type is parsed (tests/splunk_app/spl.py); each field it reads
must be a contract field (docs/events.md), an indexed field the HEC sink sends by default, a field props.conf
extracts, or one an earlier command of the same search made. ``kind``, ``hub_type`` and ``event_source`` are
compared only with values the bridge can send, and every search goes through the index macros.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from bridge.events import FIELDS, Kind, SourceName
from bridge.journal.store import Record
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig
from bridge.sinks.splunk_hec.encoder import Encoder
from bridge.splunk_app import app_dir
from tests.splunk_app.spl import analyse, read_conf

APP = app_dir()
VIEWS = sorted((APP / "default" / "data" / "ui" / "views").glob("*.xml"))
DASHBOARDS = {"overview", "devices", "climate", "security", "hub_health", "delivery"}


def _definition(path: Path) -> dict[str, typing.Any]:
    match = re.search(r"<definition><!\[CDATA\[(.*?)\]\]></definition>", path.read_text(encoding="utf-8"), re.S)
    assert match, f"{path.name}: no Dashboard Studio definition"
    result: dict[str, typing.Any] = json.loads(match.group(1))
    return result


def _searches() -> list[tuple[str, str]]:
    """(where, query) for every search in the app."""
    out = []
    for view in VIEWS:
        for key, ds in _definition(view)["dataSources"].items():
            if ds["type"] == "ds.search":
                out.append((f"{view.stem}:{key}", ds["options"]["query"]))
    for name, stanza in read_conf(APP / "default" / "savedsearches.conf").items():
        if "search" in stanza:
            out.append((f"savedsearches:{name}", stanza["search"]))
    for name, stanza in read_conf(APP / "default" / "eventtypes.conf").items():
        if "search" in stanza:
            out.append((f"eventtypes:{name}", stanza["search"]))
    return out


def _props_fields() -> set[str]:
    props = read_conf(APP / "default" / "props.conf")["hubbridge:event"]
    assert props["KV_MODE"] == "json"  # the contract fields come from the JSON itself
    fields = set()
    for key, value in props.items():
        if key.startswith("EXTRACT-"):
            fields |= set(re.findall(r"\(\?<(\w+)>", value))
        elif key.startswith("EVAL-"):
            fields.add(key[len("EVAL-") :])
        elif key.startswith("FIELDALIAS-"):
            fields |= set(re.findall(r"\bAS\s+(\w+)", value, re.IGNORECASE))
    return fields


def _metric_dimensions() -> set[str]:
    """The dimensions a real metrics-mode envelope carries (everything in `fields` but the metric itself)."""
    cfg = SplunkHecSinkConfig.model_validate(
        {
            "name": "s",
            "type": "splunk_hec",
            "url": "http://127.0.0.1:1",
            "token": "t",
            "metrics": "only",
            "metrics_index": "m",
        }
    )
    event = dict.fromkeys(FIELDS, "x") | {"time": 1.0, "attribute": "temperature", "value": 21.5}
    [envelope] = Encoder(cfg).envelopes(Record(1, "x", json.dumps(event)))
    return {k for k in json.loads(envelope)["fields"] if not k.startswith("metric_name:")}


MACROS = {
    name: stanza["definition"]
    for name, stanza in read_conf(APP / "default" / "macros.conf").items()
    if "definition" in stanza
}
# The contract's `source` shares its name with Splunk's own field (the envelope source): props.conf extracts it
# as event_source, and a search that says `source` would read the envelope's.
KNOWN = (set(FIELDS) - {"source"}) | _props_fields()
INDEXED = set(SplunkHecSinkConfig.model_fields["fields"].get_default(call_default_factory=True))
DIMENSIONS = _metric_dimensions()
ALLOWED_VALUES = {
    "kind": set(typing.get_args(Kind)),
    "event_source": set(typing.get_args(SourceName)),
    "hub_type": {"hubitat", "homey"},
}


def test_the_six_dashboards_exist_and_the_nav_shows_them() -> None:
    """Overview, Devices, Climate, Security, Hub health and Delivery are Dashboard Studio views in the app's menu."""
    assert {v.stem.removeprefix("hubbridge_") for v in VIEWS} == DASHBOARDS
    nav = (APP / "default" / "data" / "ui" / "nav" / "default.xml").read_text(encoding="utf-8")
    assert set(re.findall(r'<view name="hubbridge_(\w+)"', nav)) == DASHBOARDS
    for view in VIEWS:
        assert '<dashboard version="2"' in view.read_text(encoding="utf-8")


@pytest.mark.parametrize(("where", "query"), _searches(), ids=[w for w, _ in _searches()])
def test_every_field_a_search_reads_is_one_hubbridge_sends(where: str, query: str) -> None:
    """Each field is a contract field, an indexed field (tstats), a metric dimension (mstats), a props.conf
    extraction or made earlier in the same search; compared values are ones the bridge sends."""
    usage = analyse(query, MACROS, KNOWN, indexed=INDEXED, dimensions=DIMENSIONS)
    assert not usage.problems, usage.problems
    assert not usage.unknown, f"{where} reads fields hubbridge does not send: {usage.unknown}"
    assert "source" not in usage.fields, f"{where}: search event_source (how the change was learned), not source"
    for name, allowed in ALLOWED_VALUES.items():
        assert usage.values.get(name, set()) <= allowed, f"{where}: {name} is never {usage.values[name] - allowed}"
    if not where.startswith("eventtypes:"):
        # The index is named in the macros only, so a user with other index names edits one place.
        assert "index=" not in query and "`hubbridge_" in query, f"{where} does not go through the index macros"


def test_the_checker_catches_a_field_the_bridge_does_not_send() -> None:
    """A panel reading a renamed field (`device_name`), the envelope `source`, or an unindexed field in tstats is
    reported: the check above can fail."""
    bad = analyse(
        "`hubbridge_events` | stats count by device_name", MACROS, KNOWN, indexed=INDEXED, dimensions=DIMENSIONS
    )
    assert bad.unknown == ["device_name (in stats)"]
    assert (
        "source"
        in analyse("`hubbridge_events` source=reconcile", MACROS, KNOWN, indexed=INDEXED, dimensions=DIMENSIONS).fields
    )
    tstats = analyse(
        "| tstats count where `hubbridge_index` by device", MACROS, KNOWN, indexed=INDEXED, dimensions=DIMENSIONS
    )
    assert tstats.unknown == ["device (in tstats)"]
    after_stats = analyse(
        "`hubbridge_events` | stats count by hub | table hub device",
        MACROS,
        KNOWN,
        indexed=INDEXED,
        dimensions=DIMENSIONS,
    )
    assert after_stats.unknown == ["device (in table)"]


def test_the_climate_dashboard_reads_metrics_with_mstats() -> None:
    """Temperature and humidity (Hubitat's names and Homey's capabilities) come from the metrics index by room (a
    dimension the sink sends) with mstats."""
    queries = [
        ds["options"]["query"]
        for ds in _definition(APP / "default/data/ui/views/hubbridge_climate.xml")["dataSources"].values()
    ]
    metrics = set()
    for q in queries:
        if q.startswith("| mstats"):
            usage = analyse(q, MACROS, KNOWN, indexed=INDEXED, dimensions=DIMENSIONS)
            metrics |= usage.metrics
            assert "room" in usage.fields
    assert metrics == {"temperature", "humidity", "measure_temperature", "measure_humidity"}
    assert "room" in DIMENSIONS
