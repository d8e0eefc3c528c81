"""Fuzz tests of every Hubitat input parser: eventsocket messages, POST-URL bodies and Maker API answers.

What is fuzzed, always through the bridge's own code (no sockets):

* eventsocket: sessions of messages fed in order through one :class:`FrameParser` (whole frames, frames split into
  2-4 parts, duplicates, several frames in one message, mutated frames, garbage between), each frame then through
  ``pushed`` and ``HubitatSource._typed`` (typing by learned dataTypes, loaded from a random type book);
* POST-URL: bodies (bytes) through ``post_content``, then ``pushed`` and ``_typed``;
* Maker API: ``/devices/all``, ``/devices/<id>``, ``/modes`` and ``/hsm`` answers (bytes) through the real
  ``MakerApi.get`` (over a fake session), ``TypeBook.learn`` and ``HubitatSource.poll``; every value of the answers
  also through ``coerce`` under every dataType.

Every reading is then diffed (:class:`Differ`) and encoded with ``encode_event`` as the pipeline does. Properties:
no exception but the documented refusals (``NotJson``, a string from ``post_content``, ``HubError`` from a poll,
``EventRefused`` from ``encode_event``); no NaN/Infinity float and no lone surrogate in any parsed value; every
encoded event is JSON with the contract's fields, valid UTF-8, within MAX_EVENT_BYTES; the parser never holds more
than ``max_pending`` characters; problem snippets stay short; a whole valid frame is found whatever came before it,
a split frame is re-joined, and an unmutated fixture input gives what its plain JSON parse gives.

How: a mutation fuzzer of our own, not hypothesis. Inputs start from the fixtures (the verbatim payloads in
``bridge/sim/hubitat/data`` plus frames, bodies and answers the simulator renders from them) and are mutated at two
levels: in the JSON tree (a field set to a nasty value or a raw JSON token such as ``NaN``, ``1e400`` or 1000
levels of ``[``, a key added or dropped) and in the text or bytes (insertions, deletions, duplicated spans, cuts,
splices, invalid UTF-8). ``random.Random(SEED)`` and fixed input counts make every run check exactly the same
inputs, so a failure reproduces; ``bench/fuzz_hubitat.py`` runs the same generators for as long as asked. Reasons
for not using hypothesis: the interesting inputs are structural mutations of real payloads and splits of a message
*sequence*, which a few lines of our own express directly; its shrinking and example database matter little when
the failing input is printed and reproducible by seed; and the script can share these generators without
depending on hypothesis's engine to run for a wall-clock budget.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import math
import random
import re
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast
from urllib.parse import unquote

from bridge.backoff import RateLimitedLog
from bridge.diff import Differ
from bridge.errors import HubError
from bridge.events import FIELDS, MAX_EVENT_BYTES, EventRefused, Reading, dumps, encode_event, shorten
from bridge.jsontext import NotJson, loads, raw_decode
from bridge.sim.hubitat import default_devices, fixture_json, fixture_text
from bridge.sim.hubitat.eventsocket import event_frame
from bridge.sim.hubitat.model import device_from_spec
from bridge.sim.hubitat.render import all_item, detail
from bridge.sim.hubitat.state import HubEvent
from bridge.sim.hubitat.values import wire_string
from bridge.sources.hubitat.client import MakerApi
from bridge.sources.hubitat.config import HubitatConfig
from bridge.sources.hubitat.eventsocket import MAX_PENDING, FrameParser
from bridge.sources.hubitat.hub import HubitatSource
from bridge.sources.hubitat.types import TypeBook
from bridge.sources.hubitat.values import coerce, post_content, pushed

SEED = 20250601
HUB = "fuzz"
DATA_TYPES = (None, "NUMBER", "DECIMAL", "INTEGER", "BOOL", "JSON_OBJECT", "ENUM", "STRING", "DATE", "VECTOR3")
# A second parser per session with a small limit reaches "over max_pending" often without megabyte inputs.
SMALL_PENDING = 4096
# Problem snippets are for a log line: the parser cuts them to ~80 characters plus a count.
MAX_PROBLEM = 300
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


# ------------------------------------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Corpus:
    """Valid inputs from the fixtures: eventsocket frames, POST-URL bodies, Maker API answers by path."""

    frames: tuple[str, ...]
    posts: tuple[bytes, ...]
    maker: tuple[dict[str, bytes], ...]
    # (device id, attribute) pairs the frames and bodies carry, to build random type books.
    attributes: tuple[tuple[str, str], ...]


def _hub_event(source: str, name: str, value: str | None, label: str | None, did: str | None, **kw: Any) -> HubEvent:
    return HubEvent(
        source=source,
        name=name,
        value=value,
        display_name=label,
        device_id=did,
        int_device_id=int(did) if did else 0,
        description=kw.get("description"),
        unit=kw.get("unit"),
        event_type=kw.get("event_type"),
        data=None,
    )


def _post_body(e: HubEvent) -> bytes:
    content = {
        "name": e.name,
        "value": e.value,
        "displayName": e.display_name,
        "deviceId": e.device_id,
        "descriptionText": e.description,
        "unit": e.unit,
        "type": e.event_type,
        "data": e.data,
    }
    return json.dumps({"content": content}).encode()


@functools.cache
def corpus() -> Corpus:
    """The fixtures verbatim, plus what the simulator renders from its fixture-built default devices."""
    frames = [line for line in fixture_text("eventsocket_frames.txt").splitlines() if line.strip()]
    posts = [json.dumps(body).encode() for body in fixture_json("postURL_events.json").values()]
    posts.append(json.dumps({"content": fixture_json("postURL_content_2020.json")}).encode())
    attributes: set[tuple[str, str]] = set()
    for line in frames:
        obj = json.loads(line)
        attributes.add((str(obj.get("deviceId")), obj["name"]))
    devices = [device_from_spec(spec) for spec in default_devices()]
    events: list[HubEvent] = []
    for dev in devices:
        for attr in dev.attributes.values():
            value = wire_string(attr.value)
            description = f"{dev.label} {attr.name} is {value}"
            events.append(
                _hub_event("DEVICE", attr.name, value, dev.label, dev.id, unit=attr.unit, description=description)
            )
            attributes.add((dev.id, attr.name))
    events += [
        _hub_event("LOCATION", "mode", "Evening", "Home", None, description="Home is now in Evening mode"),
        _hub_event("LOCATION", "hsmStatus", "armedAway", "Home", None, description="hsmEvent"),
        _hub_event("LOCATION", "hsmAlert", "intrusion", "Home", None),
        _hub_event("HUB", "systemStart", "2.4.4.156", "Home", None, description="System startup with build: 2.4.4.156"),
    ]
    for i, e in enumerate(events):
        frames.append(event_frame(e, omit_type=i % 5 == 0))
        posts.append(_post_body(e))
    simple = {"modes": fixture_text("modes.json").encode(), "hsm": fixture_text("hsm.json").encode()}
    verbatim = {
        "devices/all": fixture_text("devices_all.json").encode(),
        "devices/130": fixture_text("device_switch_130.json").encode(),
        **simple,
    }
    rendered = {
        "devices/all": json.dumps([all_item(d) for d in devices]).encode(),
        **{f"devices/{d.id}": json.dumps(detail(d)).encode() for d in devices},
        **simple,
    }
    # The verbatim details of 6, 32 and 176 (duplicate "switch") and the lock, under the rendered /devices/all.
    with_fixture_details = dict(rendered)
    for did, body in fixture_json("device_details.json").items():
        with_fixture_details[f"devices/{did}"] = json.dumps(body).encode()
    with_fixture_details["devices/93"] = fixture_text("device_lock.json").encode()
    trv = {"devices/all": b"[" + fixture_text("devices_all_trv_item.json").encode() + b"]", **simple}
    return Corpus(
        frames=tuple(frames),
        posts=tuple(posts),
        maker=(verbatim, rendered, with_fixture_details, trv),
        attributes=tuple(sorted(attributes)),
    )


# ------------------------------------------------------------------------------------------------ the mutator


def _deep(rng: random.Random) -> str:
    depth = rng.choice((31, 32, 33, 34, 100, 500, 900, rng.randint(950, 1010), 1000, 5000))
    kind = rng.random()
    if kind < 0.4:
        return "[" * depth + "]" * depth
    if kind < 0.8:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth  # never closed


# Raw JSON value texts the team found or that sit on a boundary; the big ones are drawn rarely (they are slow).
TOKENS: tuple[str, ...] = (
    "NaN",
    "Infinity",
    "-Infinity",
    '"NaN"',
    '"Infinity"',
    '"-Infinity"',
    "1e400",
    "-1e400",
    "1E+999",
    "1e-400",
    "-0",
    "-0.0",
    "0",
    "1.5",
    "9007199254740993",
    "1" * 400 + ".5",
    "9" * 4300,
    "9" * 4301,
    "-" + "9" * 5000,
    '"\\ud83d"',
    '"a\\ud83db"',
    '"\\udc00\\ud83d"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\""',
    '"\\\\"',
    json.dumps('{"a":NaN}'),
    json.dumps('{"a":Infinity,"b":[-Infinity]}'),
    json.dumps('{"x":1e400,"y":"\\ud83d"}'),
    json.dumps("[" * 1000 + "]" * 1000),
    json.dumps("[NaN]"),
    json.dumps('{"1":{"code":"0000","name":"AJ"}}'),
    "null",
    '"null"',
    "true",
    "false",
    '"true"',
    '" TRUE "',
    '"29.0"',
    '" 30.5 "',
    '"1e400"',
    '"0x1F"',
    '"1_000"',
    "[]",
    "{}",
    '""',
    '" "',
    '"é中😀"',
    '"\\u2028\\t\\n"',
    '{"name":"switch","value":"on"}',
    "[1,[2,[3]]]",
)
BIG_TOKENS: tuple[Callable[[random.Random], str], ...] = (
    _deep,
    lambda rng: '"' + "x" * 200_000 + '"',
    lambda rng: '"' + "9" * 200_000 + '"',
    lambda rng: "9" * 200_000,
    lambda rng: '"' + "v" * 900_000 + '"',
    lambda rng: json.dumps("\ud83d" * 1000),
    lambda rng: '"' + "\\ud83d" * 20_000 + '"',
)
# Python values for a field (the tree mutation serialises them).
VALUES: tuple[Any, ...] = (
    0,
    "0",
    None,
    "null",
    False,
    True,
    [],
    {},
    1.5,
    -1,
    2**70,
    "",
    "176",
    "DEVICE",
    "LOCATION",
    "HUB",
    "APP",
    "switch",
    "systemStart",
    "hsmAlert",
    "pushed",
    "NUMBER",
    "JSON_OBJECT",
    "BOOL",
    ["on", "off"],
    {"name": "x"},
    [{"name": "temperature", "currentValue": "NaN", "dataType": "NUMBER"}],
)
KEYS = (
    "name",
    "value",
    "deviceId",
    "source",
    "displayName",
    "unit",
    "descriptionText",
    "content",
    "id",
    "label",
    "attributes",
    "currentValue",
    "dataType",
    "active",
    "hsm",
    "room",
)
_SCALAR = re.compile(r'(:\s*)("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null)')
_ALPHABET = '{}[]":,\\ \t\r\n0123456789.eE+-nultrfaNIy/éü中😀\u2028\x00\x7f\ufeff'
_PLACEHOLDER = "\x01{}\x01"


class Mutator:
    """Turns a valid input into a nasty one: tree mutations with raw JSON tokens, then text or byte mutations."""

    def __init__(self, rng: random.Random, corpus: Corpus, big: float = 0.02) -> None:
        self.rng = rng
        self.corpus = corpus
        self.big = big  # chance that a token is one of the big ones

    def token(self) -> str:
        if self.rng.random() < self.big:
            return self.rng.choice(BIG_TOKENS)(self.rng)
        return self.rng.choice(TOKENS)

    # ---------------------------------------------------------------- in the JSON tree

    def tree(self, text: str) -> str:
        """``text`` (JSON) with 1-3 fields replaced, added or dropped, re-serialised with random spacing."""
        rng = self.rng
        obj = json.loads(text)
        tokens: list[str] = []
        for _ in range(rng.randint(1, 3)):
            obj = self._tree_once(obj, tokens)
        out = json.dumps(
            obj,
            ensure_ascii=rng.random() < 0.3,
            separators=rng.choice(((",", ":"), (", ", ": "), (",", " : "))),
        )
        for i, token in enumerate(tokens):
            out = out.replace(json.dumps(_PLACEHOLDER.format(i)), token, 1)
        return out

    def _replacement(self, tokens: list[str]) -> Any:
        if self.rng.random() < 0.6:
            tokens.append(self.token())
            return _PLACEHOLDER.format(len(tokens) - 1)
        return copy.deepcopy(self.rng.choice(VALUES))

    def _tree_once(self, obj: Any, tokens: list[str]) -> Any:
        rng = self.rng
        slots: list[tuple[Any, Any]] = []
        dicts: list[dict[str, Any]] = []
        stack = [obj]
        while stack and len(slots) < 500:
            node = stack.pop()
            if isinstance(node, dict):
                dicts.append(node)
                for k, v in node.items():
                    slots.append((node, k))
                    stack.append(v)
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    slots.append((node, i))
                    stack.append(v)
        op = rng.random()
        if slots and op < 0.6:
            container, key = rng.choice(slots)
            container[key] = self._replacement(tokens)
        elif dicts and op < 0.8:
            rng.choice(dicts)[rng.choice(KEYS)] = self._replacement(tokens)
        elif slots and op < 0.9:
            container, key = rng.choice(slots)
            if isinstance(container, dict):
                del container[key]
            else:
                container.pop(key)
        elif slots and op < 0.97:
            (c1, k1), (c2, k2) = rng.choice(slots), rng.choice(slots)
            c1[k1] = copy.deepcopy(c2[k2])  # a value where another type belongs
        else:
            return self._replacement(tokens) if rng.random() < 0.5 else [obj]
        return obj

    # ---------------------------------------------------------------- in the text

    def text(self, text: str) -> str:
        """``text`` with 1-4 text-level mutations (most make it invalid JSON)."""
        for _ in range(self.rng.randint(1, 4)):
            text = self._text_once(text)
        return text

    def _text_once(self, text: str) -> str:
        rng = self.rng
        n = len(text)
        pos = rng.randint(0, n)
        op = rng.random()
        if op < 0.25:
            piece = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 4)))
            return text[:pos] + piece + text[pos:]
        if op < 0.35:
            return text[:pos] + self.token() + text[pos:]
        if op < 0.5:
            end = min(n, pos + rng.randint(1, 12))
            return text[:pos] + text[end:]
        if op < 0.6:
            end = min(n, pos + rng.randint(1, 40))
            return text[:end] + text[pos:]  # a span twice
        if op < 0.7:
            return text[:pos]  # cut
        if op < 0.8:
            other = rng.choice(self.corpus.frames)
            return text[:pos] + other[rng.randint(0, len(other)) :]  # splice
        if op < 0.9:
            matches = list(_SCALAR.finditer(text))
            if matches:
                m = rng.choice(matches)
                return text[: m.start(2)] + self.token() + text[m.end(2) :]
            return text
        if n and op < 0.95:
            return text[:pos] + rng.choice(_ALPHABET) + text[pos + 1 :]
        return text * rng.randint(2, 3)

    def garbage(self) -> str:
        """A message that is no frame at all: a lone quote, a fragment, junk, a big run of junk."""
        rng = self.rng
        op = rng.random()
        if op < 0.3:
            return rng.choice(
                ('"', "{", "}", "[", "]", ",", ":", "null", "0", "\\", '{"', '"}', " ", "\n", "[{", '{"a":')
            )
        if op < 0.55:
            frame = rng.choice(self.corpus.frames)
            cut = rng.randint(1, len(frame) - 1)
            return frame[:cut] if rng.random() < 0.5 else frame[cut:]
        if op < 0.75:
            return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 60)))
        if op < 0.9:
            return self.token()
        piece = rng.choice(("{", '{"', "{x", '{"a"', '{"a":{', "[{", '"', "{}x", "x"))
        size = rng.choice((1_000, 10_000)) if rng.random() > self.big else rng.choice((100_000, 1_000_000))
        return piece * (size // len(piece))

    # ---------------------------------------------------------------- bytes

    def body(self, body: bytes) -> bytes:
        """A POST or Maker API body: tree and/or text mutations, then sometimes a byte-level one."""
        rng = self.rng
        text = body.decode()
        if rng.random() < 0.7:
            text = self.tree(text)
        if rng.random() < 0.4:
            text = self.text(text)
        data = text.encode("utf-8")
        if rng.random() < 0.2:
            pos = rng.randint(0, len(data))
            junk = rng.choice((b"\xff", b"\xc3", b"\xed\xa0\xbd", b"\x00", b"\xef\xbb\xbf", b"\xf0\x9f"))
            data = data[:pos] + junk + data[pos:]
        if rng.random() < 0.02:
            data = b"\xef\xbb\xbf" + data if rng.random() < 0.5 else text.encode("utf-16")
        return data


# ------------------------------------------------------------------------------------------------ generators


class Message(NamedTuple):
    """One eventsocket message and what the parser must find when it is fed."""

    text: str
    # Frame texts that must be among this feed's frames (whole frames: always; the last part of a split frame:
    # when the parser held nothing as the first part arrived).
    expect: tuple[str, ...] = ()
    split_start: bool = False
    split_end: bool = False


def split_points(rng: random.Random, n: int, parts: int) -> list[int]:
    return sorted(rng.sample(range(1, n), min(parts - 1, n - 1)))


def split(text: str, cuts: Iterable[int]) -> list[Message]:
    """``text`` as consecutive messages cut at ``cuts``; the last one expects the whole frame."""
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    last = len(pieces) - 1
    return [
        Message(p, (text,) if i == last else (), split_start=i == 0, split_end=i == last) for i, p in enumerate(pieces)
    ]


def eventsocket_session(rng: random.Random, mut: Mutator, length: int) -> list[Message]:
    """A sequence of messages: whole, split, duplicated and concatenated frames, mutated frames, garbage between."""
    frames = mut.corpus.frames
    out: list[Message] = []
    while len(out) < length:
        frame = rng.choice(frames)
        op = rng.random()
        if op < 0.25:
            out.append(Message(frame, (frame,)))
        elif op < 0.4:
            out += split(frame, split_points(rng, len(frame), rng.randint(2, 4)))
        elif op < 0.47:
            out += [Message(frame, (frame,))] * 2  # the socket sends some frames twice (hubitat.md 2.2)
        elif op < 0.52:
            group = [rng.choice(frames) for _ in range(rng.randint(2, 4))]
            sep = rng.choice(("", " ", "\n", "\r\n"))
            out.append(Message(sep.join(group), tuple(group)))
        elif op < 0.75:
            bad = mut.tree(frame) if rng.random() < 0.7 else mut.text(frame)
            if rng.random() < 0.7:
                bad = mut.text(bad) if rng.random() < 0.3 else bad
                out.append(Message(bad))
            elif len(bad) > 1:
                out += [m._replace(expect=()) for m in split(bad, split_points(rng, len(bad), rng.randint(2, 3)))]
        else:
            out.append(Message(mut.garbage()))
    return out


def post_input(rng: random.Random, mut: Mutator) -> tuple[bytes, bool]:
    """A POST-URL body and whether it is an unmutated fixture body."""
    body = rng.choice(mut.corpus.posts)
    if rng.random() < 0.1:
        return body, True
    return mut.body(body), False


def maker_input(rng: random.Random, mut: Mutator) -> tuple[dict[str, bytes], bool]:
    """Maker API answers by path, and whether they are the unmutated fixture answers."""
    answers = dict(rng.choice(mut.corpus.maker))
    if rng.random() < 0.1:
        return answers, True
    paths = list(answers)
    for path in rng.sample(paths, rng.randint(1, min(3, len(paths)))):
        answers[path] = mut.body(answers[path])
    return answers, False


# ------------------------------------------------------------------------------------------------ the harness


class Broken(AssertionError):
    """A property does not hold."""


def check_clean(value: Any, where: str) -> int:
    """Fail unless ``value`` is clean parsed JSON: no NaN/Infinity float, no lone surrogate. Returns its depth."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        cls = v.__class__
        if cls is str:
            if not v.isascii() and _LONE_SURROGATE.search(v):
                raise Broken(f"{where}: a lone surrogate in {shorten(repr(v), 80)}")
        elif cls is float:
            if not math.isfinite(v):
                raise Broken(f"{where}: the float {v!r}")
        elif cls is dict:
            deepest = max(deepest, depth + 1)
            for k, x in v.items():
                if k.__class__ is not str or (not k.isascii() and _LONE_SURROGATE.search(k)):
                    raise Broken(f"{where}: the key {shorten(repr(k), 80)}")
                stack.append((x, depth + 1))
        elif cls is list:
            deepest = max(deepest, depth + 1)
            stack.extend((x, depth + 1) for x in v)
        elif not (v is None or cls is bool or cls is int):
            raise Broken(f"{where}: a {cls.__name__} in a parsed value")
    return deepest


