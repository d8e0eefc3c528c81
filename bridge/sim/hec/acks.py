"""Channels and indexer acknowledgement (§1.3, §4): GUID checks, ackIds per channel, the ``/ack`` endpoint."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.sim.hec.auth import AuthError, Token
from bridge.sim.hec.core import HecCore
from bridge.sim.hec.protocol import GUID_RE, JSON_CT, dumps
from bridge.sim.hec.records import RequestRecord


@dataclass(slots=True)
class _Channel:
    next_id: int = 0
    # ackId -> loop time from which it reports true (math.inf: lost, never true). §4 item 5: an id is
    # removed once it has been reported true.
    pending: dict[int, float] = field(default_factory=dict)


class AckMixin(HecCore):
    """Indexer acknowledgement for :class:`~bridge.sim.hec.HecSim`."""

    def __init__(self, *, ack_endpoint: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: False: a HEC without indexer acknowledgement at all, like Fluent Bit's Splunk input or a HEC behind
        #: some proxies. ``/services/collector/ack`` then answers ``no_endpoint_reply`` (a plain 404 "Not Found"
        #: unless changed; Fluent Bit's is ``FLUENT_BIT_NO_ENDPOINT``), and event
        #: posts never get an ackId nor need a channel, whatever the token's ack setting (``/raw`` still needs
        #: one). Settable at any time; ackIds already issued are kept for when it is switched back on.
        self.ack_endpoint = ack_endpoint
        #: Seconds after an ackId is issued before ``/ack`` reports it true.
        self.ack_delay = 0.0
        #: ackIds issued while this is True never report true (lost acks).
        self.ack_never = False
        self._channels: dict[str, _Channel] = {}

    @staticmethod
    def _check_channel(channel: str | None) -> int | None:
        if not channel:
            return 10  # §1.3 / §4 item 2: "Data channel is missing"
        if GUID_RE.fullmatch(channel) is None:
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

    def _uses_ack(self, token: Token) -> bool:
        """Whether a request with ``token`` takes part in acknowledgement (needs a channel, gets an ackId)."""
        return token.ack and self.ack_endpoint

    async def _handle_ack(self, request: web.Request) -> web.Response:
        if not self.ack_endpoint:
            await request.read()
            return self._no_such_endpoint(request)
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
        except AuthError as exc:
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
        return web.Response(body=dumps({"acks": result}), content_type=JSON_CT)
