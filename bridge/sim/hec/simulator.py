"""``HecSim``: the HEC server assembled from its parts, with its lifecycle and the data endpoints' handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

from aiohttp import web

from bridge.sim.hec.acks import AckMixin
from bridge.sim.hec.auth import AuthError
from bridge.sim.hec.faults import FaultMixin
from bridge.sim.hec.health import HealthMixin
from bridge.sim.hec.index import LIMIT_REACHED, IndexMixin
from bridge.sim.hec.protocol import ACK_PATH, DEFAULT_TOKEN, EVENT_PATHS, HEALTH_PATHS, METHOD_OF_PATH, RAW_PATHS
from bridge.sim.hec.records import RequestRecord
from bridge.sim.serve import serve


class HecSim(IndexMixin, AckMixin, FaultMixin, HealthMixin):
    """A Splunk HEC server on a real socket, with inspection and fault-injection hooks.

    Everything public is plain attributes so tests can flip faults at any time. Each part sets up its own:
    tokens, request log, ``outage`` and ``response_delay`` (``core.py``), the index and its checks
    (``index.py``), acknowledgement (``acks.py``), injected faults (``faults.py``) and health (``health.py``).
    All state lives in the event loop thread; nothing here is thread-safe.
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
        ack_endpoint: bool = True,
        health_endpoint: bool = True,
    ) -> None:
        super().__init__(
            tokens=tokens,
            ack_tokens=ack_tokens,
            default_index=default_index,
            allowed_indexes=allowed_indexes,
            max_content_length=max_content_length,
            seed=seed,
            ack_endpoint=ack_endpoint,
            health_endpoint=health_endpoint,
        )
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
        for path in EVENT_PATHS:
            app.router.add_post(path, self._handle_event)
        for path in RAW_PATHS:
            app.router.add_post(path, self._handle_raw)
        app.router.add_post(ACK_PATH, self._handle_ack)
        for path in HEALTH_PATHS:
            app.router.add_get(path, self._handle_health, allow_head=False)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        # auto_decompress=False: §1.4 says the size limit applies to the compressed bytes and only gzip is
        # accepted, so the simulator must see the wire body and decode it itself. No access log: the
        # benchmark pushes tens of thousands of events per second through here.
        self._runner, self.host, self.port = await serve(
            app, host, port, access_log=None, auto_decompress=False, handle_signals=False, shutdown_timeout=1.0
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._cancel_waiters()

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

    def clear(self) -> None:
        """Forget indexed events and recorded requests (tokens, faults and ack state are kept)."""
        self.indexed.clear()
        self.requests.clear()
        self.rejections.clear()

    # ------------------------------------------------------------------ data endpoints

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
        if self.outage or self._busy_now():
            return self._reply(rec, 9)
        fault = self._take_fault()
        if fault is not None and fault.status >= 300 and fault.invalid_event_number is None:
            return self._fault_reply(rec, fault)

        try:
            token = self._authenticate(request)
        except AuthError as exc:
            return self._reply(rec, exc.code)

        # §1.3 / §4 item 2: ack tokens need a GUID channel on every request; /raw always needs one
        # (Vector and the older dev docs). A channel sent with a non-ack token is ignored, and so is the
        # token's ack setting on a server without acknowledgement (ack_endpoint False).
        use_ack = self._uses_ack(token)
        if use_ack or raw:
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

        if err == LIMIT_REACHED or (err is None and limit is not None):
            assert fault is not None
            return self._fault_reply(rec, fault, invalid_event_number=count)
        if err is not None:
            if raw:
                return self._reply(rec, err)
            # §3.1: 0-based number of the first event not accepted; the ones before it are indexed.
            return self._reply(rec, err, invalid_event_number=count)

        if use_ack:
            assert channel is not None
            rec.ack_id = self._assign_ack(channel)
        if fault is not None:  # 2xx fault: processed normally, different code (e.g. 24/25 warnings)
            return self._fault_reply(rec, fault, ack_id=rec.ack_id)
        return self._reply(rec, 0, ack_id=rec.ack_id)

    async def _handle_other(self, request: web.Request) -> web.Response:
        # Another method on a switched-off endpoint: the server has no such path at all, so 404, not 405.
        if (request.path == ACK_PATH and not self.ack_endpoint) or (
            request.path in HEALTH_PATHS and not self.health_endpoint
        ):
            return self._no_such_endpoint(request)
        rec = self._record(request, self._channel_of(request))
        allowed = METHOD_OF_PATH.get(request.path)
        if allowed is not None:
            return self._plain(rec, 405, "405: Method Not Allowed", {"Allow": allowed})
        return self._plain(rec, 404, "404: Not Found")