def check_text(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, str):
        raise Broken(f"{where}: expected text or None, got {type(value).__name__}")


def _no_constant(name: str) -> Any:
    raise Broken(f"an encoded event holds {name}")


class Null:
    """A logger that drops everything."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class FakeHub:
    """The runner side of one hub: meta kept the way the journal keeps it (JSON without NaN), no pushes."""

    name = HUB

    def __init__(self, types: dict[str, dict[str, str | None]] | None = None) -> None:
        self.log = Null()
        self.rate_log = RateLimitedLog(Null())
        self.meta: dict[str, Any] = {} if types is None else {"types": types}

    async def push(self, readings: Any, **kwargs: Any) -> None:
        raise AssertionError("the fuzz harness types pushed events itself")

    def reconcile(self, why: str) -> None:
        pass

    def stream_state(self, stream: str, up: bool, detail: str = "") -> None:
        pass

    async def get_meta(self, key: str) -> Any:
        return self.meta.get(key)

    async def set_meta(self, key: str, value: Any) -> None:
        self.meta[key] = json.loads(json.dumps(value, allow_nan=False))  # what journal.set_meta stores


class _Content:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), n):
            yield self.body[i : i + n]


class _Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self.content_length = len(body)
        self.content = _Content(body)

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeSession:
    """Answers MakerApi's GETs from a dict of path -> body (Maker API serves JSON as text/html; 404 otherwise)."""

    def __init__(self, base: str, answers: dict[str, bytes]) -> None:
        self.base = base + "/"
        self.answers = answers
        self.asked: Counter[str] = Counter()

    def get(self, url: str, **kwargs: Any) -> _Response:
        path = unquote(url[len(self.base) :])
        self.asked[path] += 1
        body = self.answers.get(path)
        return _Response(404, b"") if body is None else _Response(200, body)


