"""The index: where accepted envelopes land, HEC's per-envelope checks, /raw line breaking, waiting on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Final, NoReturn

from aiohttp import web

from bridge.sim.hec.core import HecCore
from bridge.sim.hec.protocol import DEFAULT_MAX_EVENT_SIZE

# §2.1: ``time`` may be a number or a numeric string (Splunk's own loggers send strings).
_NUMERIC_RE: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# JSON insignificant whitespace, skipped between concatenated envelopes (§2.2: none or "\n" in practice).
_WS: Final = frozenset(" \t\n\r")

_MISSING: Final = object()
#: internal "error code": an injected partial failure stopped the batch
LIMIT_REACHED: Final = -1


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN/Infinity literals; JSON (and so Splunk) does not -> code 6.
    raise ValueError(f"invalid JSON constant {name}")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


class IndexMixin(HecCore):
    """Indexing and its inspection for :class:`~bridge.sim.hec.HecSim`."""

    def __init__(
        self,
        *,
        default_index: str,
        allowed_indexes: Iterable[str] | None,
        max_content_length: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.default_index = default_index
        # §2.1: index must be in the token's allowed list when one is set, else code 7. The token's
        # default index counts as allowed [INF]: events without an index land there anyway.
        self.allowed_indexes: frozenset[str] | None = (
            None if allowed_indexes is None else frozenset(allowed_indexes) | {default_index}
        )
        self.max_content_length = max_content_length
        self.max_event_size = DEFAULT_MAX_EVENT_SIZE
        self.indexed: list[dict[str, Any]] = []
        #: Called synchronously with each envelope as it is indexed (the CLI prints with it). Must not raise.
        self.on_index: Callable[[dict[str, Any]], None] | None = None
        #: Returns a reason to refuse an envelope: HEC-style partial acceptance with 400/6.
        self.reject_event_if: Callable[[dict[str, Any]], str | None] | None = None
        #: Envelopes refused by ``reject_event_if``, with the reason it gave, in order.
        self.rejections: list[tuple[dict[str, Any], str]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

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

    def _notify_waiters(self) -> None:
        n = len(self.indexed)
        for want, fut in self._waiters:
            if want <= n and not fut.done():
                fut.set_result(None)

    def _cancel_waiters(self) -> None:
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    # ------------------------------------------------------------------ parsing

    def _ingest_json(self, text: str, limit: int | None) -> tuple[int, int | None]:
        """Index the concatenated envelopes in ``text`` in order, stopping at the first bad one.

        Returns (events indexed, error code or None). §3.1: HEC stops at the first bad event and keeps
        the ones before it, so every event is appended as soon as it is validated. ``limit`` stops after
        that many events (an injected partial failure) and reports ``LIMIT_REACHED`` if more follow.
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
                return count, LIMIT_REACHED
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
