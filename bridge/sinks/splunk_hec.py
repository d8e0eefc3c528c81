"""Splunk HTTP Event Collector (HEC) sink.

Protocol facts come from the team reference ``shared/reference/splunk_hec.md``; "§" numbers in comments point
there. In short:

* one POST to ``/services/collector/event`` per batch, ``Authorization: Splunk <token>`` (§1.2), the envelopes
  concatenated without a separator (§2.2), gzip-compressed by default (§1.4);
* every envelope carries its own metadata (§2.2 "Metadata is per event"): ``time`` from the event, ``host``,
  ``source``, ``sourcetype``, optional ``index``, the contract object of DESIGN 3 as ``event``, and a flat
  object of indexed ``fields`` (§2.1); numeric values can also (or only) go out as metric events (§2.3);
* the reply is classified with the code table of §3.2 into the outcomes of :mod:`bridge.sinks.base`; the
  delivery loop does the retrying, backing off, splitting and dead-lettering;
* with ``ack: true`` the sink speaks indexer acknowledgement (§4): a GUID channel per start, one ackId per
  request, a background task polling ``/services/collector/ack``, and a resend after ``ack_timeout``.

The token is read with ``Secret.get()`` on every request, so a rotated token file takes effect at once; it is
never put into a log line, an outcome reason or an exception text.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog

from bridge import __version__
from bridge.config import Secret, SplunkHecSinkConfig, TlsOptions
from bridge.journal import Record
from bridge.sinks import DeliveryOptions
from bridge.sinks.base import Delivered, Health, Hold, Outcome, Rejected, Retry, Sink, TooLarge

log = structlog.get_logger("bridge.sinks.splunk_hec")

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"

# zlib level for the request body. Measured on 500 bench envelopes (bench/bench_hec.py's events): level 1 gives
# 12:1 and level 3 17:1 at the same ~1.5-2 us per event (both use zlib's fast deflate); level 6 gives 21:1 at
# twice the CPU. CPU is what limits a one-core bridge, bytes rarely do on a LAN.
GZIP_LEVEL = 3
# How often one kind of recurring problem is logged again by the sink itself.
LOG_EVERY = 300.0
# The health check answers /healthz, so it must be quick even when the request timeout is long.
HEALTH_TIMEOUT = 10.0
# §3.2: 400 codes that say nothing about the events but about how we talk to HEC (channel, ack, query-string
# auth). Dead-lettering events for these would lose good data over a configuration problem, so they hold.
CONFIG_CODES = frozenset({10, 11, 14, 16})
# §3.2: 2xx codes that are successes with a warning ("approaching capacity").
WARNING_CODES = frozenset({24, 25})
# §3.2 / §1.2: which token problem each code means.
TOKEN_CODES = {1: "the token is disabled", 2: "no token was sent", 3: "the Authorization header is malformed"}
TOKEN_CODES[4] = "the token is not known to HEC"
TOKEN_CODES[21] = TOKEN_CODES[4]
TOKEN_CODES[22] = TOKEN_CODES[1]
# §3.2 codes 18-20, the health endpoint's unhealthy states.
UNHEALTHY = {18: "queues are full", 19: "ack service unavailable", 20: "queues are full, ack service unavailable"}

_json_str = json.JSONEncoder(ensure_ascii=False).encode
_json_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str).encode

# The fast path reads what the envelope needs straight from the journalled JSON line instead of parsing it.
# Event.to_json() writes the DESIGN 3 fields compactly in bridge.events.FIELDS order: id, time, hub, hub_type,
# kind, device_id, device, room, attribute, value... Inside a JSON string a quote is always escaped, so the
# markers below (comma, quote, key, quote, colon) can only be the keys themselves, and the first occurrence is
# the one that counts. The text from hub's value to attribute's value repeats for every change of the same
# device attribute; it keys a cache of the envelope metadata built from it.
_TIME_KEY = ',"time":'
_HUB_KEY = ',"hub":'
_VALUE_KEY = ',"value":'
# The contract fields in that text, in order; an indexed `fields` list within them can use the fast path.
_KEY_FIELDS = ["hub", "hub_type", "kind", "device_id", "device", "room", "attribute"]
_FAST_FIELDS = frozenset(_KEY_FIELDS)


def in_flight(config: SplunkHecSinkConfig) -> int:
    """Batches that may await confirmation at once: HEC's 200 without ack, Splunk's indexer ack with it.

    Without ack, 2 keeps one request on the wire while the next batch is built. With ack, a batch waits a
    poll interval at least and up to minutes (§4 item 9) while a batch holds about max_wait of events, so
    many must be pending for the sink to keep up.
    """
    if config.max_in_flight is not None:
        return config.max_in_flight
    return 100 if config.ack else 2


def delivery_options(config: SplunkHecSinkConfig) -> DeliveryOptions:
    """How the delivery loop drives this sink (used by bridge.sinks.build_sink)."""
    return DeliveryOptions(
        max_events=config.batch.max_events,
        max_bytes=config.batch.max_bytes,
        max_wait=config.batch.max_wait,
        retry_initial=config.retry.initial,
        retry_max=config.retry.max,
        max_in_flight=in_flight(config),
        # One attempt of send(): the request itself plus a margin for building the body.
        send_timeout=config.request_timeout + 30.0,
    )


def build_ssl_context(tls: TlsOptions) -> ssl.SSLContext:
    """Verification on by default (system CAs, or ``ca_file`` instead); ``verify: false`` turns it off."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_retry_after(value: str | None) -> float | None:
    """RFC 9110 ``Retry-After``: delta-seconds or an HTTP-date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _reply_of(raw: bytes) -> tuple[dict[str, Any], int | None]:
    """HEC's reply object (§3.1) and its integer ``code``; ({}, None) when the body is not one."""
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return {}, None
    code = parsed.get("code")
    return parsed, code if isinstance(code, int) and not isinstance(code, bool) else None