CONFIG = HubitatConfig.model_validate(
    {
        "name": HUB,
        "type": "hubitat",
        "url": "http://127.0.0.1:9",
        "app_id": 1,
        "access_token": "fuzz-token",
        "detail_spacing": 0,
    }
)


async def new_source(
    answers: dict[str, bytes] | None = None, types: dict[str, dict[str, str | None]] | None = None
) -> HubitatSource:
    """A HubitatSource wired to a fake session and a type book loaded from ``types`` (no sockets, no open())."""
    hub = FakeHub(types)
    source = HubitatSource(CONFIG, hub)
    api = MakerApi(CONFIG, cast(Any, FakeSession(f"{CONFIG.url}/apps/api/{CONFIG.app_id}", answers or {})))
    source._api = api
    source._types = TypeBook(api, hub, spacing=0.0, park_timeout=5.0)
    await source._types.load()
    return source


def check_reading(r: Reading, where: str) -> None:
    if r.kind not in ("device", "location", "hub"):
        raise Broken(f"{where}: kind {r.kind!r}")
    if not isinstance(r.attribute, str) or not r.attribute:
        raise Broken(f"{where}: attribute {r.attribute!r}")
    for name in ("device_id", "device", "room", "unit", "description"):
        check_text(getattr(r, name), f"{where}: {name}")
    check_clean(r.value, f"{where}: reading value")


