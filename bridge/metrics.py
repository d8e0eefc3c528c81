"""What the bridge counts: the figures behind ``/healthz``, ``/metrics``, systemd's STATUS line and the summary log.

:class:`Stats` belongs to one :class:`~bridge.runtime.Runtime`. It counts readings received per hub and source
(the pipeline's ``on_readings``), events emitted (a pipeline listener), and reads the hub and sink statuses the
runtime already keeps. Sink totals (delivered, dead-lettered) survive restarts: they are stored in the journal
(``hub_meta`` under :data:`TOTALS_KEY`) every :data:`SAVE_EVERY` seconds and when the bridge stops, so a kill -9
loses at most those seconds of counting, never an event.

``/metrics`` is rendered by prometheus-client from a registry of this bridge's own: a collector that reads the
figures at scrape time, the delivery-latency histogram, the hub-request metrics any source records through
:func:`hub_request` and the process collectors.
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bridge.errors import JournalError
from bridge.events import Event, Reading

if TYPE_CHECKING:
    from bridge.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Where the sink totals live in the journal's hub_meta table (a name no hub can have: names are YAML strings,
# but this one is reserved here).
TOTALS_KEY = ("@bridge", "sink_totals")
# The per-sink counts kept across restarts (a journal written before "filtered" existed reads it as 0).
_TOTALS = ("delivered", "dead_lettered", "retries", "filtered")
SAVE_EVERY = 10.0
# Restarts of one component within this window make a crash loop (degraded on /healthz).
CRASH_LOOP = (5, 600.0)
# A dead letter within this window makes the sink degraded on /healthz.
DEAD_LETTER_RECENT = 3600.0

_SOURCE = operator.attrgetter("source")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# Hub requests, recorded by sources through hub_request(); one set per process, registered in every bridge's
# registry (a collector may belong to several).
HUB_REQUEST_SECONDS = Histogram(
    "hubbridge_hub_request_seconds",
    "Time of requests to hubs, by hub and endpoint",
    ["hub", "endpoint"],
    registry=None,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
HUB_REQUEST_ERRORS = PromCounter(
    "hubbridge_hub_request_errors",
    "Requests to hubs that failed (transport error, timeout, HTTP error), by hub and endpoint",
    ["hub", "endpoint"],
    registry=None,
)


@contextlib.contextmanager
def hub_request(hub: str, endpoint: str) -> Iterator[None]:
    """Time one request to a hub; an exception out of the block counts as an error. ``endpoint`` is a template
    (``devices/{id}``), never a path with ids or tokens in it."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        HUB_REQUEST_ERRORS.labels(hub, endpoint).inc()
        raise
    finally:
        HUB_REQUEST_SECONDS.labels(hub, endpoint).observe(time.perf_counter() - started)


def event_time(body: str) -> float | None:
    """The ``time`` of an event from its JSON line, without parsing the rest (``"time":1733.5,``)."""
    at = body.find('"time":')
    if at < 0:
        return None
    end = body.find(",", at)
    try:
        return float(body[at + 7 : end if end > 0 else None])
    except ValueError:
        return None


