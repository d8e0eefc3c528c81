"""Hubitat Elevation source: Maker API polling, the ``/eventsocket`` WebSocket and Maker API's POST-URL.

Wire formats and quirks follow ../shared/reference/hubitat.md (section numbers below):

* Maker API answers JSON with ``Content-Type: text/html`` (1.1), so bodies are parsed whatever the header says.
* ``/devices/all`` gives every attribute value as a string, mixed with junk ``dataType``/``values`` keys (1.3);
  the real type of each attribute comes from ``/devices/<id>`` (typed ``currentValue`` and ``dataType``),
  fetched one device at a time and remembered in the journal, so values are typed the same way on every path.
* ``/eventsocket`` frames are hand-built JSON with ``"null"`` strings and integer ids, may be split across
  frames and are sent twice at times (2.2); nobody documents it, so it is never trusted alone: every (re)connect
  and every ``poll_interval`` runs a reconciliation poll.
* POST-URL bodies are ``{"content": {...}}`` with string values and a string or ``null`` deviceId (1.4); the
  hub fires and forgets, so we answer 200 only after the journal commit.

Hub kindness (DESIGN 5): at most ``max_concurrency`` requests in flight, a timeout on each, jittered intervals,
one poll at a time, and capped full-jitter backoff while the hub errors or is starting up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from bridge.config import HubitatHubConfig
from bridge.errors import HubAuthError, HubError, HubProtocolError, HubUnavailable, JournalError, JournalFull
from bridge.events import Event, Kind, Reading, SourceName
from bridge.pipeline import Pipeline
from bridge.sources.streams import DualStreamMatcher

log = structlog.get_logger("bridge.sources.hubitat")

HUB_TYPE = "hubitat"
# Attributes whose events are occurrences, not states: the same value twice is two occurrences.
MOMENTARY = frozenset({"pushed", "held", "doubleTapped", "released", "hsmAlert", "systemStart", "sunrise", "sunset"})
# Location-level names that arrive on eventsocket/POST-URL without a device (hubitat.md 1.4, 2.2).
HUB_EVENTS = frozenset({"systemStart", "severeLoad", "zigbeeOff", "zigbeeOn", "zwaveCrashed"})
# /devices/all pollutes each attribute map with these (hubitat.md 1.3); they are junk unless the device's
# detail says it really has an attribute of that name.
JUNK_ATTRIBUTE_KEYS = frozenset({"dataType", "values"})
NUMERIC_TYPES = frozenset({"NUMBER", "DECIMAL", "INTEGER"})
MAX_BODY = 64 * 1024 * 1024
MAX_FRAME_BUFFER = 1024 * 1024
INGEST_QUEUE = 10_000
INGEST_BATCH = 2_000
RELEARN_AFTER = 3600.0
_DECODER = json.JSONDecoder()
# An identical eventsocket frame within this many seconds is the hub repeating itself, not a second event
# (the diff treats two identical momentary events this close together the same way).
REPEAT_WINDOW = 1.0


def _ssl_context(cfg: HubitatHubConfig) -> ssl.SSLContext | bool:
    if not cfg.url.startswith("https:"):
        return True
    if not cfg.tls.verify:
        log.warning(
            "TLS certificate verification is OFF for this hub; anyone on the path can read the token", hub=cfg.name
        )
        return False
    ctx = ssl.create_default_context(cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
    return ctx


def _null(value: Any) -> Any:
    """The eventsocket writes null as the string "null" (hubitat.md 2.2)."""
    return None if value is None or value == "null" else value


def _text(value: Any) -> str | None:
    value = _null(value)
    return None if value is None else str(value)


def coerce(raw: Any, data_type: str | None) -> Any:
    """Type a raw attribute value by its Maker API ``dataType``. Off-type values are kept as strings."""
    raw = _null(raw)
    if raw is None:
        return None
    if data_type in NUMERIC_TYPES:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float):
            return raw if math.isfinite(raw) else str(raw)
        text = str(raw).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    if data_type == "BOOL":
        if isinstance(raw, bool):
            return raw
        low = str(raw).strip().lower()
        if low in ("true", "false"):
            return low == "true"
        return str(raw)
    if data_type == "JSON_OBJECT" and isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if isinstance(raw, dict | list):
        return raw
    if data_type is None and isinstance(raw, str):
        # Type not known (the detail could not be fetched yet): a numeric text is almost always a NUMBER, and
        # guessing it keeps the value stable when the real type arrives (no spurious "30.5" -> 30.5 change).
        guessed = coerce(raw, "NUMBER")
        return guessed if not isinstance(guessed, str) else raw
    # ENUM, STRING, DATE, VECTOR3, COLOR_MAP: the hub's text, as text.
    return raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, bool) else str(raw)


@dataclass(slots=True)
class RawReading:
    """A pushed event before typing: typing may need the device's detail, fetched by the ingest task."""

    kind: Kind
    device_id: str | None
    attribute: str
    raw: Any
    source: SourceName
    device: str | None
    unit: str | None
    description: str | None
    time: float