def journal(differ: Differ, readings: list[Reading], where: str) -> tuple[int, int]:
    """Diff and encode ``readings`` as the pipeline does; (events encoded, events refused). EventRefused only."""
    for r in readings:
        check_reading(r, where)
    diff = differ.diff(HUB, "hubitat", readings)
    encoded = refused = 0
    i = 0
    while i < len(diff.events):
        ev = diff.events[i]
        try:
            line, size = encode_event(ev)
            dumps(ev.value)  # the pipeline stores the value as the attribute's state row too
        except EventRefused:
            differ.refuse(diff, i)
            refused += 1
            continue
        if size > MAX_EVENT_BYTES or size != len(line.encode("utf-8")):
            raise Broken(f"{where}: an encoded event of {size} bytes")
        back = json.loads(line, parse_constant=_no_constant)
        if list(back) != list(FIELDS):
            raise Broken(f"{where}: encoded fields {list(back)}")
        encoded += 1
        i += 1
    differ.settle(diff, ok=True)
    return encoded, refused


@dataclass
class Failure:
    parser: str
    index: int
    input: str
    error: str
    raw: Any = None  # the whole input, when the fuzzer keeps inputs


@dataclass
class Fuzzer:
    """Runs generated inputs through the parsers and records every property that does not hold."""

    seed: int = SEED
    big: float = 0.02
    inputs: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    slowest: dict[str, tuple[float, str]] = field(default_factory=dict)
    keep_inputs: bool = False  # keep each failing input whole in Failure.raw (for bench/fuzz_hubitat.py --dump)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.mut = Mutator(self.rng, corpus(), big=self.big)

    def _fail(self, parser: str, shown: Any, exc: BaseException, raw: Any = None) -> None:
        text = shown if isinstance(shown, str) else repr(shown)
        error = "".join(traceback.format_exception(exc))
        raw = (shown if raw is None else raw) if self.keep_inputs else None
        self.failures.append(Failure(parser, self.inputs[parser], shorten(text, 600), error, raw))

    def _timed(self, parser: str, started: float, shown: Callable[[], Any]) -> None:
        took = time.perf_counter() - started
        if took > self.slowest.get(parser, (0.0, ""))[0]:
            self.slowest[parser] = (took, shorten(repr(shown()), 300))

    def _types(self) -> dict[str, dict[str, str | None]]:
        rng = self.rng
        types: dict[str, dict[str, str | None]] = {}
        for did, attribute in self.mut.corpus.attributes:
            if rng.random() < 0.8:
                types.setdefault(did, {})[attribute] = rng.choice(DATA_TYPES)
        return types

    # ---------------------------------------------------------------- eventsocket

    async def eventsocket(self, sessions: int, length: int = 12) -> None:
        for _ in range(sessions):
            messages = eventsocket_session(self.rng, self.mut, length)
            await self.run_messages(messages, types=self._types(), small=self.rng.random() < 0.25)

    async def run_messages(
        self, messages: list[Message], types: dict[str, dict[str, str | None]] | None = None, small: bool = False
    ) -> None:
        """Feed ``messages`` in order through one FrameParser (and one with a small limit); check each feed."""
        self.inputs["eventsocket"] += 1
        started = time.perf_counter()
        try:
            source = await new_source(types=types)
            await self._session(source, FrameParser(), messages, oracle=True)
            if small:
                await self._session(source, FrameParser(max_pending=SMALL_PENDING), messages, oracle=False)
        except Exception as exc:
            self._fail("eventsocket", [m.text for m in messages], exc, messages)
        self._timed("eventsocket", started, lambda: [m.text for m in messages])

    async def _session(self, source: HubitatSource, parser: FrameParser, messages: list[Message], oracle: bool) -> None:
        differ = Differ("fuzz-install")
        clean_start = True
        for n, msg in enumerate(messages):
            where = f"message {n} {shorten(repr(msg.text), 120)}"
            self.inputs["eventsocket messages"] += 1
            if msg.split_start:
                clean_start = parser.pending == 0
            parsed = parser.feed(msg.text)
            if parser.pending > parser.max_pending:
                raise Broken(f"{where}: the parser holds {parser.pending} characters, over {parser.max_pending}")
            for problem in parsed.problems:
                if not isinstance(problem, str) or len(problem) > MAX_PROBLEM:
                    raise Broken(f"{where}: a problem snippet of {len(problem)} characters")
            found = [f.text for f in parsed.frames]
            if oracle and (not msg.split_end or clean_start):
                at = 0
                for want in msg.expect:
                    try:
                        at = found.index(want, at) + 1
                    except ValueError:
                        raise Broken(f"{where}: the valid frame {shorten(want, 120)!r} was not found") from None
                if msg.expect and not msg.split_end and parser.pending:
                    raise Broken(f"{where}: a whole frame left {parser.pending} characters held")
            readings: list[Reading] = []
            for frame in parsed.frames:
                if not isinstance(frame.obj, dict) or not isinstance(frame.text, str):
                    raise Broken(f"{where}: a frame that is not an object: {shorten(repr(frame.obj), 80)}")
                depth = check_clean(frame.obj, f"{where}: frame")
                if depth < 40 and len(frame.text) < 100_000 and loads(frame.text) != frame.obj:
                    raise Broken(f"{where}: frame {shorten(frame.text, 80)!r} is not what its text parses to")
                p = pushed(frame.obj, "eventsocket", time.time(), True, time.monotonic())
                if p is not None:
                    check_clean(p.raw, f"{where}: pushed raw")
                    readings.append(source._typed(p))
            encoded, refused = journal(differ, readings, where)
            self.events["eventsocket encoded"] += encoded
            self.events["eventsocket refused"] += refused

    # ---------------------------------------------------------------- POST-URL

    async def posturl(self, count: int) -> None:
        source = await new_source(types=self._types())
        differ = Differ("fuzz-install")
        for _ in range(count):
            body, intact = post_input(self.rng, self.mut)
            await self.run_post(source, differ, body, intact)

    async def run_post(self, source: HubitatSource, differ: Differ, body: bytes, intact: bool = False) -> None:
        self.inputs["posturl"] += 1
        started = time.perf_counter()
        try:
            content = post_content(body)
            if isinstance(content, str):
                if intact:
                    raise Broken(f"a fixture body was refused: {content}")
                if len(content) > MAX_PROBLEM + 100:
                    raise Broken(f"an error of {len(content)} characters")
                return
            if not isinstance(content, dict) or not isinstance(content.get("name"), str):
                raise Broken(f"post_content gave {shorten(repr(content), 80)}")
            check_clean(content, "content")
            if intact and content != json.loads(body)["content"]:
                raise Broken("a fixture body's content differs from its JSON")
            p = pushed(content, "webhook", time.time(), True, time.monotonic())
            if p is not None:
                check_clean(p.raw, "pushed raw")
                encoded, refused = journal(differ, [source._typed(p)], "webhook")
                self.events["posturl encoded"] += encoded
                self.events["posturl refused"] += refused
        except Exception as exc:
            self._fail("posturl", body, exc)
        finally:
            self._timed("posturl", started, lambda: body)

    # ---------------------------------------------------------------- Maker API

    async def maker(self, count: int) -> None:
        for _ in range(count):
            answers, intact = maker_input(self.rng, self.mut)
            await self.run_maker(answers, intact)

    async def run_maker(self, answers: dict[str, bytes], intact: bool = False) -> None:
        self.inputs["maker"] += 1
        started = time.perf_counter()
        try:
            for path, body in answers.items():
                self._coerce_all(path, body)
            source = await new_source(answers)
            try:
                readings = await source.poll("poll")
            except HubError as exc:
                if intact:
                    raise Broken(f"the fixture answers were refused: {exc}") from None
                readings = []
            if intact and not readings:
                raise Broken("the fixture answers gave no readings")
            encoded, refused = journal(Differ("fuzz-install"), readings, "poll")
            self.events["maker encoded"] += encoded
            self.events["maker refused"] += refused
        except Exception as exc:
            self._fail("maker", answers, exc)
        finally:
            self._timed("maker", started, lambda: answers)

    def _coerce_all(self, path: str, body: bytes) -> None:
        """``loads`` of one answer, then every attribute value of it through ``coerce`` under every dataType."""
        try:
            value = loads(body.decode("utf-8", errors="replace"))
        except NotJson:
            return
        check_clean(value, path)
        pairs: list[tuple[Any, str | None]] = []
        items = value if isinstance(value, list) else [value]
        for item in items:
            attrs = item.get("attributes") if isinstance(item, dict) else None
            if isinstance(attrs, dict):
                pairs += [(raw, dt) for raw in attrs.values() for dt in DATA_TYPES]
            elif isinstance(attrs, list):
                for a in attrs:
                    if isinstance(a, dict):
                        dt = a.get("dataType")
                        pairs.append((a.get("currentValue"), dt if isinstance(dt, str) else None))
        for raw, dt in pairs:
            check_clean(coerce(raw, dt), f"{path}: coerce({shorten(repr(raw), 60)}, {dt!r})")