class Stats:
    """The counts and derived figures of one running bridge."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.started = time.time()
        self.received: Counter[tuple[str, str]] = Counter()  # (hub, source) -> readings recorded
        self.emitted: Counter[tuple[str, str]] = Counter()  # (hub, source) -> change events
        self.unchanged: Counter[str] = Counter()  # hub -> readings that were no change
        self.last_event: dict[str, float] = {}
        self.devices: dict[str, int] = {}
        self.oldest: dict[str, float | None] = {}  # sink -> age in seconds of its oldest undelivered event
        # Totals per sink across restarts: what was stored plus what every status object counted since.
        self.totals: dict[str, dict[str, int]] = {}
        # sink -> (its status object, what was counted of it so far); a reload's new status starts from zero.
        self._seen: dict[str, tuple[object, int, int, int, int]] = {}
        self._restarts: dict[str, deque[float]] = {}
        self._restart_seen: dict[str, tuple[object, int]] = {}
        self._last_dead: dict[str, float] = {}
        self._saved: dict[str, dict[str, int]] = {}
        self._last_save = 0.0
        self.latency = Histogram(
            "hubbridge_delivery_latency_seconds",
            "Per settled batch: from the hub time of its oldest event to the sink's confirmation",
            ["sink"],
            registry=None,
            buckets=LATENCY_BUCKETS,
        )
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (_Collector(self), self.latency, HUB_REQUEST_SECONDS, HUB_REQUEST_ERRORS):
            self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    # ------------------------------------------------------------------ feeding

    def on_readings(self, hub: str, readings: list[Reading]) -> None:
        # map(attrgetter): counted at C speed; this runs for every ingest.
        for source, n in Counter(map(_SOURCE, readings)).items():
            self.received[(hub, source)] += n

    def on_events(self, events: list[Event]) -> None:
        if not events:
            return
        hub = events[0].hub  # one ingest is one hub's
        for source, n in Counter(map(_SOURCE, events)).items():
            self.emitted[(hub, source)] += n
        self.last_event[hub] = time.time()

    async def load(self) -> None:
        """Take the stored sink totals (from before this start)."""
        stored = await self.runtime.journal.get_meta(*TOTALS_KEY)
        if isinstance(stored, dict):
            for sink, t in stored.items():
                if isinstance(t, dict):
                    self.totals[sink] = {k: int(t.get(k, 0)) for k in _TOTALS}
        self._saved = {k: dict(v) for k, v in self.totals.items()}

    async def save(self) -> None:
        """Store the sink totals if they changed (never fails the bridge: counting is not worth an outage)."""
        self.count()
        if self.totals == self._saved:
            return
        snapshot = {k: dict(v) for k, v in self.totals.items()}
        with contextlib.suppress(JournalError):
            await self.runtime.journal.set_meta(*TOTALS_KEY, snapshot)
            self._saved = snapshot
        self._last_save = time.monotonic()

    def count(self) -> None:
        """Fold what the statuses counted since the last call into the totals and the histogram."""
        now = time.time()
        for name, slot in self.runtime.sinks.items():
            st = slot.status
            before = self._seen.get(name)
            seen = before[1:] if before is not None and before[0] is st else (0, 0, 0, 0)
            total = self.totals.setdefault(name, dict.fromkeys(_TOTALS, 0))
            total["delivered"] += st.delivered - seen[0]
            total["dead_lettered"] += st.dead_lettered - seen[1]
            total["retries"] += st.retries - seen[2]
            total["filtered"] += st.filtered - seen[3]
            if st.dead_lettered > seen[1]:
                self._last_dead[name] = now
            self._seen[name] = (st, st.delivered, st.dead_lettered, st.retries, st.filtered)
            while st.settled:
                at, body = st.settled.popleft()
                t = event_time(body)
                if t is not None:
                    self.latency.labels(name).observe(max(0.0, at - t))
            self._note_restarts(f"sink:{name}", st, st.restarts)
        for name, hub_slot in self.runtime.hubs.items():
            self._note_restarts(f"hub:{name}", hub_slot.status, hub_slot.status.restarts)
        received: Counter[str] = Counter()
        emitted: Counter[str] = Counter()
        for (hub, _), n in self.received.items():
            received[hub] += n
        for (hub, _), n in self.emitted.items():
            emitted[hub] += n
        for hub, n in received.items():
            self.unchanged[hub] = max(0, n - emitted[hub])

    def _note_restarts(self, name: str, status: object, restarts: int) -> None:
        before = self._restart_seen.get(name)
        seen = before[1] if before is not None and before[0] is status else 0
        if restarts > seen:
            times = self._restarts.setdefault(name, deque(maxlen=CRASH_LOOP[0] * 4))
            times.extend([time.monotonic()] * (restarts - seen))
        self._restart_seen[name] = (status, restarts)

    def crash_loop(self, name: str) -> bool:
        times = self._restarts.get(name)
        if not times:
            return False
        now = time.monotonic()
        return sum(1 for t in times if now - t < CRASH_LOOP[1]) >= CRASH_LOOP[0]

    def recent_dead_letter(self, sink: str) -> bool:
        at = self._last_dead.get(sink)
        return at is not None and time.time() - at < DEAD_LETTER_RECENT

    async def refresh(self) -> None:
        """What needs the journal: the age of each sink's oldest undelivered event; device counts; saving."""
        self.count()
        journal = self.runtime.journal
        for name in list(self.runtime.sinks):
            pos = journal.cursor(name)
            if journal.head <= pos:
                self.oldest[name] = None
                continue
            try:
                records = await journal.read(pos, 1, 1 << 20)
            except JournalError:
                continue
            t = event_time(records[0].body) if records else None
            self.oldest[name] = None if t is None else max(0.0, time.time() - t)
        pipeline = self.runtime.pipeline
        if pipeline is not None:
            devices: dict[str, set[str]] = {}
            for hub, kind, device_id, _ in pipeline.differ.keys():  # noqa: SIM118 - a Differ is not a dict
                if kind == "device":
                    devices.setdefault(hub, set()).add(device_id)
            self.devices = {hub: len(ids) for hub, ids in devices.items()}
        if time.monotonic() - self._last_save >= SAVE_EVERY:
            await self.save()

    # ------------------------------------------------------------------ reading

    def rates(self) -> dict[str, int]:
        """Totals the STATUS line and summary turn into rates: events in, and out per sink."""
        self.count()
        out = {"in": sum(self.emitted.values())}
        for name, t in self.totals.items():
            out[f"sink:{name}"] = t["delivered"]
        return out

    def metrics(self) -> bytes:
        self.count()
        return generate_latest(self.registry)