class HubitatClient:
    """Maker API over HTTP with per-hub concurrency and timeouts. Error texts never carry the token."""

    def __init__(self, cfg: HubitatHubConfig, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session
        self.base = f"{cfg.url}/apps/api/{cfg.app_id}"
        self.limit = asyncio.Semaphore(cfg.max_concurrency)
        self.timeout = aiohttp.ClientTimeout(total=cfg.request_timeout)

    async def get_json(self, path: str, *, shown: str | None = None) -> Any:
        """GET ``<base>/<path>`` and parse the body as JSON, whatever the Content-Type says (hubitat.md 1.1).

        ``shown`` replaces ``path`` in error texts when the path carries a secret (the POST-URL registration).
        """
        where = f"GET {shown or path}"
        async with self.limit:
            try:
                async with self.session.get(
                    f"{self.base}/{path}",
                    params={"access_token": self.cfg.access_token.get()},
                    timeout=self.timeout,
                ) as resp:
                    body = await self._read(resp, where)
                    status = resp.status
            except TimeoutError:
                raise HubUnavailable(
                    self.cfg.name, f"{where}: no answer within {self.cfg.request_timeout:g}s"
                ) from None
            except aiohttp.ClientError as exc:
                raise HubUnavailable(self.cfg.name, f"{where}: cannot reach {self.cfg.url}: {_reason(exc)}") from None
        text = body.decode("utf-8", errors="replace")
        if status == 401:
            raise HubAuthError(
                self.cfg.name,
                f"{where}: Maker API refused the access token (401 {_snippet(text)}); check access_token and that "
                f"app {self.cfg.app_id} is the Maker API instance",
            )
        if "starting up" in text.lower() or status in (502, 503, 504):
            raise HubUnavailable(self.cfg.name, f"{where}: the hub is starting up or overloaded (HTTP {status})")
        if status >= 500:
            raise HubUnavailable(self.cfg.name, f"{where}: HTTP {status} {_snippet(text)}")
        if status >= 400:
            raise HubProtocolError(self.cfg.name, f"{where}: HTTP {status} {_snippet(text)}")
        try:
            return json.loads(text)
        except ValueError:
            kind = "an HTML page" if text.lstrip()[:1] == "<" else "malformed JSON"
            raise HubProtocolError(self.cfg.name, f"{where}: expected JSON, got {kind}: {_snippet(text)}") from None

    async def _read(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        if resp.content_length is not None and resp.content_length > MAX_BODY:
            raise HubProtocolError(self.cfg.name, f"{where}: answer of {resp.content_length} bytes is over {MAX_BODY}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > MAX_BODY:
                raise HubProtocolError(self.cfg.name, f"{where}: answer is over {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("?access_token=")[0]


def _cut_short(exc: json.JSONDecodeError, buffer: str) -> bool:
    """Whether a parse error means "the rest comes in the next frame" rather than "this is not JSON".

    A frame cut inside a string fails as "Unterminated string" (the string runs to the end of the buffer); a cut
    inside a literal (``nul``), a number or an escape (``\\u00``) fails a few characters before the end; any
    other cut fails at the very end. A wrong guess heals itself: once the next frame is appended the error
    moves away from the end, and the garbage is then skipped as malformed.
    """
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(buffer.rstrip()) - 6


def _snippet(text: str, n: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat[:n] + ("..." if len(flat) > n else ""))


class _Backoff:
    """Capped exponential backoff with jitter: uniform(base, min(cap, base * 2**n)), never above ``cap``.

    The floor of ``base`` keeps a hub that fails fast from being hammered; a ``cap`` below ``base`` (a short
    ``backoff_max``) wins over the floor.
    """

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        self.failures += 1
        low = min(self.base, self.cap)
        # The exponent is bounded: 2.0**1100 does not fit a float, and a long outage must not crash the loop.
        high = min(self.cap, self.base * 2.0 ** min(self.failures, 62))
        return random.uniform(low, max(low, high))

    def reset(self) -> None:
        self.failures = 0


class HubitatSource:
    """All paths of one Hubitat hub. Run :meth:`run` as a task; POST-URL bodies go to :meth:`handle_post`."""

    def __init__(self, cfg: HubitatHubConfig, pipeline: Pipeline) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.pipeline = pipeline
        self.journal = pipeline.journal
        self._log = log.bind(hub=cfg.name)
        self._session: aiohttp.ClientSession | None = None
        self._client: HubitatClient | None = None
        # device id -> {attribute: dataType}; learned from /devices/<id>, persisted in the journal.
        self._types: dict[str, dict[str, str | None]] = {}
        self._names: dict[str, str] = {}
        self._rooms: dict[str, str | None] = {}
        self._learn_lock = asyncio.Lock()
        self._learned_at: dict[str, float] = {}
        # Attributes that /devices/all shows but the device's detail did not list when last fetched; None when
        # that fetch failed (nothing is known then).
        self._absent: dict[str, set[str] | None] = {}
        self._poll_lock = asyncio.Lock()
        self._reconcile = asyncio.Event()
        self._queue: asyncio.Queue[RawReading] = asyncio.Queue(INGEST_QUEUE)
        # When a push last updated each attribute: a poll that started earlier must not overwrite it.
        self._pushed_at: dict[tuple[str, str, str], float] = {}
        # eventsocket frames of the last REPEAT_WINDOW seconds (JSON text -> when), oldest first.
        self._recent_frames: dict[str, float] = {}
        # eventsocket and POST-URL carry the same stream; recognise the second copy of each event.
        self._matcher = DualStreamMatcher(enabled=cfg.eventsocket and cfg.webhook_secret is not None)
        # Pushed readings queued and committed so far: a POST that is a copy of a queued eventsocket event is
        # answered only once that event is committed (never acknowledge before commit).
        self._enqueued = 0
        self._committed = 0
        self._progress = asyncio.Condition()
        self._hub_online: bool | None = None
        self._last_auth_log = 0.0
        self.polls = 0
        self.connected = False
        self.status = "starting"

    # ------------------------------------------------------------------ lifecycle

    @property
    def client(self) -> HubitatClient:
        assert self._client is not None, "run() opens the client"
        return self._client

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=_ssl_context(self.cfg), limit=self.cfg.max_concurrency + 2)
            self._session = aiohttp.ClientSession(connector=connector)
            self._client = HubitatClient(self.cfg, self._session)
            stored = await self.journal.get_meta(self.name, "types")
            if isinstance(stored, dict):
                self._types = {str(k): dict(v) for k, v in stored.items() if isinstance(v, dict)}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        await self.open()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._poll_loop(), name=f"hubitat:{self.name}:poll")
                tg.create_task(self._ingest_loop(), name=f"hubitat:{self.name}:ingest")
                if self.cfg.eventsocket:
                    tg.create_task(self._eventsocket_loop(), name=f"hubitat:{self.name}:eventsocket")
                if self.cfg.advertise_url:
                    tg.create_task(self._register_post_url(), name=f"hubitat:{self.name}:postURL")
        finally:
            await self.close()

    def request_reconcile(self) -> None:
        self._reconcile.set()

    # ------------------------------------------------------------------ polling

    async def _poll_loop(self) -> None:
        backoff = _Backoff(1.0, self.cfg.backoff_max)
        # A small random start offset, so several bridges (or hubs) started together do not poll in step.
        delay = random.uniform(0, min(1.0, self.cfg.poll_interval / 10))
        first = True
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile.wait(), timeout=delay)
            self._reconcile.clear()
            # With a stream the poll only reconciles; without one it is the source, except right after start
            # where it catches up with what changed while we were down.
            source: SourceName = "reconcile" if (self.cfg.eventsocket or first) else "poll"
            try:
                await self.poll(source)
            except HubError as exc:
                delay = backoff.next()
                await self._hub_failed(exc, delay)
                # While backing off, reconnects and systemStart must not trigger extra polls.
                await asyncio.sleep(delay)
                delay = 0
                continue
            except JournalFull:
                delay = min(self.cfg.poll_interval, 5.0)
                continue
            first = False
            backoff.reset()
            delay = self.cfg.poll_interval * random.uniform(0.9, 1.1)

    async def poll(self, source: SourceName = "reconcile") -> None:
        """Fetch the full state of the hub and ingest it (the diff keeps only changes). One at a time."""
        async with self._poll_lock:
            started = time.monotonic()
            devices = await self.client.get_json("devices/all")
            if not isinstance(devices, list):
                raise HubProtocolError(
                    self.name, f"GET devices/all: expected a JSON list, got {type(devices).__name__}"
                )
            readings: list[Reading] = []
            now = time.time()
            for item in devices:
                if not isinstance(item, dict) or item.get("id") is None:
                    self._log.warning("skipped a device entry without an id in devices/all", entry=_snippet(str(item)))
                    continue
                readings.extend(await self._device_readings(item, source, now))
            if self.cfg.location_events:
                readings.extend(await self._location_readings(source, now))
            readings = [
                r for r in readings if self._pushed_at.get((r.kind, r.device_id or "", r.attribute), 0) < started
            ]
            readings.append(self._status_reading(True, None, now))
            await self.pipeline.ingest(self.name, HUB_TYPE, readings, on_changes=self._note_polled)
            self.polls += 1
            if self._hub_online is not True:
                self._log.info("hub online", devices=len(devices), source=source)
            self._hub_online = True
            self.status = "ok"

    def _note_polled(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kind != "bridge":
                self._matcher.note_polled((ev.kind, ev.device_id or "", ev.attribute), ev.value)

    async def _device_readings(self, item: dict[str, Any], source: SourceName, now: float) -> list[Reading]:
        device_id = str(item["id"])
        label = _text(item.get("label")) or _text(item.get("name"))
        if label:
            self._names[device_id] = label
        self._rooms[device_id] = _text(item.get("room"))
        attributes = item.get("attributes")
        if not isinstance(attributes, dict):
            return []
        types = self._types.get(device_id)
        missing = [] if types is None else [a for a in attributes if a not in types and a not in JUNK_ATTRIBUTE_KEYS]
        if types is None or missing:
            # An attribute the last detail fetch did not already miss goes first: _learn fetches for it now.
            absent = self._absent.get(device_id) or ()
            need = next((a for a in missing if a not in absent), missing[0]) if missing else None
            types = await self._learn(device_id, need)
        out = []
        for attribute, raw in attributes.items():
            if attribute in JUNK_ATTRIBUTE_KEYS and attribute not in types:
                continue
            out.append(
                Reading(
                    kind="device",
                    device_id=device_id,
                    attribute=str(attribute),
                    value=coerce(raw, types.get(attribute)),
                    source=source,
                    device=label,
                    room=self._rooms.get(device_id),
                    time=now,
                )
            )
        return out

    async def _location_readings(self, source: SourceName, now: float) -> list[Reading]:
        out: list[Reading] = []
        with contextlib.suppress(HubProtocolError):
            # 4xx when "Allow control of modes" is off in Maker API (hubitat.md 1.1): not an error for us.
            modes = await self.client.get_json("modes")
            if isinstance(modes, list):
                for mode in modes:
                    if isinstance(mode, dict) and mode.get("active") is True:
                        out.append(Reading("location", None, "mode", _text(mode.get("name")), source, time=now))
        with contextlib.suppress(HubProtocolError):
            hsm = await self.client.get_json("hsm")
            if isinstance(hsm, dict) and isinstance(hsm.get("hsm"), str):
                out.append(Reading("location", None, "hsmStatus", hsm["hsm"], source, time=now))
        return out

    async def _learn(self, device_id: str, need: str | None = None) -> dict[str, str | None]:
        """Learn a device's attribute dataTypes from ``/devices/<id>``. One device at a time, spaced.

        An attribute the device did not have at the last fetch (a driver update, a first ``sendEvent``) is
        fetched for at once, so its values are typed from the start. But an attribute the detail did not list
        at the last fetch (some drivers report attributes in /devices/all that their detail never lists), or a
        fetch that failed, is asked again at most once per ``RELEARN_AFTER``, so an odd driver cannot make us
        fetch its detail on every poll. A failed fetch keeps the types already known.
        """
        async with self._learn_lock:
            known = self._types.get(device_id)
            if known is not None and (need is None or need in known):
                return known
            learned = self._learned_at.get(device_id)
            if known is not None and learned is not None and time.monotonic() - learned < RELEARN_AFTER:
                absent = self._absent.get(device_id)
                if absent is None or need in absent:
                    return known
            try:
                detail = await self.client.get_json(f"devices/{quote(device_id, safe='')}")
            except HubProtocolError as exc:
                self._log.warning(
                    "cannot learn attribute types; values stay as the hub sends them",
                    device_id=device_id,
                    error=str(exc),
                )
                detail = None
            finally:
                self._learned_at[device_id] = time.monotonic()
                await asyncio.sleep(self.cfg.detail_spacing)
            types: dict[str, str | None] = {}
            if isinstance(detail, dict) and isinstance(detail.get("attributes"), list):
                for attr in detail["attributes"]:
                    # Duplicate attributes (hubitat.md 1.3, device 176): the first one wins.
                    if isinstance(attr, dict) and isinstance(attr.get("name"), str) and attr["name"] not in types:
                        dt = attr.get("dataType")
                        types[attr["name"]] = dt if isinstance(dt, str) else None
                before = self._absent.get(device_id) or set()
                self._absent[device_id] = {a for a in (*before, need) if a is not None and a not in types}
            else:
                self._absent[device_id] = None
                if known is not None:
                    return known  # a failed fetch must not forget types: the values would change type
            self._types[device_id] = types
            await self.journal.set_meta(self.name, "types", self._types)
            return types

    # ------------------------------------------------------------------ hub status

    def _status_reading(self, online: bool, reason: str | None, now: float) -> Reading:
        return Reading(
            kind="bridge",
            device_id=None,
            attribute="hub_status",
            value="online" if online else "offline",
            source="poll",
            description=reason,
            time=now,
        )

    async def _hub_failed(self, exc: HubError, delay: float) -> None:
        self.status = f"error: {exc}"
        now = time.monotonic()
        if isinstance(exc, HubAuthError):
            # One clear line per window, not one per retry (anchors: log floods hide the real problem).
            if now - self._last_auth_log > 300:
                self._last_auth_log = now
                self._log.error(str(exc), retry_in=round(delay, 1))
        elif self._hub_online is not False:
            self._log.warning("hub poll failed; backing off", error=str(exc), retry_in=round(delay, 1))
        else:
            self._log.debug("hub poll failed again", error=str(exc), retry_in=round(delay, 1))
        if self._hub_online is not False:
            self._hub_online = False
            with contextlib.suppress(JournalError):
                await self.pipeline.ingest(self.name, HUB_TYPE, [self._status_reading(False, str(exc), time.time())])

    # ------------------------------------------------------------------ eventsocket

    def _ws_url(self) -> str:
        url = self.cfg.url
        return (
            "wss://" + url[len("https://") :] if url.startswith("https://") else "ws://" + url[len("http://") :]
        ) + ("/eventsocket")

    async def _eventsocket_loop(self) -> None:
        backoff = _Backoff(1.0, min(60.0, self.cfg.backoff_max))
        assert self._session is not None
        down_since: float | None = None
        while True:
            try:
                async with self._session.ws_connect(
                    self._ws_url(),
                    autoping=False,
                    heartbeat=None,
                    max_msg_size=MAX_FRAME_BUFFER,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                ) as ws:
                    self.connected = True
                    if down_since is None:
                        self._log.info("eventsocket connected")
                    else:
                        self._log.info("eventsocket connected again", down_for=round(time.monotonic() - down_since, 1))
                    down_since = None
                    backoff.reset()
                    # A stream is never trusted alone: whatever changed while it was down arrives as reconcile.
                    self.request_reconcile()
                    reason = await self._read_socket(ws)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = f"cannot connect: {_reason(exc)}"
            finally:
                self.connected = False
            delay = backoff.next()
            # One warning per outage; the retries of the same outage are debug, so a hub that is off for a day
            # does not fill the journal with a line a minute.
            if down_since is None:
                down_since = time.monotonic()
                self._log.warning("eventsocket down; reconnecting", reason=reason, retry_in=round(delay, 1))
            else:
                self._log.debug("eventsocket still down", reason=reason, retry_in=round(delay, 1))
            await asyncio.sleep(delay)

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Read frames until the socket closes or goes quiet. Returns why it ended."""
        window = self.cfg.eventsocket_timeout
        probe_every = max(0.5, window / 3)
        last_heard = time.monotonic()
        buffer = ""
        while True:
            try:
                msg = await ws.receive(timeout=probe_every)
            except TimeoutError:
                if time.monotonic() - last_heard >= window:
                    await ws.close()
                    return f"no frame, ping or pong for {window:g}s (dead socket)"
                # Our own ping: a half-open socket (hub rebooted without a FIN) never answers it.
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.ping()
                continue
            last_heard = time.monotonic()
            if msg.type == aiohttp.WSMsgType.TEXT:
                buffer = await self._feed(buffer + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                buffer = await self._feed(buffer + msg.data.decode("utf-8", errors="replace"))
            elif msg.type == aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == aiohttp.WSMsgType.PONG:
                pass
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return "closed by the hub"
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"socket error: {ws.exception()}"

    async def _feed(self, buffer: str) -> str:
        """Parse complete JSON objects from ``buffer``; return the incomplete rest (a frame split in parts)."""
        decoder = _DECODER
        pos, end = 0, len(buffer)
        while True:
            while pos < end and buffer[pos].isspace():
                pos += 1
            if pos >= end:
                return ""
            start = pos
            try:
                obj, pos = decoder.raw_decode(buffer, pos)
            except ValueError as exc:
                rest = buffer[pos:]
                if isinstance(exc, json.JSONDecodeError) and _cut_short(exc, buffer):
                    if len(rest) > MAX_FRAME_BUFFER:
                        self._log.warning("dropped an eventsocket message over 1 MiB", size=len(rest))
                        return ""
                    return rest  # incomplete: the rest of the object comes in the next frame
                self._log.warning("ignored a malformed eventsocket frame", frame=_snippet(rest))
                # Resynchronise at the next object start, if any.
                nxt = buffer.find("{", pos + 1)
                if nxt < 0:
                    return ""
                pos = nxt
                continue
            if isinstance(obj, dict):
                # Repeats matter only with POST-URL on too (see _repeated_frame); the diff drops them otherwise.
                if self._matcher.enabled and self._repeated_frame(buffer[start:pos]):
                    continue
                reading = self._from_push(obj, "eventsocket")
                if reading is not None:
                    await self._enqueue(reading)
            else:
                self._log.warning("ignored an eventsocket frame that is not a JSON object", frame=_snippet(str(obj)))

    def _repeated_frame(self, text: str) -> bool:
        """The eventsocket sends some frames twice (hubitat.md 2.2): the same object again within a second.

        The diff would drop the repeat anyway, but with POST-URL on too, a repeat counted as a second eventsocket
        event would later swallow a real POST-URL change back to that value as its "copy".
        """
        # The hub repeats a frame byte for byte, so its text is the key.
        now = time.monotonic()
        recent = self._recent_frames
        while recent:
            oldest = next(iter(recent))
            if now - recent[oldest] <= REPEAT_WINDOW:
                break
            del recent[oldest]
        if text in recent:
            return True
        recent[text] = now
        return False

    def _from_push(self, obj: dict[str, Any], channel: SourceName) -> RawReading | None:
        """An eventsocket frame or a POST-URL ``content`` object as a reading; None if it is not for us.

        Both carry the same keys (hubitat.md 1.4, 2.2). The eventsocket adds ``source`` and writes ``deviceId`` as
        an int, 0 when not a device; POST-URL has no ``source`` and a string or null ``deviceId``.
        """
        name = _text(obj.get("name"))
        if not name:
            return None
        raw_id = obj.get("deviceId")
        did = None if raw_id in (None, 0, "0", "null") else str(raw_id)
        source = _text(obj.get("source")) or ("DEVICE" if did is not None else "LOCATION")
        kind: Kind
        if source == "DEVICE" and did is not None:
            kind = "device"
        elif source == "HUB" or name in HUB_EVENTS:
            kind, did = "hub", None
        elif source == "LOCATION" and self.cfg.location_events:
            kind, did = "location", None
        else:
            return None  # APP events are app state; location events may be switched off
        return RawReading(
            kind=kind,
            device_id=did,
            attribute=name,
            raw=_null(obj.get("value")),
            source=channel,
            device=_text(obj.get("displayName")) if kind == "device" else None,
            unit=_text(obj.get("unit")),
            description=_text(obj.get("descriptionText")),
            time=time.time(),
        )

    def _on_pushed(self, reading: RawReading) -> None:
        if reading.kind == "hub" and reading.attribute == "systemStart":
            # The hub rebooted: whatever changed during the reboot is only visible to a poll.
            self._log.info("hub restarted", build=reading.raw)
            self.request_reconcile()

    async def _enqueue(self, reading: RawReading) -> None:
        key = (reading.kind, reading.device_id or "", reading.attribute)
        if self._matcher.is_copy("eventsocket", key, reading.raw):
            return
        self._pushed_at[key] = time.monotonic()
        self._on_pushed(reading)
        self._enqueued += 1
        await self._queue.put(reading)

    async def _ingest_loop(self) -> None:
        """Type and ingest pushed readings in batches (group commit does the rest)."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < INGEST_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            readings = await self._typed(batch)
            while True:
                try:
                    await self.pipeline.ingest(self.name, HUB_TYPE, readings)
                    async with self._progress:
                        self._committed += len(batch)
                        self._progress.notify_all()
                    break
                except JournalFull:
                    # Hold the stream (the socket backs up into TCP) rather than drop; polls catch up later.
                    await asyncio.sleep(1.0)
                except JournalError as exc:
                    self._log.error("cannot record pushed events; retrying", error=str(exc))
                    await asyncio.sleep(1.0)

    async def _typed(self, raw: Iterable[RawReading]) -> list[Reading]:
        out = []
        for r in raw:
            data_type = None
            if r.kind == "device" and r.device_id is not None:
                types = self._types.get(r.device_id)
                if types is None or r.attribute not in types:
                    try:
                        types = await self._learn(r.device_id, r.attribute)
                    except HubError as exc:
                        self._log.debug("cannot learn types for a pushed event", device_id=r.device_id, error=str(exc))
                        types = self._types.get(r.device_id, {})
                data_type = types.get(r.attribute)
            out.append(
                Reading(
                    kind=r.kind,
                    device_id=r.device_id,
                    attribute=r.attribute,
                    value=coerce(r.raw, data_type),
                    source=r.source,
                    device=r.device or (self._names.get(r.device_id) if r.device_id else None),
                    room=self._rooms.get(r.device_id) if r.device_id else None,
                    unit=r.unit,
                    description=r.description,
                    time=r.time,
                    momentary=r.attribute in MOMENTARY,
                )
            )
        return out

    # ------------------------------------------------------------------ POST-URL

    async def handle_post(self, body: bytes) -> tuple[int, str]:
        """One Maker API POST-URL request: ``{"content": {...}}``. Returns (HTTP status, text) to answer.

        200 is answered only once the event is committed to the journal (or was a known duplicate).
        """
        try:
            data = json.loads(body)
        except ValueError:
            self._log.warning("POST-URL body is not JSON; ignored", body=_snippet(body.decode("utf-8", "replace")))
            return 400, "body is not JSON"
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, dict) or not isinstance(content.get("name"), str):
            self._log.warning("POST-URL body has no content object with a name; ignored", body=_snippet(str(data)))
            return 400, 'expected {"content": {"name": ..., "value": ...}}'
        raw = self._from_push(content, "webhook")
        if raw is None:
            return 200, "ignored (location_events: false)"
        key = (raw.kind, raw.device_id or "", raw.attribute)
        if self._matcher.is_copy("webhook", key, raw.raw):
            # The eventsocket already brought this event; answer once it is committed.
            target = self._enqueued
            try:
                async with asyncio.timeout(30), self._progress:
                    await self._progress.wait_for(lambda: self._committed >= target)
            except TimeoutError:
                return 503, "journal busy"
            return 200, "OK"
        self._pushed_at[key] = time.monotonic()
        self._on_pushed(raw)
        try:
            readings = await self._typed([raw])
            await self.pipeline.ingest(self.name, HUB_TYPE, readings)
        except JournalFull:
            return 503, "journal full"
        except JournalError as exc:
            self._log.error("cannot record a POST-URL event", error=str(exc))
            return 500, "journal error"
        return 200, "OK"

    async def _register_post_url(self) -> None:
        """Point Maker API's postURL at our listener (hubitat.md 1.2), retrying until the hub takes it."""
        assert self.cfg.advertise_url and self.cfg.webhook_secret
        # The secret is one path segment of the URL the hub will POST to: quoted, so "/", "+", "?" or "#" (as in
        # a base64 secret) survive; the listener's route decodes it back.
        shown = f"{self.cfg.advertise_url}/hubitat/{self.name}/..."
        target = f"{self.cfg.advertise_url}/hubitat/{self.name}/{quote(self.cfg.webhook_secret.get(), safe='')}"
        backoff = _Backoff(2.0, self.cfg.backoff_max)
        while True:
            try:
                # The error text names the target without the secret: it goes to the logs.
                await self.client.get_json(f"postURL/{quote(target, safe='')}", shown=f"postURL/{shown}")
            except HubError as exc:
                delay = backoff.next()
                self._log.warning("cannot register the POST-URL yet", error=str(exc), retry_in=round(delay, 1))
                await asyncio.sleep(delay)
                continue
            self._log.info("registered the bridge as Maker API POST-URL", url=shown)
            return