# ------------------------------------------------------------------------------------------------ the tests


def assert_no_failures(fuzzer: Fuzzer) -> None:
    if fuzzer.failures:
        first = fuzzer.failures[0]
        raise AssertionError(
            f"{len(fuzzer.failures)} failing inputs; first ({first.parser} #{first.index}): {first.input}\n"
            + first.error
        )


async def test_fuzz_eventsocket() -> None:
    """Mutated, split, duplicated eventsocket messages never crash the reader and never hide a valid frame."""
    fuzzer = Fuzzer(SEED)
    await fuzzer.eventsocket(sessions=400)
    assert_no_failures(fuzzer)
    assert fuzzer.events["eventsocket encoded"] > 1000  # the generators do reach the journal


async def test_fuzz_posturl() -> None:
    """Mutated POST-URL bodies are either refused with a reason or give events the journal can store."""
    fuzzer = Fuzzer(SEED + 1)
    await fuzzer.posturl(count=4000)
    assert_no_failures(fuzzer)
    assert fuzzer.events["posturl encoded"] > 100


async def test_fuzz_maker_api() -> None:
    """Mutated Maker API answers make a poll fail with a HubError or give storable, typed readings."""
    fuzzer = Fuzzer(SEED + 2)
    await fuzzer.maker(count=400)
    assert_no_failures(fuzzer)
    assert fuzzer.events["maker encoded"] > 1000


