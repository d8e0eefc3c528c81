"""HEC envelopes (splunk_hec.md 2.1-2.3): the contract object of each journalled event wrapped with its metadata.

Every envelope carries its own ``time``, ``host``, ``source``, ``sourcetype``, optional ``index``, the event as the
journal stored it (no re-encoding) and a flat object of indexed ``fields``; numeric values can also (or only) go out
as metric events. The envelopes of a batch are concatenated without a separator and gzipped (1.4, 2.2).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.journal import Record
from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig

# zlib level for the request body. Measured on 500 bench envelopes (bench/bench_hec.py's events): level 1 gives
# 12:1 and level 3 17:1 at the same ~1.5-2 us per event (both use zlib's fast deflate); level 6 gives 21:1 at
# twice the CPU. CPU is what limits a one-core bridge, bytes rarely do on a LAN.
GZIP_LEVEL = 3

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
class Body:
    """A request body and, per envelope in it, the batch index of the record it came from."""

    data: bytes
    owners: list[int]
    # Per envelope: its position among the envelopes of its record (0 = first; 1 = metric after event).
    parts: list[int]


class Encoder:
    """Builds request bodies for one sink's config. Caches the metadata that repeats across events."""

    def __init__(self, config: SplunkHecSinkConfig) -> None:
        self.config = config
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
        self._last_body: Body | None = None

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

    def envelopes(self, record: Record) -> list[str]:
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

    def build(self, batch: Sequence[Record]) -> Body:
        key = (batch[0].seq, batch[-1].seq, len(batch))
        if key == self._last_key and self._last_body is not None:
            return self._last_body
        texts: list[str] = []
        owners: list[int] = []
        parts: list[int] = []
        if self._fast:
            # The hot path: one envelope per record, nothing to skip.
            fast = self._event_fast
            for record in batch:
                env = fast(record.body)
                texts.append(env if env is not None else self.envelopes(record)[0])
            owners = list(range(len(batch)))
            parts = [0] * len(batch)
        else:
            for i, record in enumerate(batch):
                envs = self.envelopes(record)
                for j, env in enumerate(envs):
                    texts.append(env)
                    owners.append(i)
                    parts.append(j)
        data = "".join(texts).encode("utf-8")
        if self.config.gzip and data:
            data = zlib.compress(data, GZIP_LEVEL, wbits=31)  # wbits 31: gzip framing (§1.4)
        body = Body(data, owners, parts)
        self._last_key, self._last_body = key, body
        return body
