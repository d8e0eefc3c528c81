"""Protocol-faithful Splunk HTTP Event Collector (HEC) simulator.

A real aiohttp server (127.0.0.1 by default) that answers the way Splunk HEC does, as described in the
team reference ``/work/shared/reference/splunk_hec.md`` (section numbers in comments, "§", point there).
Tests, the ``hubbridge demo`` command and the benchmarks talk to it over real sockets.

What it implements (reference §7 is the checklist it follows):

* routes: ``POST /services/collector``, ``/event``, ``/event/1.0`` (JSON events), ``/raw``, ``/raw/1.0``,
  ``/ack``; ``GET /health`` and ``/health/1.0`` (§1.1);
* authentication: ``Authorization: Splunk <token>``, HTTP Basic with the token as password, ``?token=``
  only for tokens that allow query-string auth (§1.2);
* channels (header or ``?channel=``), GUID-checked, required for ack tokens and for ``/raw`` (§1.3);
* gzip request bodies, 415 for other encodings, 413 above ``max_content_length`` measured on the
  wire bytes (§1.4, §2.4);
* concatenated JSON envelopes with per-event validation and partial acceptance: events before the first bad
  one are indexed, the reply carries its 0-based ``invalid-event-number`` (§2.1, §3.1);
* the code table of §3.2 with its exact texts;
* indexer acknowledgement per token: ackIds per channel from 0, ``/ack`` polling, true reported once
  (§4);
* fault injection: busy/5xx replies with ``Retry-After``, outages, dropped connections before and after
  the body is read, slow responses, lost or late acks (§7 "Injectable faults").

Run it standalone with ``python -m bridge.sim.hec --port 8088``; it prints one line per indexed event.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import gzip
import json
import math
import random
import re
import signal
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, NoReturn

from aiohttp import web

__all__ = ["CODE_TABLE", "DEFAULT_MAX_EVENT_SIZE", "DEFAULT_TOKEN", "HEALTH_STATES", "HecSim", "RequestRecord", "main"]

DEFAULT_TOKEN: Final = "sim-hec-token"

#: §3.2: HEC status codes -> (HTTP status, exact reply text). Codes 23-27 are only [3P] in the reference
#: but are kept so fault injection can produce them (§7 "Injectable faults" lists 23, 24, 25, 26, 27).
CODE_TABLE: Final[dict[int, tuple[int, str]]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
    23: (503, "Server is shutting down"),
    24: (200, "HEC queue is approaching its capacity limit"),
    25: (200, "HEC ACK is approaching its capacity limit"),
    26: (429, "HEC queue is at capacity and cannot process any more requests"),
    27: (429, "HEC ACK channel is at capacity and cannot process any more requests"),
}

#: ``health_status`` values -> health code (§1.1 healthy body; §7 "a switchable 503 with codes 18, 19, 20").
#: "unhealthy" is the short name for the common case, queues full.
HEALTH_STATES: Final[dict[str, int]] = {
    "ok": 17,
    "unhealthy": 18,
    "queues_full": 18,
    "ack_unavailable": 19,
    "queues_full_ack_unavailable": 20,
}

#: When ``fail_next`` gets no code, the HEC code a Splunk server pairs with that status (§3.2). Statuses
#: not listed (502, 504, 408, ...) come from proxies in front of HEC and get a plain-text body, no code.
_DEFAULT_CODE_FOR_STATUS: Final[dict[int, int]] = {200: 0, 500: 8, 503: 9, 429: 26}

#: §2.4: inputs.conf maxEventSize default (5 MiB), checked on each decompressed event (§1.4).
DEFAULT_MAX_EVENT_SIZE: Final = 5_242_880

_EVENT_PATHS: Final = ("/services/collector", "/services/collector/event", "/services/collector/event/1.0")
_RAW_PATHS: Final = ("/services/collector/raw", "/services/collector/raw/1.0")
_ACK_PATH: Final = "/services/collector/ack"
_HEALTH_PATHS: Final = ("/services/collector/health", "/services/collector/health/1.0")
_METHOD_OF_PATH: Final[dict[str, str]] = {
    **dict.fromkeys((*_EVENT_PATHS, *_RAW_PATHS, _ACK_PATH), "POST"),
    **dict.fromkeys(_HEALTH_PATHS, "GET"),
}

# §1.3: a channel "must be a GUID/UUID formatted value"; the canonical 8-4-4-4-12 hex form only.
_GUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# §2.1: ``time`` may be a number or a numeric string (Splunk's own loggers send strings).
_NUMERIC_RE: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# JSON insignificant whitespace, skipped between concatenated envelopes (§2.2: none or "\n" in practice).
_WS: Final = frozenset(" \t\n\r")

_MISSING: Final = object()
_LIMIT_REACHED: Final = -1  # internal "error code": an injected partial failure stopped the batch

_JSON_CT: Final = "application/json"


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN/Infinity literals; JSON (and so Splunk) does not -> code 6.
    raise ValueError(f"invalid JSON constant {name}")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _hec_body(code: int, invalid_event_number: int | None = None, ack_id: int | None = None) -> bytes:
    """The reply body of §3.1: ``{"text":...,"code":N}`` plus ``invalid-event-number`` / ``ackId``."""
    body: dict[str, Any] = {"text": CODE_TABLE[code][1], "code": code}
    if invalid_event_number is not None:
        body["invalid-event-number"] = invalid_event_number
    if ack_id is not None:
        body["ackId"] = ack_id
    return _dumps(body)


_SUCCESS_BODY: Final = _hec_body(0)


@dataclass(slots=True)
class RequestRecord:
    """One request the simulator saw, in arrival order.

    ``status`` is 0 when the connection was dropped without a response. ``code`` is the HEC code of the
    reply, None for replies without one (413, 415, 404, plain proxy errors, drops). ``headers`` has
    lower-cased names and the Authorization value redacted; ``query`` has ``token`` redacted.
    ``body_bytes`` is the request body after gzip decoding (the wire bytes when it could not be decoded;
    empty when ``HecSim.record_bodies`` is False). ``n_events`` counts the events this request indexed.
    """

    method: str
    path: str
    status: int = 0
    code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: bytes = b""
    n_events: int = 0
    channel: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    ack_id: int | None = None


@dataclass(slots=True)
class _Token:
    ack: bool = False
    enabled: bool = True
    query_auth: bool = False


@dataclass(slots=True)
class _Channel:
    next_id: int = 0
    # ackId -> loop time from which it reports true (math.inf: lost, never true). §4 item 5: an id is
    # removed once it has been reported true.
    pending: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Fault:
    status: int
    code: int | None
    retry_after: float | None
    invalid_event_number: int | None


class _AuthError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _redact_auth(value: str) -> str:
    scheme, sep, _ = value.partition(" ")
    return f"{scheme} <redacted>" if sep else "<redacted>"


def _format_retry_after(seconds: float) -> str:
    # RFC 9110 delta-seconds is an integer; keep a fraction only when the caller asked for one.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class HecSim:
    """A Splunk HEC server on a real socket, with inspection and fault-injection hooks.

    Everything public is plain attributes so tests can flip faults at any time. All state lives in the
    event loop thread; nothing here is thread-safe.
    """

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        ack_tokens: Iterable[str] = (),
        default_index: str = "main",
        allowed_indexes: Iterable[str] | None = None,
        max_content_length: int = 1_000_000,
        seed: int = 0,
    ) -> None:
        self._tokens: dict[str, _Token] = {t: _Token() for t in tokens}
        # ack_tokens are tokens too: useACK is a per-token setting (§4 "Why it exists").
        for t in ack_tokens:
            self._tokens[t] = _Token(ack=True)
        self.default_index = default_index
        # §2.1: index must be in the token's allowed list when one is set, else code 7. The token's
        # default index counts as allowed [INF]: events without an index land there anyway.
        self.allowed_indexes: frozenset[str] | None = (
            None if allowed_indexes is None else frozenset(allowed_indexes) | {default_index}
        )
        self.max_content_length = max_content_length
        self.max_event_size = DEFAULT_MAX_EVENT_SIZE
        self._rng = random.Random(seed)

        self.indexed: list[dict[str, Any]] = []
        self.requests: list[RequestRecord] = []
        #: Keep request bodies in ``requests``; benchmarks turn this off to save memory.
        self.record_bodies = True
        #: Called synchronously with each envelope as it is indexed (the CLI prints with it). Must not raise.
        self.on_index: Callable[[dict[str, Any]], None] | None = None

        # --- fault injection (settable at any time) --------------------------------------------------
        #: Every event post and ack query gets 503/9 "Server is busy"; health reports 503/18.
        self.outage = False
        #: The next N event posts: connection closed before the body is read (nothing indexed).
        self.drop_before_body = 0
        #: The next N event posts: body read and indexed, then the connection closed without a reply.
        self.drop_after_body = 0
        #: Seconds to wait, after processing, before answering any request.
        self.response_delay = 0.0
        self._health_status = "ok"
        #: Returns a reason to refuse an envelope: HEC-style partial acceptance with 400/6.
        self.reject_event_if: Callable[[dict[str, Any]], str | None] | None = None
        #: Seconds after an ackId is issued before ``/ack`` reports it true.
        self.ack_delay = 0.0
        #: ackIds issued while this is True never report true (lost acks).
        self.ack_never = False
        #: Probability (0..1) that an event post is answered 503/9 without indexing, drawn from the
        #: seeded RNG so a run is reproducible. 0 disables it.
        self.busy_probability = 0.0
        #: Envelopes refused by ``reject_event_if``, with the reason it gave, in order.
        self.rejections: list[tuple[dict[str, Any], str]] = []

        self._faults: deque[list[Any]] = deque()  # [remaining, _Fault]
        self._channels: dict[str, _Channel] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (append ``/services/collector/event``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("HecSim already started")
        app = web.Application()
        for path in _EVENT_PATHS:
            app.router.add_post(path, self._handle_event)
        for path in _RAW_PATHS:
            app.router.add_post(path, self._handle_raw)
        app.router.add_post(_ACK_PATH, self._handle_ack)
        for path in _HEALTH_PATHS:
            app.router.add_get(path, self._handle_health, allow_head=False)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        # auto_decompress=False: §1.4 says the size limit applies to the compressed bytes and only gzip is
        # accepted, so the simulator must see the wire body and decode it itself. No access log: the
        # benchmark pushes tens of thousands of events per second through here.
        runner = web.AppRunner(app, access_log=None, auto_decompress=False, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> HecSim:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ inspection

    def events(self) -> list[dict[str, Any]]:
        """Indexed envelopes that are not metrics."""
        return [e for e in self.indexed if e.get("event") != "metric"]

    def metrics(self) -> list[dict[str, Any]]:
        """Indexed metric envelopes (§2.3: ``"event": "metric"`` with ``metric_name`` fields)."""
        return [e for e in self.indexed if e.get("event") == "metric"]

    def ids(self) -> list[str]:
        """``event["id"]`` of every indexed non-metric envelope whose event is an object with an id."""
        out: list[str] = []
        for e in self.indexed:
            ev = e.get("event")
            if type(ev) is dict and "id" in ev:
                out.append(ev["id"])
        return out

    def clear(self) -> None:
        """Forget indexed events and recorded requests (tokens, faults and ack state are kept)."""
        self.indexed.clear()
        self.requests.clear()
        self.rejections.clear()

    async def wait_indexed(self, n: int, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` envelopes are indexed; TimeoutError otherwise."""
        if len(self.indexed) >= n:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # ------------------------------------------------------------------ tokens and faults

    def add_token(self, token: str, *, ack: bool = False, query_auth: bool = False) -> None:
        """Add (or replace) a token. ``query_auth`` is Splunk's ``allowQueryStringAuth`` (§1.2)."""
        self._tokens[token] = _Token(ack=ack, query_auth=query_auth)

    def revoke_token(self, token: str) -> None:
        """Delete a token: later requests with it get 403/4 "Invalid token". Unknown tokens are ignored."""
        self._tokens.pop(token, None)

    def disable_token(self, token: str) -> None:
        """Disable a token (kept but refused with 403/1 "Token disabled", §1.2)."""
        self._tokens[token].enabled = False

    def enable_token(self, token: str) -> None:
        self._tokens[token].enabled = True

    @property
    def health_status(self) -> str:
        """One of ``HEALTH_STATES``: "ok" (200/17) or an unhealthy state (503/18, 19 or 20)."""
        return self._health_status

    @health_status.setter
    def health_status(self, value: str) -> None:
        if value not in HEALTH_STATES:
            raise ValueError(f"health_status must be one of {sorted(HEALTH_STATES)}, not {value!r}")
        self._health_status = value

    def fail_next(
        self,
        n: int,
        status: int,
        code: int | None = None,
        *,
        retry_after: float | None = None,
        invalid_event_number: int | None = None,
    ) -> None:
        """Answer the next ``n`` event posts (``/event``, ``/raw`` and aliases) with ``status``.

        ``code`` defaults to the code Splunk pairs with the status (500->8, 503->9, 429->26); a status with
        no HEC code (502, 504, 408, ...) gets a plain-text body, as a proxy in front of HEC would send. With
        a 2xx status (e.g. codes 24/25, "approaching capacity" warnings) the batch is processed and indexed
        normally and only the reply code/text change. ``invalid_event_number=k`` makes it a partial
        failure as in §3.1 (``{"text":"Server is busy","code":9,"invalid-event-number":10}``): the first
        ``k`` events are indexed, the rest are not. Calls queue up in order.
        """
        if n <= 0:
            return
        if code is None:
            code = _DEFAULT_CODE_FOR_STATUS.get(status)
        elif code not in CODE_TABLE:
            raise ValueError(f"unknown HEC code {code}")
        self._faults.append([n, _Fault(status, code, retry_after, invalid_event_number)])

    def _take_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[0] -= 1
        if entry[0] <= 0:
            self._faults.popleft()
        fault: _Fault = entry[1]
        return fault

    # ------------------------------------------------------------------ request helpers

    def _record(self, request: web.Request, channel: str | None) -> RequestRecord:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = _redact_auth(headers["authorization"])
        query = dict(request.query)
        if "token" in query:
            query["token"] = "<redacted>"
        rec = RequestRecord(request.method, request.path, headers=headers, channel=channel, query=query)
        self.requests.append(rec)
        return rec

    @staticmethod
    def _channel_of(request: web.Request) -> str | None:
        # §1.3: header first, then the query parameter (Vector's required_channel order).
        return request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")

    def _authenticate(self, request: web.Request) -> _Token:
        """§1.2: the token from the header (Splunk or Basic) or, when allowed, the query string."""
        auth = request.headers.get("Authorization")
        if auth is not None:
            token = self._token_from_header(auth)
            if token is None:
                raise _AuthError(3)  # malformed, incl. "Bearer" and lower-case "splunk" (§1.2)
            info = self._tokens.get(token)
            if info is None:
                raise _AuthError(4)
            if not info.enabled:
                raise _AuthError(1)
            return info
        query_token = request.query.get("token")
        if query_token is None:
            raise _AuthError(2)
        info = self._tokens.get(query_token)
        if info is None:
            raise _AuthError(4)
        if not info.enabled:
            raise _AuthError(1)
        if not info.query_auth:
            raise _AuthError(16)  # allowQueryStringAuth is off by default (§1.2)
        return info

    @staticmethod
    def _token_from_header(auth: str) -> str | None:
        # "Splunk <token>", case-sensitive keyword ([3P] in §1.2; Vector matches it exactly too).
        if auth.startswith("Splunk "):
            token = auth[7:]
            return token or None
        scheme, _, rest = auth.partition(" ")
        # HTTP Basic with the token as password and any user name (§1.2). Auth schemes are
        # case-insensitive in HTTP, unlike the "Splunk" keyword above.
        if scheme.lower() == "basic" and rest:
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            _, colon, password = decoded.partition(":")
            return password if colon and password else None
        return None

    def _reply(
        self,
        rec: RequestRecord,
        code: int,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        invalid_event_number: int | None = None,
        ack_id: int | None = None,
    ) -> web.Response:
        http_status = CODE_TABLE[code][0] if status is None else status
        rec.status = http_status
        rec.code = code
        if code == 0 and invalid_event_number is None and ack_id is None:
            body = _SUCCESS_BODY
        else:
            body = _hec_body(code, invalid_event_number, ack_id)
        return web.Response(status=http_status, body=body, content_type=_JSON_CT, headers=headers)

    @staticmethod
    def _plain(rec: RequestRecord, status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
        rec.status = status
        rec.code = None
        return web.Response(status=status, text=text, headers=headers)

    def _fault_reply(
        self,
        rec: RequestRecord,
        fault: _Fault,
        *,
        invalid_event_number: int | None = None,
        ack_id: int | None = None,
    ) -> web.Response:
        headers = None
        if fault.retry_after is not None:
            headers = {"Retry-After": _format_retry_after(fault.retry_after)}
        if fault.code is None:
            try:
                reason = HTTPStatus(fault.status).phrase
            except ValueError:
                reason = "Error"
            return self._plain(rec, fault.status, f"{fault.status} {reason}", headers)
        return self._reply(
            rec,
            fault.code,
            status=fault.status,
            headers=headers,
            invalid_event_number=invalid_event_number,
            ack_id=ack_id,
        )

    @staticmethod
    def _drop(request: web.Request, rec: RequestRecord) -> web.Response:
        """Close the connection without answering. aiohttp then fails to write the returned response,
        treats it as a client disconnect and moves on quietly (web_protocol finish_response)."""
        rec.status = 0
        rec.code = None
        transport = request.transport
        if transport is not None:
            transport.close()
        return web.Response(status=204)

    def _decode_body(self, request: web.Request, wire: bytes, rec: RequestRecord) -> tuple[bytes, int | None]:
        """Undo the content coding and record the body; returns (body, None) or (wire, failure status).

        §1.4: gzip is the only content coding HEC accepts; others get 415 (as Vector and OTel do). An
        undecodable gzip body is "Invalid data format" [INF]. The caller answers the failure only after
        authentication, which takes precedence over anything about the body (§7).
        """
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        body, failure = wire, None
        if encoding == "gzip":
            try:
                body = gzip.decompress(wire)
            except (OSError, EOFError, zlib.error):
                failure = 400
        elif encoding not in ("", "identity"):
            failure = 415
        if self.record_bodies:
            rec.body_bytes = body
        return body, failure

    def _encoding_failure(self, rec: RequestRecord, failure: int) -> web.Response:
        if failure == 415:
            return self._plain(rec, 415, "Unsupported Content-Encoding: only gzip is supported")
        return self._reply(rec, 6)

    def _check_channel(self, channel: str | None) -> int | None:
        if not channel:
            return 10  # §1.3 / §4 item 2: "Data channel is missing"
        if _GUID_RE.fullmatch(channel) is None:
            return 11  # §1.3: "Invalid data channel", not a GUID
        return None

    def _assign_ack(self, channel: str) -> int:
        # §4 item 3: one ackId per request, numbered per channel from 0. Lost acks (ack_never) are decided
        # when the id is issued: a lost ack stays lost even if ack_never is switched off later.
        chan = self._channels.get(channel)
        if chan is None:
            chan = self._channels[channel] = _Channel()
        ack_id = chan.next_id
        chan.next_id += 1
        loop = asyncio.get_running_loop()
        chan.pending[ack_id] = math.inf if self.ack_never else loop.time() + self.ack_delay
        return ack_id

    def _notify_waiters(self) -> None:
        n = len(self.indexed)
        for want, fut in self._waiters:
            if want <= n and not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ parsing

    def _ingest_json(self, text: str, limit: int | None) -> tuple[int, int | None]:
        """Index the concatenated envelopes in ``text`` in order, stopping at the first bad one.

        Returns (events indexed, error code or None). §3.1: HEC stops at the first bad event and keeps
        the ones before it, so every event is appended as soon as it is validated. ``limit`` stops after
        that many events (an injected partial failure) and reports ``_LIMIT_REACHED`` if more follow.
        """
        decode = _DECODER.raw_decode
        indexed = self.indexed
        on_index = self.on_index
        reject = self.reject_event_if
        allowed = self.allowed_indexes
        default_index = self.default_index
        max_event = self.max_event_size
        end_of_text = len(text)
        pos = 0
        while pos < end_of_text and text[pos] in _WS:
            pos += 1
        count = 0
        while pos < end_of_text:
            if limit is not None and count >= limit:
                return count, _LIMIT_REACHED
            try:
                obj, end = decode(text, pos)
            except ValueError:  # JSONDecodeError, or NaN/Infinity via _reject_constant
                return count, 6
            # §2.4: maxEventSize applies to each decompressed event; the code is unknown [INF] -> 6.
            # Characters are at most 4 UTF-8 bytes, so encoding is only needed for long events.
            if (end - pos) * 4 > max_event and len(text[pos:end].encode()) > max_event:
                return count, 6
            code = self._validate(obj, allowed, default_index)
            if code is not None:
                return count, code
            if reject is not None:
                reason = reject(obj)
                if reason is not None:
                    self.rejections.append((obj, reason))
                    return count, 6
            indexed.append(obj)
            if on_index is not None:
                on_index(obj)
            count += 1
            pos = end
            while pos < end_of_text and text[pos] in _WS:
                pos += 1
        return count, None

    @staticmethod
    def _validate(obj: Any, allowed: frozenset[str] | None, default_index: str) -> int | None:
        """§2.1 per-envelope rules; fills in the default index. Returns an error code or None."""
        if type(obj) is not dict:
            # A JSON array or scalar at top level. Arrays are only a [3P] claim (§2.2, "use
            # concatenation only"); Vector answers 6 for a non-object, and so do we.
            return 6
        event = obj.get("event", _MISSING)
        if event is _MISSING or event is None:
            return 12
        if event == "" or (type(event) is dict and not event):
            # "" is blank per the docs; {} is blank in Vector's legacy namespace (§6.1) [V-code].
            return 13
        t = obj.get("time")
        if t is not None:
            tt = type(t)
            if tt is str:
                if _NUMERIC_RE.fullmatch(t) is None:
                    return 6
            elif tt is not int and tt is not float:  # bool is not a time
                return 6
        index = obj.get("index")
        if index is None:
            obj["index"] = default_index
        elif type(index) is not str or (allowed is not None and index not in allowed):
            return 7
        fields = obj.get("fields")
        if fields is not None:
            # §2.1: fields is a flat object of string (or number, for metrics §2.3) values or arrays of
            # them; anything nested is code 15.
            if type(fields) is not dict:
                return 15
            for value in fields.values():
                vt = type(value)
                if vt is dict:
                    return 15
                if vt is list:
                    for item in value:
                        if type(item) is dict or type(item) is list:
                            return 15
        return None

    def _ingest_raw(self, request: web.Request, body: bytes) -> tuple[int, int | None]:
        """§1.1 /raw: metadata from the query string; line-broken into one event per non-empty line (the
        default line breaker; real Splunk applies per-sourcetype props.conf rules)."""
        q = request.query
        index = q.get("index") or self.default_index
        if self.allowed_indexes is not None and index not in self.allowed_indexes:
            return 0, 7
        meta: dict[str, Any] = {k: q[k] for k in ("host", "source", "sourcetype") if k in q}
        meta["index"] = index
        count = 0
        max_event = self.max_event_size
        for line in body.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            if len(line) * 4 > max_event and len(line.encode()) > max_event:
                return count, 6
            env = {"event": line, **meta}
            self.indexed.append(env)
            if self.on_index is not None:
                self.on_index(env)
            count += 1
        return count, None

    # ------------------------------------------------------------------ handlers

    async def _handle_event(self, request: web.Request) -> web.Response:
        return await self._handle_data(request, raw=False)

    async def _handle_raw(self, request: web.Request) -> web.Response:
        return await self._handle_data(request, raw=True)

    async def _handle_data(self, request: web.Request, *, raw: bool) -> web.Response:
        channel = self._channel_of(request)
        rec = self._record(request, channel)

        # §7 "Injectable faults": a connection dropped before the body is read. The client cannot tell
        # whether anything was indexed; here nothing was.
        if self.drop_before_body > 0:
            self.drop_before_body -= 1
            return self._drop(request, rec)

        # Read the whole body so the client always gets the reply rather than a write error.
        wire = await request.content.read()
        resp = self._process_data(request, rec, wire, channel, raw=raw)
        if rec.n_events:
            self._notify_waiters()

        if self.response_delay > 0:
            # After indexing, before answering: a client timeout shorter than this is the ambiguous
            # "sent but not confirmed" failure (§5.5, Splunk's Python library refuses to retry it).
            await asyncio.sleep(self.response_delay)
        if self.drop_after_body > 0:
            # §7: body read and indexed (ackId issued when the token has ack), then no reply. A client
            # resend creates duplicates, which carry the same event ids (DESIGN §4).
            self.drop_after_body -= 1
            return self._drop(request, rec)
        return resp

    def _process_data(
        self, request: web.Request, rec: RequestRecord, wire: bytes, channel: str | None, *, raw: bool
    ) -> web.Response:
        # §2.4 / §1.4: max_content_length applies to the request as sent (compressed bytes); over it the
        # whole request is refused with 413 [3P]. 413 is not in the code table, so no HEC body.
        if len(wire) > self.max_content_length:
            return self._plain(
                rec, 413, f"Content-Length of {len(wire)} too large (maximum is {self.max_content_length})"
            )
        body, failure = self._decode_body(request, wire, rec)
        # Server-side trouble comes before anything about the request itself.
        if self.outage or (self.busy_probability > 0 and self._rng.random() < self.busy_probability):
            return self._reply(rec, 9)
        fault = self._take_fault()
        if fault is not None and fault.status >= 300 and fault.invalid_event_number is None:
            return self._fault_reply(rec, fault)

        try:
            token = self._authenticate(request)
        except _AuthError as exc:
            return self._reply(rec, exc.code)

        # §1.3 / §4 item 2: ack tokens need a GUID channel on every request; /raw always needs one
        # (Vector and the older dev docs). A channel sent with a non-ack token is ignored.
        if token.ack or raw:
            bad = self._check_channel(channel)
            if bad is not None:
                return self._reply(rec, bad)

        if failure is not None:
            return self._encoding_failure(rec, failure)
        if not body.strip():
            return self._reply(rec, 5)  # §5.4: the empty-POST probe of hass-splunk and Firehose

        limit = fault.invalid_event_number if fault is not None and fault.status >= 300 else None
        if raw:
            count, err = self._ingest_raw(request, body)
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Index what precedes the bad bytes; the event holding them is the invalid one.
                count, err = self._ingest_json(body[: exc.start].decode("utf-8"), limit)
                if err is None:
                    err = 6
            else:
                count, err = self._ingest_json(text, limit)
        rec.n_events = count

        if err == _LIMIT_REACHED or (err is None and limit is not None):
            assert fault is not None
            return self._fault_reply(rec, fault, invalid_event_number=count)
        if err is not None:
            if raw:
                return self._reply(rec, err)
            # §3.1: 0-based number of the first event not accepted; the ones before it are indexed.
            return self._reply(rec, err, invalid_event_number=count)

        if token.ack:
            assert channel is not None
            rec.ack_id = self._assign_ack(channel)
        if fault is not None:  # 2xx fault: processed normally, different code (e.g. 24/25 warnings)
            return self._fault_reply(rec, fault, ack_id=rec.ack_id)
        return self._reply(rec, 0, ack_id=rec.ack_id)

    async def _handle_ack(self, request: web.Request) -> web.Response:
        channel = self._channel_of(request)
        rec = self._record(request, channel)
        wire = await request.content.read()
        resp = self._process_ack(request, rec, wire, channel)
        if self.response_delay > 0:
            await asyncio.sleep(self.response_delay)
        return resp

    def _process_ack(self, request: web.Request, rec: RequestRecord, wire: bytes, channel: str | None) -> web.Response:
        body, failure = self._decode_body(request, wire, rec)
        if self.outage:
            return self._reply(rec, 9)
        try:
            token = self._authenticate(request)
        except _AuthError as exc:
            return self._reply(rec, exc.code)
        if not token.ack:
            return self._reply(rec, 14)  # §4 item 7
        bad = self._check_channel(channel)
        if bad is not None:
            return self._reply(rec, bad)
        if failure is not None:
            return self._encoding_failure(rec, failure)
        if not body.strip():
            return self._reply(rec, 5)
        # §4 item 4: {"acks":[0,1,2]}. Anything else is "Invalid data format" [INF].
        try:
            query = json.loads(body)
        except ValueError:
            return self._reply(rec, 6)
        ids = query.get("acks") if type(query) is dict else None
        if type(ids) is not list or not all(type(i) is int and i >= 0 for i in ids):
            return self._reply(rec, 6)

        assert channel is not None
        chan = self._channels.get(channel)
        now = asyncio.get_running_loop().time()
        result: dict[str, bool] = {}
        for ack_id in ids:
            key = str(ack_id)
            if key in result:
                continue
            ready_at = chan.pending.get(ack_id) if chan is not None else None
            if ready_at is not None and ready_at <= now:
                # §4 item 5: true is reported once, then the id is forgotten (later queries: false).
                assert chan is not None
                del chan.pending[ack_id]
                result[key] = True
            else:
                # §4 item 6: false means pending or lost; HEC does not say which.
                result[key] = False
        rec.status = 200
        return web.Response(body=_dumps({"acks": result}), content_type=_JSON_CT)

    async def _handle_health(self, request: web.Request) -> web.Response:
        rec = self._record(request, self._channel_of(request))
        resp = self._process_health(request, rec)
        if self.response_delay > 0:
            await asyncio.sleep(self.response_delay)
        return resp

    def _process_health(self, request: web.Request, rec: RequestRecord) -> web.Response:
        # §3.2 codes 21/22 are the health check's own token results [INF]: a token is optional here,
        # but one that is sent is checked (Vector's sink health check maps 400 to "Invalid HEC token").
        if "Authorization" in request.headers or "token" in request.query:
            try:
                self._authenticate(request)
            except _AuthError as exc:
                # disabled -> 22; query-string auth not allowed stays 16; missing/malformed/unknown -> 21.
                return self._reply(rec, {1: 22, 16: 16}.get(exc.code, 21))
        # An outage means the queues are full, which is what health reports (18) [INF]; its 503 matches
        # the 503/9 the data endpoints give meanwhile.
        code = 18 if self.outage else HEALTH_STATES[self._health_status]
        return self._reply(rec, code)

    async def _handle_other(self, request: web.Request) -> web.Response:
        rec = self._record(request, self._channel_of(request))
        allowed = _METHOD_OF_PATH.get(request.path)
        if allowed is not None:
            return self._plain(rec, 405, "405: Method Not Allowed", {"Allow": allowed})
        return self._plain(rec, 404, "404: Not Found")


# ---------------------------------------------------------------------- CLI


def _print_envelope(env: dict[str, Any]) -> None:
    meta = " ".join(f"{k}={env[k]}" for k in ("time", "host", "source", "sourcetype") if k in env)
    line = f"[{env.get('index')}] {meta} event={json.dumps(env.get('event'), ensure_ascii=False)}"
    if "fields" in env:
        line += f" fields={json.dumps(env['fields'], ensure_ascii=False)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    tokens: list[str] = args.token or [DEFAULT_TOKEN]
    ack_tokens: list[str] = args.ack_token or []
    sim = HecSim(
        tokens=tokens,
        ack_tokens=ack_tokens,
        default_index=args.index,
        allowed_indexes=args.allowed_index,
        max_content_length=args.max_content_length,
    )
    sim.record_bodies = False  # a long-running demo should not grow without bound
    if not args.quiet:
        sim.on_index = _print_envelope
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on some platforms
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    await sim.start(args.host, args.port)
    try:
        # Never print token values (operations rule); say how many there are.
        sys.stdout.write(
            f"HEC simulator listening on {sim.url}/services/collector/event "
            f"({len(tokens)} token(s), {len(ack_tokens)} with ack, index {args.index}); Ctrl-C to stop\n"
        )
        sys.stdout.flush()
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge.sim.hec", description="Run the Splunk HEC simulator until Ctrl-C."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="8088 is Splunk's default HEC port (§1.1)")
    parser.add_argument("--token", action="append", help=f"accepted token (repeatable; default {DEFAULT_TOKEN})")
    parser.add_argument("--ack-token", action="append", help="token with indexer acknowledgement (repeatable)")
    parser.add_argument("--index", default="main", help="default index")
    parser.add_argument("--allowed-index", action="append", help="allowed index (repeatable; default: any)")
    parser.add_argument("--max-content-length", type=int, default=1_000_000)
    parser.add_argument("--quiet", action="store_true", help="do not print indexed events")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