class _Collector(Collector):
    """The figures of one bridge, read at scrape time."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        rt = s.runtime
        received = CounterMetricFamily(
            "hubbridge_readings_received", "Readings recorded from hubs, by hub and source", labels=["hub", "source"]
        )
        for (hub, source), n in sorted(s.received.items()):
            received.add_metric([hub, source], n)
        unchanged = CounterMetricFamily(
            "hubbridge_readings_unchanged", "Readings dropped as no change against the last known value", labels=["hub"]
        )
        for hub, n in sorted(s.unchanged.items()):
            unchanged.add_metric([hub], n)
        emitted = CounterMetricFamily(
            "hubbridge_events_emitted", "Change events committed to the journal", labels=["hub", "source"]
        )
        for (hub, source), n in sorted(s.emitted.items()):
            emitted.add_metric([hub, source], n)
        refused = CounterMetricFamily("hubbridge_events_refused", "Events refused because they cannot be stored")
        refused.add_metric([], rt.pipeline.refused if rt.pipeline is not None else 0)
        yield from (received, unchanged, emitted, refused)

        families: dict[str, Any] = {
            "delivered": CounterMetricFamily(
                "hubbridge_sink_delivered", "Events a sink delivered (across restarts)", labels=["sink"]
            ),
            "retries": CounterMetricFamily(
                "hubbridge_sink_retries", "Failed delivery attempts, each retried (across restarts)", labels=["sink"]
            ),
            "dead_lettered": CounterMetricFamily(
                "hubbridge_sink_dead_lettered", "Events a sink refused for good (across restarts)", labels=["sink"]
            ),
            "filtered": CounterMetricFamily(
                "hubbridge_sink_filtered", "Events a sink's filters did not forward (across restarts)", labels=["sink"]
            ),
        }
        backlog = GaugeMetricFamily("hubbridge_sink_backlog_events", "Events not yet delivered", labels=["sink"])
        oldest = GaugeMetricFamily(
            "hubbridge_sink_oldest_undelivered_seconds", "Age of the oldest undelivered event", labels=["sink"]
        )
        in_flight = GaugeMetricFamily(
            "hubbridge_sink_in_flight_events", "Events in batches sent and not yet settled", labels=["sink"]
        )
        up = GaugeMetricFamily("hubbridge_sink_up", "1 while the sink delivers (state ok)", labels=["sink"])
        for name, slot in rt.sinks.items():
            total = s.totals.get(name, {})
            for key, fam in families.items():
                fam.add_metric([name], total.get(key, 0))
            backlog.add_metric([name], slot.lag)
            oldest.add_metric([name], s.oldest.get(name) or 0.0)
            in_flight.add_metric([name], slot.status.in_flight)
            up.add_metric([name], 1.0 if slot.status.state == "ok" else 0.0)
        yield from families.values()
        yield from (backlog, oldest, in_flight, up)

        hub_up = GaugeMetricFamily("hubbridge_hub_up", "1 while the hub answers (state ok)", labels=["hub"])
        devices = GaugeMetricFamily("hubbridge_hub_devices", "Devices known per hub", labels=["hub"])
        for name, hub_slot in rt.hubs.items():
            hub_up.add_metric([name], 1.0 if hub_slot.status.state == "ok" else 0.0)
            devices.add_metric([name], s.devices.get(name, 0))
        yield from (hub_up, devices)

        disk = rt.journal.disk
        jbytes = GaugeMetricFamily("hubbridge_journal_disk_bytes", "The journal's files on disk")
        jbytes.add_metric([], disk.file_bytes)
        head = GaugeMetricFamily("hubbridge_journal_head", "Sequence number of the newest journalled event")
        head.add_metric([], rt.journal.head)
        full = GaugeMetricFamily("hubbridge_journal_full", "1 while the journal is full (hubs hold)")
        full.add_metric([], 1.0 if rt.journal.full else 0.0)
        yield from (jbytes, head, full)
