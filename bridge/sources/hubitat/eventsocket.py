"""Hubitat's ``/eventsocket``: the frame parser (a pure function of the text) and the socket that feeds it.

The socket is undocumented and unsupported (hubitat.md 2.1): frames are hand-built JSON, usually one object per
message, but an object can be split across messages and a message can be garbage (2.2, 2.5). Only text that starts
an object is ever kept for the next message, so a stray ``"`` cannot swallow the valid frame after it; nothing
nested too deeply or larger than :data:`MAX_PENDING` is kept either. The socket is never trusted alone: every
(re)connect asks for a reconciliation poll, and a socket with no frame, ping or pong for ``eventsocket_timeout`` is
dead and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp

from bridge.backoff import Backoff
from bridge.events import shorten
from bridge.http import transport_problem
from bridge.jsontext import NotJson, raw_decode
from bridge.sources import base
from bridge.sources.base import HubContext
from bridge.sources.hubitat.config import HubitatConfig

# An object still incomplete after this much text is not a split frame: drop it.
MAX_PENDING = 1024 * 1024


class Frame(NamedTuple):
    """One JSON object of the stream and its text (the text sizes it and recognises a repeat)."""

    obj: dict[str, Any]
    text: str


@dataclass(slots=True)
class Parsed:
    """The objects of one message, and a short snippet of each piece that was not usable."""

    frames: list[Frame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


_NO_PROBLEMS: list[str] = []  # shared by the fast path; never appended to


def _cut_short(exc: json.JSONDecodeError, text: str) -> bool:
    """Whether a parse error means "the rest comes in the next message" rather than "this is not JSON".

    A message cut inside a string fails as "Unterminated string" (the string runs to the end of the text); a cut
    inside a literal (``nul``), a number or an escape (``\\u00``) fails a few characters before the end; any other
    cut fails at the very end.
    """
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()) - 6


class FrameParser:
    """Turns eventsocket messages into JSON objects; re-joins an object split across messages."""

    # Malformed pieces reported per message; after that many the rest of the message is dropped in one problem.
    # Each resync after garbage costs the JSON decoder a pass over the text up to that point (its error says the
    # line and column), so a megabyte of "{" resynced at every brace took minutes and one snippet per brace.
    max_problems = 16

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._pending = ""

    @property
    def pending(self) -> int:
        """Characters held back waiting for the rest of a split object."""
        return len(self._pending)

    def feed(self, message: str) -> Parsed:
        if not self._pending and message[:1] == "{":
            # The usual message: exactly one whole object.
            try:
                obj, end = raw_decode(message, 0)
            except ValueError:
                pass
            else:
                if end == len(message) and isinstance(obj, dict):
                    return Parsed([Frame(obj, message)], _NO_PROBLEMS)
        out = Parsed()
        if self._pending:
            pending, self._pending = self._pending, ""
            joined = Parsed()
            if self._scan(pending + message, joined, strict_first=True):
                # (Whitespace alone stands for nothing: it is part of the split object, as any other character.)
                if not (self._pending and message.strip(" \t\r\n") and _stands_alone(message)):
                    out.frames, out.problems = joined.frames, joined.problems
                    return out
                # Still incomplete, but the message is a whole object by itself: a new frame, not a continuation.
                self._pending = ""
            # The held-back text does not continue in this message: it was garbage. Read the message on its own.
            out.problems.append(shorten(pending, 80))
        self._scan(message, out, strict_first=False)
        return out

    def _scan(self, text: str, out: Parsed, *, strict_first: bool) -> bool:
        """Parse ``text`` into ``out``; False only when ``strict_first`` and the first object is malformed."""
        pos, end = 0, len(text)
        first = True
        bad = 0  # malformed pieces of this text so far
        while True:
            while pos < end and text[pos] in " \t\r\n":
                pos += 1
            if pos >= end:
                return True
            if bad >= self.max_problems:
                out.problems.append(f"dropped the rest after {bad} malformed pieces: {shorten(text[pos:], 60)}")
                return True
            if text[pos] == "{":
                try:
                    obj, stop = raw_decode(text, pos)
                except NotJson as exc:
                    out.problems.append(f"{exc}: {shorten(text[pos:], 60)}")
                    return True  # the rest of this message cannot be trusted
                except json.JSONDecodeError as exc:
                    if _cut_short(exc, text):
                        rest = text[pos:]
                        if len(rest) > self.max_pending:
                            out.problems.append(f"an object over {self.max_pending} characters: {shorten(rest, 60)}")
                        else:
                            self._pending = rest  # incomplete: the rest of the object comes in the next message
                        return True
                    if first and strict_first:
                        return False
                else:
                    out.frames.append(Frame(obj, text[pos:stop]))
                    pos, first = stop, False
                    continue
            # Not a usable object here (a stray quote, a number, an array, a broken object): report it and resume at
            # the next "{".
            nxt = text.find("{", pos + 1)
            out.problems.append(shorten(text[pos : nxt if nxt >= 0 else end], 80))
            if nxt < 0:
                return True
            pos, first, bad = nxt, False, bad + 1


def _stands_alone(message: str) -> bool:
    """Whether ``message`` is one or more complete JSON objects and nothing else."""
    pos, end = 0, len(message)
    while True:
        while pos < end and message[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return True
        if message[pos] != "{":
            return False
        try:
            _, pos = raw_decode(message, pos)
        except ValueError:
            return False


OnFrames = Callable[[list[Frame]], Awaitable[None]]


class EventSocket:
    """The ``/eventsocket`` connection of one hub: connect, read, detect a dead socket, reconnect with backoff."""

    def __init__(
        self, cfg: HubitatConfig, session: aiohttp.ClientSession, hub: HubContext, on_frames: OnFrames
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.hub = hub
        self.on_frames = on_frames
        self.connected = False
        self.url = (
            "wss://" + cfg.url[8:] if cfg.url.startswith("https://") else "ws://" + cfg.url[7:]
        ) + "/eventsocket"

    async def run(self) -> None:
        floor = base.HUB_RETRY_FLOOR
        backoff = Backoff(floor, min(60.0, self.cfg.backoff_max), floor=floor)
        down_since: float | None = None
        self.hub.stream_state("eventsocket", False, "connecting")
        while True:
            reason = await self._session_once(backoff, down_since)
            if self.connected:
                down_since = None
            self.connected = False
            self.hub.stream_state("eventsocket", False, reason)
            delay = backoff.next()
            # One warning per outage; the retries of the same outage are debug, so a hub that is off for a day does
            # not fill the journal with a line a minute.
            if down_since is None:
                down_since = time.monotonic()
                self.hub.log.warning("eventsocket down; reconnecting", reason=reason, retry_in=round(delay, 1))
            else:
                self.hub.log.debug("eventsocket still down", reason=reason, retry_in=round(delay, 1))
            await asyncio.sleep(delay)

    async def _session_once(self, backoff: Backoff, down_since: float | None) -> str:
        """Connect and read until the socket ends; returns why it ended."""
        try:
            # The handshake gets the request timeout of its own: aiohttp's default would wait 300 s.
            async with asyncio.timeout(self.cfg.request_timeout):
                ws = await self.session.ws_connect(
                    self.url,
                    autoping=False,
                    heartbeat=None,
                    max_msg_size=MAX_PENDING,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"cannot connect: {transport_problem(exc, self.url, self.cfg.request_timeout)}"
        async with ws:
            self.connected = True
            self.hub.stream_state("eventsocket", True)
            if down_since is None:
                self.hub.log.info("eventsocket connected")
            else:
                self.hub.log.info("eventsocket connected again", down_for=round(time.monotonic() - down_since, 1))
            backoff.reset()
            # A stream is never trusted alone: whatever changed while it was down arrives as reconcile.
            self.hub.reconcile("eventsocket connected")
            try:
                return await self._read(ws)
            except (aiohttp.ClientError, OSError) as exc:
                return f"socket error: {transport_problem(exc, self.url)}"

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Read messages until the socket closes or goes quiet. Returns why it ended."""
        parser = FrameParser()
        watchdog = _Watchdog(ws, self.cfg.eventsocket_timeout, self.hub.name)
        try:
            while True:
                # No timeout per receive: a timer per message cost more than the parsing. The watchdog pings a quiet
                # socket and closes a dead one, which ends this receive.
                msg = await ws.receive()
                watchdog.heard = True
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    data = msg.data if isinstance(msg.data, str) else msg.data.decode("utf-8", errors="replace")
                    parsed = parser.feed(data)
                    for problem in parsed.problems:
                        self.hub.rate_log.warning(
                            "malformed-frame", "ignored a malformed eventsocket frame", frame=shorten(problem, 120)
                        )
                    if parsed.frames:
                        await self.on_frames(parsed.frames)
                elif msg.type == aiohttp.WSMsgType.PING:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.pong(msg.data)
                elif msg.type == aiohttp.WSMsgType.PONG:
                    pass
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    return watchdog.verdict or "closed by the hub"
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    return watchdog.verdict or f"socket error: {shorten(str(ws.exception()), 200)}"
        finally:
            await watchdog.stop()


class _Watchdog:
    """Dead-socket detection without a timer per message: every ``window / 3`` (at least 1 s) it looks whether
    anything was heard since its last look. Quiet: ping (a half-open socket, a hub that rebooted without a FIN,
    never answers). Nothing heard for ``window``: close the socket, which ends the reader's ``receive()``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, window: float, hub: str) -> None:
        self.ws = ws
        self.window = window
        self.heard = True
        self.verdict: str | None = None
        self._task = asyncio.create_task(self._watch(), name=f"hub[{hub}].eventsocket.watchdog")

    async def _watch(self) -> None:
        probe_every = max(1.0, self.window / 3)
        quiet_since = time.monotonic()
        while True:
            await asyncio.sleep(probe_every)
            now = time.monotonic()
            if self.heard:
                self.heard = False
                quiet_since = now
                continue
            if now - quiet_since + probe_every > self.window:
                self.verdict = f"no frame, ping or pong for {self.window:g}s (dead socket)"
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5.0):
                        await self.ws.close()
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.ping()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
