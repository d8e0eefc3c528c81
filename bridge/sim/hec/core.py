"""What every HEC endpoint shares: tokens, the request log, channel lookup, body decoding and reply building."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable

from aiohttp import web

from bridge.sim.hec.auth import Token, authenticate, redact_auth
from bridge.sim.hec.protocol import CODE_TABLE, JSON_CT, SUCCESS_BODY, hec_body
from bridge.sim.hec.records import RequestRecord


class HecCore:
    """Base of the HEC simulator's parts. All state lives in the event loop thread; nothing is thread-safe."""

    def __init__(self, *, tokens: Iterable[str], ack_tokens: Iterable[str]) -> None:
        self._tokens: dict[str, Token] = {t: Token() for t in tokens}
        # ack_tokens are tokens too: useACK is a per-token setting (§4 "Why it exists").
        for t in ack_tokens:
            self._tokens[t] = Token(ack=True)
        self.requests: list[RequestRecord] = []
        #: Keep request bodies in ``requests``; benchmarks turn this off to save memory.
        self.record_bodies = True
        # --- faults that every endpoint honours (settable at any time) ---------------------------------------
        #: Every event post and ack query gets 503/9 "Server is busy"; health reports 503/18.
        self.outage = False
        #: Seconds to wait, after processing, before answering any request.
        self.response_delay = 0.0
        #: What a switched-off endpoint (``ack_endpoint`` or ``health_endpoint`` False) answers, as (HTTP status,
        #: plain-text body). The default is a plain 404; ``FLUENT_BIT_NO_ENDPOINT`` is Fluent Bit's Splunk input
        #: (§6.3: 400 "error: invalid HTTP endpoint"). Settable at any time.
        self.no_endpoint_reply: tuple[int, str] = (404, "Not Found")

    # ------------------------------------------------------------------ tokens

    def add_token(self, token: str, *, ack: bool = False, query_auth: bool = False) -> None:
        """Add (or replace) a token. ``query_auth`` is Splunk's ``allowQueryStringAuth`` (§1.2)."""
        self._tokens[token] = Token(ack=ack, query_auth=query_auth)

    def revoke_token(self, token: str) -> None:
        """Delete a token: later requests with it get 403/4 "Invalid token". Unknown tokens are ignored."""
        self._tokens.pop(token, None)

    def disable_token(self, token: str) -> None:
        """Disable a token (kept but refused with 403/1 "Token disabled", §1.2)."""
        self._tokens[token].enabled = False

    def enable_token(self, token: str) -> None:
        self._tokens[token].enabled = True

    def _authenticate(self, request: web.Request) -> Token:
        return authenticate(self._tokens, request)

    # ------------------------------------------------------------------ requests

    def _record(self, request: web.Request, channel: str | None) -> RequestRecord:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = redact_auth(headers["authorization"])
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

    # ------------------------------------------------------------------ replies

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
            body = SUCCESS_BODY
        else:
            body = hec_body(code, invalid_event_number, ack_id)
        return web.Response(status=http_status, body=body, content_type=JSON_CT, headers=headers)

    def _no_such_endpoint(self, request: web.Request) -> web.Response:
        """A server without this endpoint: ``no_endpoint_reply`` in plain text, no HEC body (recorded, code None)."""
        status, text = self.no_endpoint_reply
        return self._plain(self._record(request, self._channel_of(request)), status, text)

    @staticmethod
    def _plain(rec: RequestRecord, status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
        rec.status = status
        rec.code = None
        return web.Response(status=status, text=text, headers=headers)
