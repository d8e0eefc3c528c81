"""Hubitat values and pushed events as pure functions (sources.hubitat.values, bridge.jsontext), no sockets."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bridge.jsontext import NotJson, loads
from bridge.sim.hubitat import fixture_json
from bridge.sources.hubitat.values import coerce, post_content, pushed


@pytest.mark.parametrize(
    ("raw", "data_type", "typed"),
    [
        ("29.0", "NUMBER", 29.0),
        ("73", "NUMBER", 73),
        (" 5 ", "DECIMAL", 5),
        ("dc", "NUMBER", "dc"),  # a non-number in a numeric field stays text (hacs-hubitat #246)
        ("NaN", "NUMBER", "NaN"),
        ("Infinity", "DECIMAL", "Infinity"),
        (math.nan, "NUMBER", "nan"),
        ("true", "BOOL", True),
        ("False", "BOOL", False),
        ("maybe", "BOOL", "maybe"),
        ('{"a":1}', "JSON_OBJECT", {"a": 1}),
        ('{"a":NaN}', "JSON_OBJECT", {"a": "NaN"}),
        ("[" * 40 + "]" * 40, "JSON_OBJECT", "[" * 40 + "]" * 40),  # too deep to be a value: kept as text
        ("not json", "JSON_OBJECT", "not json"),
        ("fanAuto", "ENUM", "fanAuto"),
        ("null", "STRING", None),
        ("30.5", None, 30.5),  # type not learned yet: a number is guessed, so it stays stable
        ("1_000", "NUMBER", "1_000"),  # Python's int() would take these; no hub writes them
        ("\uff11\uff12", "NUMBER", "\uff11\uff12"),
        ("-" + "9" * 5000 + "x", "NUMBER", "-" + "9" * 5000 + "x"),  # found by the fuzzer: once 4 s of regex
        ("on", None, "on"),
    ],
)
def test_values_are_typed_by_data_type_and_never_become_nan(raw: Any, data_type: str | None, typed: Any) -> None:
    """dataType decides the value's type; off-type text stays text; no NaN or Infinity ever comes out as a number."""
    out = coerce(raw, data_type)
    assert out == typed and type(out) is type(typed)


def test_hub_json_is_parsed_whatever_it_holds() -> None:
    """loads() refuses what is not JSON with NotJson (never RecursionError), cleans lone surrogates, keeps numbers
    too large for a float or an int as their text."""
    assert loads('{"v": "\\ud83d\\ude00", "w": "\\ud83d"}') == {"v": "😀", "w": "\ufffd"}
    assert loads('{"big": ' + "1" * 5000 + ', "huge": 1e400}') == {"big": "1" * 5000, "huge": "1e400"}
    for bad in ("<html>", "[" * 100_000, '{"a":'):
        with pytest.raises(NotJson):
            loads(bad)


def test_post_url_bodies_are_the_content_object_or_a_reason() -> None:
    """A POST-URL body gives its content object; anything else gives why it is not one."""
    body = fixture_json("postURL_events.json")["device"]
    assert post_content(json.dumps(body).encode())["name"] == "switch"
    assert "not JSON" in str(post_content(b"<html>"))
    assert post_content(b'{"no": 1}') == 'expected {"content": {"name": ..., "value": ...}}'
    assert "not JSON" in str(post_content(b'{"content":' + b"[" * 2000 + b"]" * 2000 + b"}"))


@pytest.mark.parametrize(
    ("obj", "kind", "device_id"),
    [
        ({"source": "DEVICE", "name": "switch", "value": "on", "deviceId": 176}, "device", "176"),
        ({"name": "switch", "value": "on", "deviceId": "176"}, "device", "176"),  # POST-URL: no source
        ({"source": "LOCATION", "name": "mode", "value": "Night", "deviceId": 0}, "location", None),
        ({"name": "hsmStatus", "value": "armedAway", "deviceId": None}, "location", None),
        ({"source": "LOCATION", "name": "systemStart", "value": "2.4.4.156", "deviceId": 0}, "hub", None),
        ({"source": "APP", "name": "x", "value": "1", "deviceId": 0}, None, None),
        ({"value": "no name"}, None, None),
    ],
)
def test_pushed_events_are_told_apart(obj: dict[str, Any], kind: str | None, device_id: str | None) -> None:
    """Device, location and hub events are recognised on both push paths; app events and nameless ones are not."""
    p = pushed(obj, "eventsocket", 1.0)
    if kind is None:
        assert p is None
    else:
        assert p is not None and (p.kind, p.device_id) == (kind, device_id)