async def test_every_split_position_of_every_fixture_frame() -> None:
    """A fixture frame cut in two at any character is re-joined; after a held fragment the next whole one is found."""
    fuzzer = Fuzzer(SEED)
    for frame in corpus().frames[:8]:
        for cut in range(1, len(frame)):
            await fuzzer.run_messages(split(frame, [cut]))
            await fuzzer.run_messages([Message('"'), *split(frame, [cut]), Message(frame, (frame,))])
            await fuzzer.run_messages([Message('{"a":"'), *split(frame, [cut]), Message(frame, (frame,))])
    assert_no_failures(fuzzer)


async def test_lone_quote_and_fragments_do_not_swallow_the_next_frame() -> None:
    """A message that is only a quote, a brace or half an object does not cost the next valid frame."""
    frame = corpus().frames[0]
    fuzzer = Fuzzer(SEED)
    for junk in ('"', "{", '{"', '{"a":', '{"a":"', "[", "}", "\\", '{"a":"x\\', "{" * 40, frame[:-1], frame[1:]):
        await fuzzer.run_messages([Message(junk), Message(frame, (frame,)), Message(junk), Message(frame, (frame,))])
    assert_no_failures(fuzzer)
    parser = FrameParser()
    parser.feed('"')
    assert [f.text for f in parser.feed(frame).frames] == [frame]


