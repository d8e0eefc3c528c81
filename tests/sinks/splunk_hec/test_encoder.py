"""HEC envelopes (bridge.sinks.splunk_hec.encoder), built without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.journal import Record
from bridge.sinks.splunk_hec.encoder import Encoder
from tests.sinks.splunk_hec.test_sink import event, hec_config


@pytest.mark.parametrize(
    "options",
    [{"index": "x"}, {"fields": ["device", "room", "hub"], "host": 'h"1', "source": "s\\2"}],
    ids=["defaults", "overrides"],
)
def test_spliced_envelope_equals_the_parsed_one_for_awkward_text(options: dict[str, Any]) -> None:
    """The fast path splices raw JSON; it must say exactly what parsing and re-encoding would say."""
    config = hec_config("http://127.0.0.1:9", **options)
    fast = Encoder(config)
    assert fast._fast
    slow = Encoder(config)
    slow._fast = False
    awkward = [
        event(hub='ha"ll\\', device='Ünïcødé "lamp"', room=None, device_id=None),
        event(attribute='temp,"value":1', device='a,"time":2,', description="\n\t\u2028"),
        event(time=1_760_000_000, value={"nested": [1, 2]}, previous=None, hub="h\u00e9"),
        event(device_id="42", kind="location", attribute="mode", value="Night"),
    ]
    for i, ev in enumerate(awkward):
        record = Record(i + 1, ev.id, ev.to_json())
        (spliced,) = fast.envelopes(record)
        (parsed,) = slow.envelopes(record)
        assert json.loads(spliced) == json.loads(parsed)
        assert json.loads(spliced)["event"] == ev.to_dict()
    # Lines not in Event.to_json() layout still get a correct envelope (the parsing path).
    for odd in [
        {"hub": "h", "id": "x", "time": 5.5, "attribute": "a", "kind": "device", "value": 1},
        {"id": "x", "time": 5.5, "kind": "device", "hub": "h", "attribute": "a", "value": 1, "room": "r"},
        {"id": "x", "time": 5.5, "hub": "h", "attribute": "a", "value": 1, "kind": "device", "device": "d"},
    ]:
        record = Record(99, "x", json.dumps(odd, separators=(",", ":")))
        assert json.loads(fast.envelopes(record)[0]) == json.loads(slow.envelopes(record)[0])
