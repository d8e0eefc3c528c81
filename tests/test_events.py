"""The event contract's encoding (bridge.events): what can reach the journal, and what is refused, without I/O."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bridge.events import MAX_DEPTH, MAX_EVENT_BYTES, Event, EventRefused, clean_text, encode_event, event_id
from tests.helpers import CONTRACT_FIELDS


def event(value: Any, **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "id": "x",
        "time": 1.5,
        "hub": "home",
        "hub_type": "hubitat",
        "kind": "device",
        "device_id": "1",
        "device": "Lamp",
        "room": None,
        "attribute": "a",
        "value": value,
        "previous": None,
        "unit": None,
        "source": "poll",
        "description": None,
    }
    fields.update(kw)
    return Event(**fields)


def test_a_line_is_the_contract_in_order_and_its_size_is_utf8_bytes() -> None:
    """The JSON line holds the 14 contract fields in order, UTF-8 unescaped, and its size counts bytes."""
    text, size = encode_event(event(21.5, unit="°C"))
    assert list(json.loads(text)) == CONTRACT_FIELDS
    assert "°C" in text and size == len(text.encode("utf-8")) > len(text)


@pytest.mark.parametrize(
    "bad",
    [math.nan, -math.inf, {"a": [math.inf]}, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
)
def test_values_that_are_not_json_are_refused_with_a_reason(bad: Any) -> None:
    """NaN, Infinity and nesting beyond the limit are refused, saying why, instead of failing a whole commit."""
    with pytest.raises(EventRefused) as info:
        encode_event(event(bad))
    assert "not JSON" in str(info.value) or f"deeper than {MAX_DEPTH}" in str(info.value)


def test_an_event_over_the_size_limit_is_refused() -> None:
    """An event larger than MAX_EVENT_BYTES (in bytes, so multi-byte text counts as it should) is refused."""
    encode_event(event("é" * (MAX_EVENT_BYTES // 2 - 400)))
    with pytest.raises(EventRefused, match="byte limit"):
        encode_event(event("é" * (MAX_EVENT_BYTES // 2)))


def test_lone_surrogates_are_made_storable_everywhere() -> None:
    """Half an emoji in any text field or inside a value becomes U+FFFD, and the event says so itself."""
    ev = event({"k\ud83d": ["v\udc00"]}, device="Lamp \ud83d", description="\ud83d!")
    text, _ = encode_event(ev)
    text.encode("utf-8")
    assert json.loads(text)["value"] == {"k\ufffd": ["v\ufffd"]}
    assert (ev.device, ev.description) == ("Lamp \ufffd", "\ufffd!")
    assert clean_text("plain ascii") == "plain ascii"


def test_ids_survive_any_text() -> None:
    """An id can be made for a change whatever text its device id holds (a lone surrogate included)."""
    assert len(event_id("i", "home", "device", "\ud83d", "a", 1)) == 32
