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
  (§4); or none at all (``ack_endpoint=False``: ``/ack`` is a plain 404, or with ``no_endpoint_reply =
  FLUENT_BIT_NO_ENDPOINT`` Fluent Bit's plain 400 "error: invalid HTTP endpoint"), and optionally no health
  endpoint either (``health_endpoint=False``);
* fault injection: busy/5xx replies with ``Retry-After``, outages, dropped connections before and after
  the body is read, slow responses, lost or late acks (§7 "Injectable faults").

Run it standalone with ``python -m bridge.sim.hec --port 8088``; it prints one line per indexed event.

Modules, one job each: ``simulator`` (:class:`HecSim`, assembled from the parts below, with its lifecycle and
the data endpoints), ``core`` (tokens, request log, body decoding, replies), ``index`` (indexing, per-event
checks, ``/raw``), ``acks`` (channels and acknowledgement), ``faults`` (injected faults), ``health``
(``/health``), ``auth`` (§1.2 header forms), ``protocol`` (code table, paths, reply bodies), ``records``
(:class:`RequestRecord`) and ``cli`` / ``__main__`` (the command line).
"""

from __future__ import annotations

from bridge.sim.hec.cli import main
from bridge.sim.hec.protocol import (
    CODE_TABLE,
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_TOKEN,
    FLUENT_BIT_NO_ENDPOINT,
    HEALTH_STATES,
)
from bridge.sim.hec.records import RequestRecord
from bridge.sim.hec.simulator import HecSim

__all__ = [
    "CODE_TABLE",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_TOKEN",
    "FLUENT_BIT_NO_ENDPOINT",
    "HEALTH_STATES",
    "HecSim",
    "RequestRecord",
    "main",
]
