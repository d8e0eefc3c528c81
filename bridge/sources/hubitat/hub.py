"""The Hubitat Elevation source: Maker API polling, the ``/eventsocket`` stream and Maker API's POST-URL.

Wire formats follow ../shared/reference/hubitat.md; this module only wires them to the runner: a poll turns
``/devices/all`` (typed by each device's learned dataTypes), ``/modes`` and ``/hsm`` into readings; the eventsocket
and POST-URL hand pushed events to the runner's queue, matched against each other (both carry every event); the
POST-URL route answers 200 only once its event is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge.backoff import Backoff
from bridge.errors import HubError, HubProtocolError, JournalError, JournalFull
from bridge.events import Event, Reading, SourceName, shorten
from bridge.http import connector_tls
from bridge.server import NOT_FOUND
from bridge.sources import base
from bridge.sources.base import HubContext, Route, Source, Stream
from bridge.sources.hubitat.client import MakerApi
from bridge.sources.hubitat.config import HubitatConfig
from bridge.sources.hubitat.eventsocket import EventSocket, Frame
from bridge.sources.hubitat.health import HubHealth
from bridge.sources.hubitat.storm import StormWatch
from bridge.sources.hubitat.streams import Copy, DualStreamMatcher
from bridge.sources.hubitat.types import TypeBook
from bridge.sources.hubitat.values import (
    JUNK_ATTRIBUTE_KEYS,
    MOMENTARY,
    Pushed,
    coerce,
    post_content,
    pushed,
    text,
)

# An identical eventsocket frame within this many seconds is the hub repeating itself, not a second event.
REPEAT_WINDOW = 1.0


class HubitatSource(Source):
    """All paths of one Hubitat hub."""

    type_name = "hubitat"
    hub_type = "hubitat"
    Config = HubitatConfig

    def __init__(self, cfg: Any, hub: HubContext) -> None:
        super().__init__(cfg, hub)
        self.cfg: HubitatConfig = cast(HubitatConfig, cfg)
        self.poll_interval = self.cfg.poll_interval
        self.reconcile_interval = self.cfg.reconcile_interval
        self.backoff_max = self.cfg.backoff_max
        self.health_interval = self.cfg.health_interval if self.cfg.health else None
        self._session: aiohttp.ClientSession | None = None
        self._health_session: aiohttp.ClientSession | None = None
        self._health: HubHealth | None = None
        self._api: MakerApi | None = None
        self._types: TypeBook | None = None
        self._socket: EventSocket | None = None
        self._names: dict[str, str] = {}
        self._rooms: dict[str, str | None] = {}
        self._sensitive = frozenset(self.cfg.sensitive_attributes)
        # eventsocket and POST-URL carry the same stream; recognise the second copy of each event.
        self._matcher = DualStreamMatcher(enabled=self.cfg.eventsocket and self.cfg.webhook_secret is not None)
        # Digests of eventsocket frames of the last REPEAT_WINDOW seconds -> when, oldest first.
        self._recent_frames: dict[bytes, float] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def api(self) -> MakerApi:
        assert self._api is not None, "open() creates the client"
        return self._api

    @property
    def types(self) -> TypeBook:
        assert self._types is not None, "open() creates the type book"
        return self._types

    async def open(self) -> None:
        cfg = self.cfg
        tls = connector_tls(cfg.url, cfg.tls, self.hub.log)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=cfg.max_concurrency + 2))
        storm = StormWatch(self.hub)
        await storm.load()
        self._api = MakerApi(cfg, self._session, storm)
        if cfg.health:
            # A session of its own: health rounds never wait for (or take) a connection of the device poll.
            self._health_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=1))
            self._health = HubHealth(cfg, self._health_session, self.hub, storm)
        self._types = TypeBook(
            self._api, self.hub, spacing=cfg.detail_spacing, park_timeout=max(5.0, 2 * cfg.request_timeout)
        )
        await self._types.load()
        if self._matcher.enabled:
            # The POST copies of what a previous process recorded may still come (streams.py: across a crash).
            self._matcher.seed(await self.hub.recent(self._matcher.window))
        if cfg.eventsocket:
            self._socket = EventSocket(cfg, self._session, self.hub, self._on_frames)

    async def close(self) -> None:
        if self._types is not None:
            self._types.fail_parked()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._health_session is not None:
            await self._health_session.close()
            self._health_session = None

    def streams(self) -> dict[str, Stream]:
        out: dict[str, Stream] = {"types": self.types.run}
        if self._socket is not None:
            out["eventsocket"] = self._socket.run
        if self.cfg.advertise_url:
            out["postURL"] = self._register_post_url
        return out

    async def health(self) -> list[Reading]:
        return [] if self._health is None else await self._health.read()

    @property
    def stream_live(self) -> bool:
        return self._socket is not None and self._socket.connected

    @property
    def reconciles(self) -> bool:
        return self.cfg.eventsocket

    @property
    def remembers(self) -> bool:
        # What is recorded while both channels run is what the matcher must know again after a restart.
        return self._matcher.enabled

    @classmethod
    def routes(cls, cfg: Any) -> list[Route]:
        if getattr(cfg, "webhook_secret", None) is None:
            return []
        return [Route("POST", f"/hubitat/{cfg.name}/{{secret}}", "post_url")]

    # ------------------------------------------------------------------ polling

    async def poll(self, source: SourceName) -> list[Reading]:
        """Fetch the full state of the hub as readings (the diff keeps only changes)."""
        started = time.monotonic()
        devices = await self.api.get("devices/all")
        if not isinstance(devices, list):
            raise HubProtocolError(
                self.cfg.name, f"GET devices/all: expected a JSON list, got {type(devices).__name__}"
            )
        readings: list[Reading] = []
        now = time.time()
        for item in devices:
            if not isinstance(item, dict) or item.get("id") is None or isinstance(item.get("id"), dict | list):
                self.hub.rate_log.warning(
                    "bad-device-entry",
                    "skipped a device entry without an id in devices/all",
                    entry=shorten(str(item), 120),
                )
                continue
            readings.extend(await self._device_readings(item, source, now, started))
        if self.cfg.location_events:
            readings.extend(await self._location_readings(source, now, started))
        return readings

    def polled(self, events: list[Event], committed: asyncio.Future[None]) -> None:
        for ev in events:
            if ev.kind != "bridge":
                self._matcher.note_polled((ev.kind, ev.device_id or "", ev.attribute), ev.value, committed)

    async def _device_readings(
        self, item: dict[str, Any], source: SourceName, now: float, started: float
    ) -> list[Reading]:
        device_id = str(item["id"])
        label = text(item.get("label")) or text(item.get("name"))
        if label:
            self._names[device_id] = label
        self._rooms[device_id] = text(item.get("room"))
        attributes = item.get("attributes")
        if not isinstance(attributes, dict):
            return []
        types = self.types.get(device_id)
        missing = [] if types is None else [a for a in attributes if a not in types and a not in JUNK_ATTRIBUTE_KEYS]
        if types is None or missing:
            # An attribute the last detail fetch did not already miss goes first: learn() fetches for it now.
            need = next((a for a in missing if self.types.would_fetch(device_id, a)), missing[0]) if missing else None
            types = await self.types.learn(device_id, need)
        out = []
        for attribute, raw in attributes.items():
            if (attribute in JUNK_ATTRIBUTE_KEYS and attribute not in types) or attribute in self._sensitive:
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
                    observed=started,
                )
            )
        return out

    async def _location_readings(self, source: SourceName, now: float, started: float) -> list[Reading]:
        out: list[Reading] = []
        with contextlib.suppress(HubProtocolError):
            # 4xx when "Allow control of modes" is off in Maker API (hubitat.md 1.1): not an error for us.
            modes = await self.api.get("modes")
            if isinstance(modes, list):
                for mode in modes:
                    if isinstance(mode, dict) and mode.get("active") is True:
                        out.append(
                            Reading(
                                "location", None, "mode", text(mode.get("name")), source, time=now, observed=started
                            )
                        )
        with contextlib.suppress(HubProtocolError):
            hsm = await self.api.get("hsm")
            if isinstance(hsm, dict) and isinstance(hsm.get("hsm"), str):
                out.append(Reading("location", None, "hsmStatus", hsm["hsm"], source, time=now, observed=started))
        return out

    # ------------------------------------------------------------------ pushed events (both channels)

    async def _on_frames(self, frames: list[Frame]) -> None:
        now, observed = time.time(), time.monotonic()
        matching = self._matcher.enabled
        types = self._types
        assert types is not None
        for frame in frames:
            # Repeats matter only with POST-URL on too (see _repeated); the diff drops them otherwise.
            if matching and self._repeated(frame.text, observed):
                continue
            p = pushed(frame.obj, "eventsocket", now, self.cfg.location_events, observed)
            if p is None:
                continue
            if matching or p.kind != "device" or p.attribute in self._sensitive or types.should_park(p):
                await self._take(p, len(frame.text))
            else:
                # The hot path (a known device's event, no second channel to match): straight into the queue.
                await self.hub.push([self._typed(p)], size=len(frame.text), track=False)

    def _repeated(self, frame: str, now: float) -> bool:
        """The eventsocket sends some frames twice (hubitat.md 2.2): the same text again within a second.

        The diff would drop the repeat anyway, but with POST-URL on too, a repeat counted as a second eventsocket
        event would later swallow a real POST-URL change back to that value as its "copy".
        """
        recent = self._recent_frames
        while recent:
            oldest = next(iter(recent))
            if now - recent[oldest] <= REPEAT_WINDOW and len(recent) < 10_000:
                break
            del recent[oldest]
        digest = hashlib.blake2b(frame.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in recent:
            return True
        recent[digest] = now
        return False

    async def _take(self, p: Pushed, size: int) -> asyncio.Future[list[Event]] | None:
        """Type, match and queue one pushed event; the future says when it is committed (None: not recorded)."""
        if p.attribute in self._sensitive:
            return None
        if p.kind == "hub" and p.attribute == "systemStart":
            # The hub rebooted: whatever changed during the reboot is only visible to a poll.
            self.hub.rate_log.info("systemStart", "hub restarted", build=shorten(str(p.raw), 40))
            self.hub.reconcile("hub restarted")
        types = self._types
        assert types is not None
        if types.should_park(p):
            return await types.park(p, size, self._deliver)
        return await self._deliver(p, size)

    async def _deliver(self, p: Pushed, size: int) -> asyncio.Future[list[Event]] | None:
        reading = self._typed(p)
        match = self._matcher.match(p.source, p.key, p.raw)
        # A webhook POST must be answered, so it never waits for journal room: it is told "full" at once. An
        # eventsocket frame nobody waits for needs no future of its own (the hot path: no matching, no POST).
        webhook = p.source == "webhook"
        note = None if isinstance(match, Copy) else match
        try:
            if isinstance(match, Copy):
                # Recorded only if the original's commit failed (then this copy is the event).
                return await self.hub.push([reading], size=size, unless=match.original.done, hold=not webhook)
            future = await self.hub.push([reading], size=size, hold=not webhook, track=webhook or note is not None)
        except JournalError as exc:
            failed: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            if note is not None:
                note.committed(failed)
            return failed
        if note is not None:
            note.committed(future)
        return future

    def _typed(self, p: Pushed) -> Reading:
        did = p.device_id
        types = self._types
        assert types is not None
        data_type = types.type_of(did, p.attribute) if p.kind == "device" and did is not None else None
        return Reading(
            kind=p.kind,
            device_id=did,
            attribute=p.attribute,
            value=coerce(p.raw, data_type),
            source=p.source,
            device=p.device or (self._names.get(did) if did else None),
            room=self._rooms.get(did) if did else None,
            unit=p.unit,
            description=p.description,
            time=p.time,
            momentary=p.attribute in MOMENTARY,
            observed=p.observed,
        )

    # ------------------------------------------------------------------ POST-URL

    async def handle(self, route: str, request: web.Request) -> web.StreamResponse:
        """One Maker API POST-URL request: ``{"content": {...}}``. 200 only once the event is committed."""
        secret = self.cfg.webhook_secret
        given = request.match_info.get("secret", "")
        # Constant-time compare, and the same 404 for a wrong hub or a wrong secret: nothing to probe.
        if secret is None or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.get().encode()):
            self.hub.rate_log.warning(
                "bad-secret", "rejected a POST with an unknown hub or secret", peer=request.remote
            )
            return web.Response(status=404, text=NOT_FOUND)
        try:
            body = await request.read()
        except web.HTTPException:
            raise
        except Exception as exc:  # a broken gzip body, a client gone: one line, not a traceback
            self.hub.rate_log.warning("bad-body", "cannot read a POST-URL body", error=shorten(str(exc), 120))
            return web.Response(status=400, text="cannot read the body")
        content = post_content(body)
        if isinstance(content, str):
            self.hub.rate_log.warning(
                "bad-post", "POST-URL body ignored", reason=content, body=shorten(body.decode("utf-8", "replace"), 80)
            )
            return web.Response(status=400, text=content)
        p = pushed(content, "webhook", time.time(), self.cfg.location_events, time.monotonic())
        if p is None:
            return web.Response(status=200, text="ignored (not a device, hub or location event)")
        future = await self._take(p, len(body))
        if future is None:
            return web.Response(status=200, text="ignored (sensitive attribute)")
        # No timer of its own (one per request cost more than the rest of the request): the runner fails a reading
        # that waits longer than its answer window (the journal cannot write, or is full) with JournalError.
        try:
            # Not shielded: if this request is cancelled (the hub gave up), the readings are committed all the same.
            await future
        except JournalFull:
            return web.Response(status=503, text="journal full")
        except JournalError as exc:
            self.hub.rate_log.error("post-journal", "cannot record a POST-URL event", error=shorten(str(exc), 200))
            return web.Response(status=500, text="journal error")
        return web.Response(status=200, text="OK")

    async def _register_post_url(self) -> None:
        """Point Maker API's postURL at our listener (hubitat.md 1.2), retrying until the hub takes it."""
        assert self.cfg.advertise_url and self.cfg.webhook_secret
        # The secret is one path segment of the URL the hub will POST to: quoted, so "/", "+", "?" or "#" (as in a
        # base64 secret) survive; the listener's route decodes it back.
        shown = f"{self.cfg.advertise_url}/hubitat/{self.cfg.name}/..."
        target = f"{self.cfg.advertise_url}/hubitat/{self.cfg.name}/{quote(self.cfg.webhook_secret.get(), safe='')}"
        floor = 2 * base.HUB_RETRY_FLOOR
        backoff = Backoff(floor, self.cfg.backoff_max, floor=min(floor, self.cfg.backoff_max))
        while True:
            try:
                # The error text names the target without the secret: it goes to the logs.
                await self.api.get(f"postURL/{quote(target, safe='')}", shown=f"postURL/{shown}")
            except HubError as exc:
                delay = backoff.next()
                self.hub.log.warning(
                    "cannot register the POST-URL yet", error=shorten(str(exc), 300), retry_in=round(delay, 1)
                )
                await asyncio.sleep(delay)
                continue
            self.hub.log.info("registered the bridge as Maker API POST-URL", url=shown)
            return