def _token_problem(code: int | None) -> str:
    return TOKEN_CODES.get(code, "the token was refused") if code is not None else "the token was refused"


def _field_text(value: Any) -> str:
    """An indexed field value: §2.1 allows strings (or arrays of strings) only."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _json_compact(value)


def _is_metric_value(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(slots=True)
class _PendingAck:
    """One request HEC gave an ackId for, waiting for ``true`` from /ack (§4 items 3-6)."""

    future: asyncio.Future[bool]
    deadline: float
    events: int


@dataclass(slots=True)
class _Body:
    """A request body and, per envelope in it, the batch index of the record it came from."""

    data: bytes
    owners: list[int]
    # Per envelope: its position among the envelopes of its record (0 = first; 1 = metric after event).
    parts: list[int]


class SplunkHecSink(Sink):
    """Delivers journal records to Splunk HEC. See the module docstring and docs/splunk.md."""

    kind = "splunk_hec"

    def __init__(self, config: SplunkHecSinkConfig) -> None:
        super().__init__(config.name)
        assert config.token is not None  # the config model requires it
        self.config = config
        self._token: Secret = config.token
        base = config.url
        self.event_url = base + EVENT_PATH
        self.ack_url = base + ACK_PATH
        self.health_url = base + HEALTH_PATH
        self.https = base.startswith("https://")
        # §1.3: a GUID channel, made anew at every start. Sent on every request: harmless without ack.
        self.channel = str(uuid.uuid4())
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        self._timeout = aiohttp.ClientTimeout(total=config.request_timeout)
        self._health_timeout = aiohttp.ClientTimeout(total=min(config.request_timeout, HEALTH_TIMEOUT))
        self._log = log.bind(sink=config.name)
        self._logged: dict[str, float] = {}
        # Indexer acknowledgement (§4): ackId -> pending request; "unknown" until /ack answered once.
        self._acks: dict[int, _PendingAck] = {}
        self._ack_state = "unknown"  # unknown | ok | disabled
        self._ack_task: asyncio.Task[None] | None = None
        self._ack_wake = asyncio.Event()
        # Without ack, up to max_in_flight requests run while the loop builds the next batch (see send()).
        self._pipeline = not config.ack and in_flight(config) > 1
        self._degraded = False
        self._posts: set[asyncio.Task[None]] = set()
        # seq -> envelopes of that record HEC already accepted in a partial reply (a busy 503 or 429 with
        # invalid-event-number, §3.1). The delivery loop resends the same batch after a Retry; skipping what
        # HEC already has keeps the accepted prefix from being indexed twice.
        self._accepted: dict[int, int] = {}
        # (first seq, last seq, count) of a part a pipelined request saw refused or too large -> that outcome.
        self._replay: dict[tuple[int, int, int], Outcome] = {}
        # A Retry-After a pipelined request was given, as a time.monotonic() before which not to resend.
        self._not_before = 0.0
        # Envelope pieces that repeat across events: per hub the metadata, per field tuple the fields object.
        self._heads: dict[str, str] = {}
        self._metric_heads: dict[str, str] = {}
        self._fields_cache: dict[tuple[Any, ...], str] = {}
        self._field_names = tuple(config.fields)
        # The splicing fast path covers the default envelope and field lists of string contract fields;
        # metrics mode needs the value and unit, so it parses the line.
        self._fast = config.metrics == "off" and all(n in _FAST_FIELDS for n in config.fields)
        self._meta: dict[str, str] = {}
        # The last body built, reused when the loop resends the same batch (outages resend it many times).
        self._last_key: tuple[int, int, int] | None = None
        self._last_body: _Body | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def pending_acks(self) -> int:
        """Requests accepted by HEC whose indexing Splunk has not confirmed yet."""
        return len(self._acks)

    async def start(self) -> None:
        if self._session is not None:
            return
        self.channel = str(uuid.uuid4())
        self._ack_state = "unknown"
        if self.https:
            self._ssl = build_ssl_context(self.config.tls)
            if not self.config.tls.verify:
                self._log.warning(
                    "TLS VERIFICATION IS OFF: the HEC server's certificate is not checked, so anyone on the "
                    "network path can read the token and the events. Use tls.ca_file instead of verify: false",
                    url=self.config.url,
                )
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True, limit=8)
        # unsafe=True keeps cookies from IP-address URLs too: a load balancer's sticky-session cookie is what
        # keeps ack polls on the HEC instance that holds the ack state (§4 item 10).
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            raise_for_status=False,
            headers={"User-Agent": f"hubbridge/{__version__}"},
        )
        if self.config.ack:
            self._ack_task = asyncio.create_task(self._poll_acks(), name=f"hec-ack-{self.name}")

    async def close(self) -> None:
        for post in list(self._posts):
            post.cancel()  # its future is cancelled: the batch was not confirmed, so it is sent again later
        await asyncio.gather(*self._posts, return_exceptions=True)
        task, self._ack_task = self._ack_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # pragma: no cover - the poller catches its own errors
                self._log.exception("ack poller failed while closing")
        for pending in self._acks.values():
            # Unconfirmed batches: the delivery loop resends them (or, after a restart, re-reads them).
            if not pending.future.done():
                pending.future.cancel()
        self._acks.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("SplunkHecSink.start() was not called")
        return self._session

    def _log_every(self, key: str, window: float = LOG_EVERY) -> bool:
        """True at most once per ``window`` for ``key``: one log line per recurring problem."""
        now = time.monotonic()
        last = self._logged.get(key)
        if last is not None and now - last < window:
            return False
        self._logged[key] = now
        return True

    def _headers(self) -> dict[str, str] | str:
        """Request headers, or the reason the token cannot be read."""
        try:
            token = self._token.get()
        except OSError as exc:
            return f"cannot read the token file {self._token.path}: {exc.strerror or exc}"
        if not token:
            return f"the token file {self._token.path} is empty"
        return {
            "Authorization": f"Splunk {token}",
            "X-Splunk-Request-Channel": self.channel,
            "Content-Type": "application/json",
        }

    # ------------------------------------------------------------------ envelopes

    def _envelope_keys(self, hub: str) -> str:
        """``"host":...,"source":...,"sourcetype":...`` for ``hub``: the envelope keys both kinds share."""
        cfg = self.config
        host = cfg.host if cfg.host is not None else hub
        source = cfg.source if cfg.source is not None else f"hubbridge:{hub}"
        return f'"host":{_json_str(host)},"source":{_json_str(source)},"sourcetype":{_json_str(cfg.sourcetype)}'

    def _head(self, hub: str) -> str:
        """The metadata keys of an event envelope for ``hub``, as JSON text (cached: a few hubs at most)."""
        head = self._heads.get(hub)
        if head is None:
            head = self._envelope_keys(hub)
            if self.config.index:
                head += f',"index":{_json_str(self.config.index)}'
            self._heads[hub] = head
        return head

    def _metric_head(self, hub: str) -> str:
        head = self._metric_heads.get(hub)
        if head is None:
            head = f'"event":"metric",{self._envelope_keys(hub)},"index":{_json_str(self.config.metrics_index)}'
            self._metric_heads[hub] = head
        return head

    def _fields(self, ev: dict[str, Any]) -> str:
        """``,"fields":{...}`` for the configured event fields (§2.1: flat, string values; nulls left out)."""
        names = self._field_names
        if not names:
            return ""
        key = tuple([ev.get(n) for n in names])
        try:
            cached = self._fields_cache.get(key)
        except TypeError:  # an unhashable value (a list or object in `value`): no caching
            cached, key = None, ()
        if cached is not None:
            return cached
        values = key or tuple([ev.get(n) for n in names])
        fields = {n: _field_text(v) for n, v in zip(names, values, strict=True) if v is not None}
        text = f',"fields":{_json_compact(fields)}' if fields else ""
        if key:
            if len(self._fields_cache) >= 4096:  # bounded: devices x attributes rarely come near it
                self._fields_cache.clear()
            self._fields_cache[key] = text
        return text

    def _metric(self, ev: dict[str, Any], time_part: str, hub: str) -> str:
        """§2.3 single-metric form: ``"event":"metric"`` and ``metric_name:<attribute>`` plus dimensions."""
        fields: dict[str, Any] = {f"metric_name:{ev.get('attribute')}": ev.get("value")}
        for dim in ("hub", "device", "device_id", "room", "unit"):
            value = ev.get(dim)
            if value is not None:
                fields[dim] = _field_text(value)
        return f'{{{time_part}{self._metric_head(hub)},"fields":{_json_compact(fields)}}}'

    def _meta_from(self, key: str) -> str | None:
        """Envelope metadata (host... fields) for the hub..attribute text ``key`` of a journal line."""
        try:
            ev = json.loads(f'{{"hub":{key}}}')
        except ValueError:
            return None
        if not isinstance(ev, dict) or list(ev) != _KEY_FIELDS or not isinstance(ev["hub"], str):
            return None  # not the Event.to_json() layout: the caller parses the whole line instead
        meta = self._head(ev["hub"]) + self._fields(ev)
        if len(self._meta) >= 4096:  # bounded: devices x attributes rarely come near it
            self._meta.clear()
        self._meta[key] = meta
        return meta

    def _event_fast(self, body: str) -> str | None:
        """The event envelope spliced from the raw line, or None when the line is not in the usual form."""
        t0 = body.find(_TIME_KEY)
        h0 = body.find(_HUB_KEY, t0)
        v0 = body.find(_VALUE_KEY, h0)
        if t0 < 0 or h0 < 0 or v0 < 0 or body.find(",", t0 + 8) != h0:  # hub must follow time directly
            return None
        key = body[h0 + 7 : v0]
        meta = self._meta.get(key) or self._meta_from(key)
        if meta is None:
            return None
        t = body[t0 + 8 : h0]
        if t == "null":  # no time: Splunk stamps the receive time (§2.1)
            return f'{{{meta},"event":{body}}}'
        return f'{{"time":{t},{meta},"event":{body}}}'

    def _envelopes(self, record: Record) -> list[str]:
        """The envelope(s) of one record: the event, and/or a metric in metrics mode."""
        if self._fast:
            env = self._event_fast(record.body)
            if env is not None:
                return [env]
        ev = json.loads(record.body)
        hub = ev.get("hub") or ""
        t = ev.get("time")
        # §2.1: epoch seconds, fraction allowed; without it Splunk would stamp the receive time.
        time_part = f'"time":{t!r},' if _is_metric_value(t) else ""
        mode = self.config.metrics
        if mode != "off" and _is_metric_value(ev.get("value")):
            metric = self._metric(ev, time_part, hub)
            if mode == "only":
                return [metric]
            return [f'{{{time_part}{self._head(hub)}{self._fields(ev)},"event":{record.body}}}', metric]
        # The contract object goes in as the journal stored it: no re-encoding (DESIGN 3 field order kept).
        return [f'{{{time_part}{self._head(hub)}{self._fields(ev)},"event":{record.body}}}']

    def _build(self, batch: Sequence[Record]) -> _Body:
        key = (batch[0].seq, batch[-1].seq, len(batch))
        if key == self._last_key and self._last_body is not None:
            return self._last_body
        accepted = self._accepted
        texts: list[str] = []
        owners: list[int] = []
        parts: list[int] = []
        if self._fast and not accepted:
            # The hot path: one envelope per record, nothing to skip.
            fast = self._event_fast
            for record in batch:
                env = fast(record.body)
                texts.append(env if env is not None else self._envelopes(record)[0])
            owners = list(range(len(batch)))
            parts = [0] * len(batch)
        else:
            for i, record in enumerate(batch):
                envs = self._envelopes(record)
                for j in range(accepted.get(record.seq, 0), len(envs)):
                    texts.append(envs[j])
                    owners.append(i)
                    parts.append(j)
        data = "".join(texts).encode("utf-8")
        if self.config.gzip and data:
            data = zlib.compress(data, GZIP_LEVEL, wbits=31)  # wbits 31: gzip framing (§1.4)
        body = _Body(data, owners, parts)
        self._last_key, self._last_body = key, body
        return body

    # ------------------------------------------------------------------ sending

    async def send(self, batch: Sequence[Record]) -> Outcome:
        if not batch:
            return Delivered()
        if self._replay:
            # The loop hands back a part whose pipelined request HEC refused: give that answer now (split it,
            # or dead-letter the refused event) instead of asking HEC the same question again.
            known = self._replay.pop((batch[0].seq, batch[-1].seq, len(batch)), None)
            if known is not None:
                if isinstance(known, Rejected) and known.index is not None:
                    self._forget(batch[: known.index + 1])
                return known
        wait = self._not_before - time.monotonic()
        if wait > 0:  # a pipelined request was told Retry-After: honour it for the resend too
            return Retry("HEC asked to wait (Retry-After)", wait)
        if self._session is None:
            await self.start()
        session = self._session_or_fail()
        headers = self._headers()
        if isinstance(headers, str):
            return Hold(headers)
        if self.config.ack and self._ack_state != "ok":
            held = await self._probe_ack(session, headers)
            if held is not None:
                return held
        body = self._build(batch)
        if not body.owners:  # everything was accepted by HEC in earlier partial replies
            self._forget(batch)
            return Delivered()
        if self.config.gzip:
            headers["Content-Encoding"] = "gzip"
        if self._pipeline and not self._degraded:
            # Pipelining without indexer ack: the POST runs in the background and the delivery loop reads and
            # builds the next batch meanwhile. HEC's 200 is the confirmation Delivered.ack waits for; the
            # cursor moves only then. Any other answer resolves False: the loop hands the batch back, and
            # it goes out synchronously (below) so it gets its real outcome: backoff, split or dead letter.
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._post_pipelined(session, batch, body, headers, future))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)
            return Delivered(ack=future)
        outcome = await self._post(session, batch, body, headers, pipelined=False)
        if isinstance(outcome, Delivered):
            self._degraded = False
        return outcome

    async def _post_pipelined(
        self,
        session: aiohttp.ClientSession,
        batch: Sequence[Record],
        body: _Body,
        headers: dict[str, str],
        future: asyncio.Future[bool],
    ) -> None:
        try:
            outcome: Outcome = await self._post(session, batch, body, headers, pipelined=True)
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
            raise
        except Exception as exc:  # a bug must not leave the batch unconfirmed forever: resend it
            self._log.exception("pipelined send failed")
            outcome = Retry(f"{type(exc).__name__}: {exc}")
        if future.done():
            return
        if isinstance(outcome, Delivered):
            future.set_result(True)
            return
        if isinstance(outcome, Retry) and outcome.delay:
            self._not_before = max(self._not_before, time.monotonic() + outcome.delay)
        elif isinstance(outcome, Rejected | TooLarge):
            if len(self._replay) >= 64:  # parts the loop never handed back (it was stopped): forget them
                self._replay.clear()
            self._replay[(batch[0].seq, batch[-1].seq, len(batch))] = outcome
        # Until a synchronous send succeeds, send one batch at a time: no second request runs into the same
        # outage, and the loop's backoff applies.
        self._degraded = True
        if self._log_every("pipelined"):
            self._log.info("a pipelined batch was not accepted; it is sent again on its own", reason=outcome.reason)
        future.set_result(False)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        batch: Sequence[Record],
        body: _Body,
        headers: dict[str, str],
        *,
        pipelined: bool,
    ) -> Outcome:
        """One POST of ``body`` to /event, classified."""
        try:
            async with session.post(
                self.event_url, data=body.data, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
                location = resp.headers.get("Location")
        except TimeoutError:
            # Ambiguous (§5.5): HEC may have indexed the batch. Resending may duplicate (same ids), never lose.
            return Retry(f"no answer from HEC within {self.config.request_timeout:g}s")
        except aiohttp.ClientConnectorCertificateError as exc:
            return Hold(self._tls_problem(exc))
        except aiohttp.ClientSSLError as exc:
            return Hold(f"TLS handshake with {self.config.url} failed: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return Retry(f"cannot reach HEC at {self.config.url}: {type(exc).__name__}: {exc}")
        return self._classify(batch, body, status, raw, retry_after, location, pipelined)

    def _tls_problem(self, exc: BaseException) -> str:
        cert = getattr(exc, "certificate_error", exc)
        return (
            f"TLS certificate of {self.config.url} not trusted ({cert}); "
            "give the CA that signed it as tls.ca_file (verify: false only for tests)"
        )

    def _forget(self, records: Sequence[Record]) -> None:
        if self._accepted:
            self._last_key = None
            for r in records:
                self._accepted.pop(r.seq, None)

    def _classify(
        self,
        batch: Sequence[Record],
        body: _Body,
        status: int,
        raw: bytes,
        retry_after: str | None,
        location: str | None,
        pipelined: bool = False,
    ) -> Outcome:
        """Map HEC's reply to an outcome, following the code table of §3.2.

        ``pipelined``: the outcome only decides between "confirmed" and "send again", so a partial acceptance
        is remembered (the synchronous resend skips what HEC has) instead of being reported as Rejected.
        """
        reply, code = _reply_of(raw)
        text = reply.get("text")
        what = f"HTTP {status}" + (f", code {code} {text!r}" if code is not None else "")

        if 200 <= status < 300:
            if code in WARNING_CODES and self._log_every(f"warn{code}"):
                self._log.warning("HEC accepted the batch but warns it is near capacity", reply=what)
            self._forget(batch)
            if not self.config.ack:
                return Delivered()
            ack_id = reply.get("ackId", reply.get("ackID"))
            if not isinstance(ack_id, int) or isinstance(ack_id, bool):
                # Accepted, but with no ackId to confirm it (§5.1: Vector counts this as delivered too).
                # Re-probe /ack before the next batch: it says whether the token has ack at all (code 14).
                self._ack_state = "unknown"
                if self._log_every("noackid"):
                    self._log.error(
                        "HEC accepted a batch without an ackId although ack: true; this batch is not confirmed "
                        "by the indexers. Enable indexer acknowledgement on the token, or set ack: false",
                        reply=what,
                    )
                return Delivered()
            return Delivered(ack=self._expect_ack(ack_id, len(batch)))

        n = reply.get("invalid-event-number")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < len(body.owners):
            n = None

        if n is not None and not (status == 400 and code not in CONFIG_CODES and code != 7):
            # Whatever comes next resends this batch: skip what HEC already took (§3.1).
            self._note_accepted(batch, body, n)
        if status in (401, 403) or code in TOKEN_CODES:
            # DESIGN 4: the data is fine and the token is not; hold, never drop or dead-letter.
            why = _token_problem(code)
            return Hold(f"HEC refused the token ({what}): {why}; fix token/token_file (read on every request)")
        if code == 7:
            # §2.1: the index is not allowed for the token. Our envelopes only carry the sink's index or
            # metrics_index, so every event would fail alike: a configuration problem, not a bad event.
            indexes = " and ".join(repr(i) for i in (self.config.index, self.config.metrics_index) if i)
            return Hold(
                f"HEC refused the index ({what}): allow index {indexes or '(the default)'} for this token in "
                "Splunk, or change index/metrics_index in the config"
            )
        if status == 413:
            return TooLarge(f"HEC says the request is too large ({what}, {len(body.data)} bytes sent)")
        if status == 429 or status == 408 or status >= 500:
            # §3.2 / §5.6: busy, at capacity or failing: retry with backoff, honouring Retry-After.
            return Retry(f"HEC is busy or failing ({what})", parse_retry_after(retry_after))
        if status == 400 and code not in CONFIG_CODES:
            reason = f"HEC rejected the event: {text or 'HTTP 400'} (code {code})"
            if n is None:
                # Something in the batch, HEC did not say what: the delivery loop splits to find it.
                return Rejected(reason)
            index = body.owners[n]
            if body.parts[n] > 0:
                reason += "; its event was indexed, its metric was refused"
            if pipelined:
                self._note_accepted(batch, body, n)  # the resend is told Rejected(index) by send()
            else:
                self._forget(batch[: index + 1])
            return Rejected(reason, index)
        # A wrong URL (404/405), a redirect, an unsupported encoding (415) or a channel/ack/auth-mode code:
        # a configuration problem, not a bad event. Hold so nothing is lost while the operator fixes it.
        hint = ""
        if status == 415:
            hint = "; the server does not take gzip, set gzip: false"
        elif 300 <= status < 400:
            hint = f"; the server redirects to {location}, put that in url"
        elif status in (404, 405):
            hint = f"; is {self.config.url} the HEC port (usually 8088)?"
        elif code == 14:
            hint = "; " + self._ack_hint()
        return Hold(f"HEC cannot take events from this sink as configured ({what}){hint}")

    def _note_accepted(self, batch: Sequence[Record], body: _Body, n: int) -> None:
        """Remember the envelopes before ``n`` as accepted: the resend after this Retry skips them (§3.1)."""
        self._last_key = None
        for k in range(n):
            seq = batch[body.owners[k]].seq
            self._accepted[seq] = body.parts[k] + 1

    # ------------------------------------------------------------------ indexer acknowledgement (§4)

    def _ack_hint(self) -> str:
        return (
            f"indexer acknowledgement is not enabled on this HEC token (code 14 'ACK is disabled'): set ack: false "
            f"for sink {self.name!r}, or enable indexer acknowledgement on the token in Splunk"
        )

    def _expect_ack(self, ack_id: int, events: int) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        old = self._acks.pop(ack_id, None)
        if old is not None and not old.future.done():  # HEC reused an id: the old one can never be answered
            old.future.set_result(False)
        self._acks[ack_id] = _PendingAck(future, time.monotonic() + self.config.ack_timeout, events)
        self._ack_wake.set()
        return future

    async def _probe_ack(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> Outcome | None:
        """Ask /ack whether the token has acknowledgement at all, before relying on it. None means go on."""
        result = await self._ack_request(session, headers, list(self._acks))
        if isinstance(result, dict):
            self._resolve(result)
            self._ack_state = "ok"
            return None
        if result == "disabled":
            return Hold(self._ack_hint())
        if result.startswith("token:"):
            return Hold(result[len("token:") :])
        return Retry(result)

    async def _ack_request(
        self, session: aiohttp.ClientSession, headers: dict[str, str], ids: list[int]
    ) -> dict[str, Any] | str:
        """POST /ack with ``ids`` (§4 item 4). The ``acks`` object, "disabled", "token:<why>" or a reason."""
        try:
            async with session.post(
                self.ack_url,
                data=json.dumps({"acks": ids}).encode(),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError:
            return f"no answer from {self.ack_url} within {self.config.request_timeout:g}s"
        except aiohttp.ClientConnectorCertificateError as exc:
            return "token:" + self._tls_problem(exc)
        except (aiohttp.ClientError, OSError) as exc:
            return f"cannot reach HEC at {self.config.url}: {type(exc).__name__}: {exc}"
        reply, code = _reply_of(raw)
        if status == 200 and isinstance(reply.get("acks"), dict):
            self._ack_state = "ok"
            acks: dict[str, Any] = reply["acks"]
            return acks
        if code == 14:  # §4 item 7
            self._ack_state = "disabled"
            return "disabled"
        if status in (401, 403) or code in TOKEN_CODES:
            why = _token_problem(code)
            return f"token:HEC refused the token on /ack (HTTP {status}, code {code}): {why}; fix token/token_file"
        if status == 200:
            # Not the §4 shape but not a refusal either (a receiver without /ack semantics): go on sending;
            # unconfirmed batches are resent after ack_timeout, so nothing is lost.
            return {}
        return f"HEC /ack answered HTTP {status}" + (f", code {code} {reply.get('text')!r}" if code is not None else "")

    def _resolve(self, acks: dict[str, Any]) -> None:
        # §4 item 5: HEC reports true once and then forgets the id, so settle it the first time.
        for key, value in acks.items():
            if value is not True:
                continue
            try:
                pending = self._acks.pop(int(key), None)
            except ValueError:
                continue
            if pending is not None and not pending.future.done():
                pending.future.set_result(True)

    def _expire(self) -> None:
        """Give up on acks older than ``ack_timeout`` (§4 item 6): False makes the delivery loop resend."""
        now = time.monotonic()
        expired = [i for i, p in self._acks.items() if p.deadline <= now]
        if not expired:
            return
        events = 0
        for ack_id in expired:
            pending = self._acks.pop(ack_id)
            events += pending.events
            if not pending.future.done():
                pending.future.set_result(False)
        self._log.warning(
            "Splunk did not confirm indexing within ack_timeout; the batches are sent again (same event ids)",
            requests=len(expired),
            events=events,
            ack_timeout=self.config.ack_timeout,
        )

    async def _poll_acks(self) -> None:
        """Background task: every ``ack_poll_interval``, ask for every outstanding ackId in one request."""
        interval = self.config.ack_poll_interval
        while True:
            if not self._acks:
                self._ack_wake.clear()
                await self._ack_wake.wait()
            await asyncio.sleep(interval)
            if not self._acks or self._session is None:
                continue
            try:
                headers = self._headers()
                if isinstance(headers, str):
                    if self._log_every("ackpoll"):
                        self._log.warning("cannot poll indexer acknowledgements", reason=headers)
                else:
                    result = await self._ack_request(self._session, headers, sorted(self._acks))
                    if isinstance(result, dict):
                        self._resolve(result)
                    elif result == "disabled":
                        # Ack was switched off on the token after it issued these ids: they will never be
                        # confirmed; ack_timeout resends them, and send() holds until this is fixed.
                        if self._log_every("ack14"):
                            self._log.error(self._ack_hint())
                    elif self._log_every("ackpoll"):
                        self._log.warning("cannot poll indexer acknowledgements", reason=result.removeprefix("token:"))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop confirmations for good
                self._log.exception("ack poll failed")
            self._expire()

    # ------------------------------------------------------------------ health (at start and /healthz)

    async def health(self) -> Health:
        """GET /services/collector/health with the token (§1.1, §5.1), as one line for the operator.

        The detail starts with what is wrong: "bad token", "unhealthy" (HEC up, queues full), "unreachable"
        (no connection, or TLS verification failed), "ack misconfigured" (code 14). The runtime logs it once
        at start and /healthz shows it; this method itself does not log, so /healthz polls stay quiet.
        """
        session = self._session
        if session is None:
            return Health(False, "not started")
        url = self.config.url
        headers = self._headers()
        if isinstance(headers, str):
            return Health(False, f"bad token: {headers}")
        try:
            async with session.get(
                self.health_url, headers=headers, timeout=self._health_timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError:
            return Health(False, f"unreachable: no answer from {url} within {self._health_timeout.total:g}s")
        except aiohttp.ClientConnectorCertificateError as exc:
            return Health(False, f"unreachable: {self._tls_problem(exc)}")
        except (aiohttp.ClientError, OSError) as exc:
            return Health(False, f"unreachable: cannot connect to {url}: {type(exc).__name__}: {exc}")
        _, code = _reply_of(raw)
        if status in (401, 403) or code in TOKEN_CODES or (status == 400 and code is None):
            why = _token_problem(code)
            return Health(False, f"bad token: {url} answered HTTP {status} code {code}: {why}; fix token/token_file")
        if status == 503 or code in UNHEALTHY:
            state = UNHEALTHY.get(code, "service unavailable") if code is not None else "service unavailable"
            return Health(False, f"unhealthy: HEC at {url} is up but {state} (HTTP {status}, code {code})")
        if status != 200:
            return Health(False, f"unexpected answer from {url}: HTTP {status} (is this the HEC port?)")
        if self.config.ack:
            result = await self._ack_request(session, headers, [])
            if result == "disabled":
                return Health(False, f"ack misconfigured: {self._ack_hint()}")
        return Health(True, f"HEC at {url} is healthy" + (" (indexer acknowledgement on)" if self.config.ack else ""))