def _frame_with(value: str, **fields: str) -> str:
    base = dict(source='"DEVICE"', name='"temperature"', displayName='"Lamp"', value=value, deviceId="36")
    base.update(fields)
    return "{" + ",".join(f'"{k}" : {v}' for k, v in base.items()) + "}"


async def test_nan_and_infinity_become_text() -> None:
    """NaN, Infinity and -Infinity, bare or inside a JSON_OBJECT string, never reach an event as a float."""
    fuzzer = Fuzzer(SEED)
    source = await new_source(types={"36": {"temperature": "NUMBER", "lockCodes": "JSON_OBJECT"}})
    for token in ("NaN", "Infinity", "-Infinity"):
        frame = _frame_with(token)
        obj = raw_decode(frame, 0)[0]
        assert obj["value"] == token  # kept as the text it is
        inner = _frame_with(json.dumps(f'{{"a":{token},"b":[{token}]}}'), name='"lockCodes"')
        typed = coerce(raw_decode(inner, 0)[0]["value"], "JSON_OBJECT")
        assert typed == {"a": token, "b": [token]}
        await fuzzer.run_messages([Message(frame, (frame,)), Message(inner, (inner,))])
        await fuzzer.run_post(source, Differ("x"), f'{{"content":{{"name":"temperature","value":{token}}}}}'.encode())
        await fuzzer.run_maker({"devices/all": f'[{{"id":"36","attributes":{{"temperature":{token}}}}}]'.encode()})
        assert coerce(token, "NUMBER") == token
    assert_no_failures(fuzzer)


async def test_lone_surrogate_escape_is_replaced() -> None:
    """A "\\ud83d" escape (half an emoji) turns into U+FFFD instead of breaking the journal's UTF-8."""
    fuzzer = Fuzzer(SEED)
    frame = _frame_with('"20\\ud83d"', displayName='"Lamp \\ud83d"', name='"temp\\ud83d"')
    obj = FrameParser().feed(frame).frames[0].obj
    assert obj["value"] == "20\ufffd" and obj["name"] == "temp\ufffd"
    assert loads('"\\ud83d"') == "\ufffd"
    await fuzzer.run_messages([Message(frame, (frame,))])
    source = await new_source()
    await fuzzer.run_post(source, Differ("x"), b'{"content":{"name":"\\ud83d","value":"\\udc00","deviceId":"\\ud83d"}}')
    await fuzzer.run_maker({"devices/all": b'[{"id":"\\ud83d","label":"\\ud83d","attributes":{"\\ud83d":"\\ud83d"}}]'})
    assert_no_failures(fuzzer)


async def test_nesting_1000_deep_is_refused_not_raised() -> None:
    """JSON nested ~1000 deep is parsed or refused (a problem, NotJson, EventRefused), never a RecursionError."""
    fuzzer = Fuzzer(SEED)
    source = await new_source(types={"36": {"temperature": "NUMBER"}})
    frame = corpus().frames[0]
    for depth in (*range(975, 1000), 1010, 100_000):  # the decoder's own limit is near 990 from here
        for deep in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth):
            message = _frame_with(deep)
            await fuzzer.run_messages(
                [Message(message), Message(frame, (frame,)), Message(deep), Message(frame, (frame,))]
            )
            await fuzzer.run_post(source, Differ("x"), f'{{"content":{{"name":"x","value":{deep}}}}}'.encode())
            await fuzzer.run_maker({"devices/all": f'[{{"id":"1","attributes":{{"a":{deep}}}}}]'.encode()})
            with contextlib.suppress(NotJson):
                check_clean(loads(deep), "loads")
            assert coerce(deep, "JSON_OBJECT") == deep  # kept as its text
    assert_no_failures(fuzzer)


async def test_200000_character_device_ids() -> None:
    """A 200 000-character device id, as text or as digits, is stored or refused, never a crash."""
    fuzzer = Fuzzer(SEED)
    source = await new_source()
    for did in ('"' + "x" * 200_000 + '"', '"' + "9" * 200_000 + '"', "9" * 200_000):
        frame = _frame_with('"20"', deviceId=did)
        await fuzzer.run_messages([Message(frame), Message(corpus().frames[0], (corpus().frames[0],))])
        await fuzzer.run_post(
            source, Differ("x"), f'{{"content":{{"name":"switch","value":"on","deviceId":{did}}}}}'.encode()
        )
        await fuzzer.run_maker({"devices/all": f'[{{"id":{did},"attributes":{{"switch":"on"}}}}]'.encode()})
    assert_no_failures(fuzzer)


async def test_900kb_frames_whole_and_split() -> None:
    """A 900 KB frame is parsed whole or re-joined from parts; its event is refused as too big, nothing else."""
    fuzzer = Fuzzer(SEED)
    frame = _frame_with('"' + "v" * 900_000 + '"')
    small = corpus().frames[0]
    await fuzzer.run_messages([Message(frame, (frame,)), *split(frame, [10, 450_000]), Message(small, (small,))])
    parser = FrameParser()
    assert parser.feed(frame[:600_000]).frames == [] and parser.pending == 600_000
    parsed = parser.feed(frame[600_000:])
    assert [f.text for f in parsed.frames] == [frame] and parser.pending == 0
    # Over MAX_PENDING and still incomplete: dropped, and the parser is ready for the next frame.
    huge = '{"value":"' + "w" * (MAX_PENDING + 10)
    assert parser.feed(huge).problems and parser.pending == 0
    assert [f.text for f in parser.feed(small).frames] == [small]
    assert_no_failures(fuzzer)
    assert fuzzer.events["eventsocket refused"] >= 2 and fuzzer.events["eventsocket encoded"] >= 1


async def test_fixture_inputs_parse_as_plain_json() -> None:
    """Every unmutated fixture frame, body and answer gives what the standard JSON parser gives, and events."""
    fuzzer = Fuzzer(SEED)
    c = corpus()
    await fuzzer.run_messages([Message(f, (f,)) for f in c.frames])
    source = await new_source()
    for body in c.posts:
        await fuzzer.run_post(source, Differ("x"), body, intact=True)
    for answers in c.maker:
        await fuzzer.run_maker(answers, intact=True)
    assert_no_failures(fuzzer)
    assert fuzzer.events["eventsocket encoded"] >= len(c.frames) - 2  # the APP frame is not for us


# ------------------------------------------------------------------------------------------------ regressions
# Bugs the fuzzer found (bench/fuzz_hubitat.py), each fixed in values.py or FrameParser.


async def test_regression_overflowing_numbers_stay_text() -> None:
    """1e400 or a 400-digit decimal is kept as its text, not turned into an Infinity that no event can hold."""
    long_decimal = "1" * 400 + ".5"
    assert loads(f'{{"v":1e400,"w":-1E+999,"x":{long_decimal},"y":1e-400}}') == {
        "v": "1e400",
        "w": "-1E+999",
        "x": long_decimal,
        "y": 0.0,
    }
    frame = _frame_with("1e400")
    assert FrameParser().feed(frame).frames[0].obj["value"] == "1e400"
    assert post_content(b'{"content":{"name":"power","value":-1e400}}') == {"name": "power", "value": "-1e400"}
    assert coerce('{"x":1e400}', "JSON_OBJECT") == {"x": "1e400"}
    assert coerce("1e400", "NUMBER") == "1e400" and coerce(1e300, "NUMBER") == 1e300
    fuzzer = Fuzzer(SEED)
    await fuzzer.run_maker({"devices/all": b'[{"id":"1","attributes":{"power":1e400}}]', "hsm": b'{"hsm":1e999}'})
    assert_no_failures(fuzzer)


async def test_regression_integers_over_4300_digits() -> None:
    """An integer longer than Python converts (4300 digits) no longer crashes the eventsocket reader."""
    digits = "9" * 5000
    frame = _frame_with('"on"', name='"switch"', deviceId=digits)
    parsed = FrameParser().feed(frame)
    assert [f.text for f in parsed.frames] == [frame] and parsed.frames[0].obj["deviceId"] == digits
    parser = FrameParser()  # split in the middle of the number, then re-joined
    assert parser.feed(frame[: frame.index(digits) + 2500]).frames == []
    assert parser.feed(frame[frame.index(digits) + 2500 :]).frames[0].obj["deviceId"] == digits
    assert loads(f"[{digits}, -{digits}, 12]") == [digits, "-" + digits, 12]
    assert raw_decode(f'{{"a":{"1" * 4300}}}', 0)[0]["a"] == int("1" * 4300)  # up to the limit: still a number
    fuzzer = Fuzzer(SEED)
    await fuzzer.run_messages([Message(frame, (frame,)), *split(frame, [100, 3000])])
    assert_no_failures(fuzzer)


async def test_regression_whitespace_message_inside_a_split_frame() -> None:
    """A split frame whose middle part is only whitespace is still re-joined (it was dropped as garbage)."""
    frame = corpus().frames[0]
    cut = frame.index('"displayName"')
    parser = FrameParser()
    parser.feed(frame[:cut])
    assert parser.feed(" ").frames == [] and parser.pending == cut + 1
    parsed = parser.feed(frame[cut:])
    assert [f.obj for f in parsed.frames] == [json.loads(frame)] and not parsed.problems
    fuzzer = Fuzzer(SEED)
    await fuzzer.run_messages(
        [
            Message(frame[:cut], split_start=True),
            Message("\r\n"),
            Message(frame[cut:], (frame[:cut] + "\r\n" + frame[cut:],), split_end=True),
        ]
    )
    assert_no_failures(fuzzer)


def test_regression_megabyte_of_garbage_is_bounded() -> None:
    """A megabyte of "{" is given up on after a few pieces (it took minutes and one snippet per brace)."""
    frame = corpus().frames[0]
    for junk in ("{" * 1_000_000, '{"{' * 300_000, "{x" * 500_000, "{}x" * 300_000):
        parser = FrameParser()
        parsed = parser.feed(junk)
        assert len(parsed.problems) <= parser.max_problems + 1 and parser.pending == 0
        assert "dropped the rest" in parsed.problems[-1]
        assert [f.text for f in parser.feed(frame).frames] == [frame]
    # Garbage between frames of one message is still skipped as long as there is little of it.
    parsed = FrameParser().feed(f'x{frame}"junk"{frame}{{oops}}{frame}')
    assert [f.text for f in parsed.frames] == [frame] * 3 and len(parsed.problems) == 3
