"""Bridge CPU per event on the Maker API POST-URL -> Splunk HEC path, at several POST concurrencies.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_posturl.py          # --events 20000 --inflight 8 32 --rounds 3

What runs, and where:

* The bridge is a real subprocess, ``python -m bridge.cli run -c <config>``, started afresh (with a fresh
  state dir) for every run, so no run inherits a warm journal or diff table from another. Its config has one
  hubitat hub (``eventsocket: false``, ``poll_interval: 1h``, a ``webhook_secret``) and one ``splunk_hec`` sink;
  logs at level warning as JSON lines, stdout and stderr to a file that is scanned for warnings afterwards.
* A HubitatSim runs in this process. The bridge needs it only for its start-up poll (which learns the devices
  and their attribute dataTypes); nothing talks to it during the measured window.
* A HecSim runs in a child process pinned to the last CPU (bench/hec_child.py, as for bench_hec.py), reports the
  moment it has indexed the last event. The bridge is pinned to CPU 0, this process (the POST client) to the
  last CPU, so the bridge has one core to itself and the simulators' work is not billed to it.
* This process is the hub's POST-URL client: it POSTs Maker API bodies (hubitat.md 1.4: ``{"content": {...}}``,
  string values, string ``deviceId``) to ``/hubitat/<hub>/<secret>`` with exactly C requests in flight: C
  workers, each sending its next body when the previous one was answered. Every request must be answered 200.

Every body is a real change, so the bridge's diff drops none: the attributes of the simulator's devices (read
over Maker API) are split among the C workers, so no attribute is ever in two requests at once and its values
arrive in order, and each attribute gets values that never repeat (numbers and strings) or that cycle through
its enum values (never the same twice in a row, and never the value the start-up poll saw first).

Per run: a warm-up of ``--warmup`` POSTs (not timed; opens the C connections, warms the bridge), then a wait
until the HEC count is stable; then the window, from the first POST until the HEC simulator has indexed all
``--events`` events. Reported: events/s over that window (wall), the bridge's CPU time over it (utime+stime
from /proc/<pid>/stat) per event, and the latency of the POSTs (p50, p99). Also shown: how long the POSTs took
alone, and how busy the client's core was (this process + the HEC simulator), to tell when the client or the
simulator, not the bridge, set the pace.

Not a test: nothing asserts. It exits non-zero, with a message, if a POST is not answered 200 or an event is
missing from the HEC simulator. The machine's other load shows as spread between rounds; look at min-max.

It uses only interfaces that do not depend on the bridge's internals: the YAML config, the CLI, ``GET
/healthz``, ``bridge.sim.hubitat.HubitatSim`` and ``bridge.sim.hec.HecSim``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hec_child import TICK, HecChild, cpu_ticks, last_cpu, pin

from bridge.sim.hubitat import HubitatSim

HUB = "bench"
HUB_TOKEN = "bench-hub-token"
HEC_TOKEN = "bench-hec-token"
SECRET = "bench-posturl-secret"
# Set explicitly (they are the documented defaults) so a change of defaults cannot change what is compared.
BATCH_MAX_WAIT = 1.0
# Occurrences, not states (a repeat is a new press): the diff treats repeats specially, so they are left out.
MOMENTARY = frozenset({"pushed", "held", "doubleTapped", "released"})

CONFIG = """\
state_dir: {dir}/state
listen: 127.0.0.1:{port}
log:
  level: warning
  format: json
hubs:
  - name: {hub}
    type: hubitat
    url: {hub_url}
    app_id: {app_id}
    access_token: {hub_token}
    eventsocket: false
    poll_interval: 1h
    detail_spacing: 0s
    webhook_secret: {secret}
sinks:
  - name: splunk
    type: splunk_hec
    url: {hec_url}
    token: {hec_token}
    index: smarthome
    batch:
      max_events: 500
      max_bytes: 1MiB
      max_wait: {max_wait}s
"""


# ---------------------------------------------------------------------- what to POST


@dataclass(frozen=True)
class Attribute:
    """One attribute of one simulated device, as Maker API describes it."""

    device_id: str
    label: str
    name: str
    data_type: str
    current: Any
    values: tuple[str, ...]

    def changes(self) -> Iterator[str]:
        """Wire values (POST-URL sends strings) that each differ from the one before, starting from ``current``."""
        if self.data_type == "ENUM" and len(self.values) >= 2:
            start = self.values.index(self.current) + 1 if self.current in self.values else 0
            return itertools.islice(itertools.cycle(self.values), start, None)
        if self.data_type == "NUMBER":
            return (str(1_000_000 + i) for i in itertools.count(1))
        if self.data_type == "DECIMAL":
            return (f"{1_000_000 + i}.5" for i in itertools.count(1))
        return (f"bench {i}" for i in itertools.count(1))  # STRING, or an enum without a usable value list


async def hub_attributes(sim: HubitatSim) -> list[Attribute]:
    """Every attribute of the simulator's devices that can take a stream of changes, read over Maker API."""
    base = f"{sim.url}/apps/api/{sim.app_id}"
    params = {"access_token": HUB_TOKEN}
    out: list[Attribute] = []
    async with aiohttp.ClientSession() as http:
        # Maker API answers JSON as text/html (hubitat.md 1.1): parse the text, whatever the header says.
        async with http.get(f"{base}/devices", params=params) as resp:
            devices = json.loads(await resp.text())
        for dev in devices:
            async with http.get(f"{base}/devices/{dev['id']}", params=params) as resp:
                detail = json.loads(await resp.text())
            label = str(detail.get("label") or detail.get("name"))
            seen: set[str] = set()
            for attr in detail["attributes"]:
                name, data_type = attr["name"], attr.get("dataType")
                # Duplicate attributes exist (hubitat.md 1.3); JSON objects are not a stream of values.
                if name in seen or name in MOMENTARY or data_type not in ("ENUM", "NUMBER", "DECIMAL", "STRING"):
                    continue
                seen.add(name)
                values = tuple(dict.fromkeys(str(v) for v in attr.get("values") or ()))
                out.append(Attribute(str(detail["id"]), label, name, data_type, attr.get("currentValue"), values))
    return out


def _body(attr: Attribute, value: str) -> bytes:
    content = {
        "name": attr.name,
        "value": value,
        "displayName": attr.label,
        "deviceId": attr.device_id,
        "descriptionText": f"{attr.label} {attr.name} is {value}",
        "unit": None,
        "type": None,
        "data": None,
    }
    return json.dumps({"content": content}).encode()


class Plan:
    """The bodies of one run, per worker: worker w owns attributes w, w+C, w+2C... and only it POSTs them."""

    def __init__(self, attributes: list[Attribute], inflight: int) -> None:
        if len(attributes) < inflight:
            raise SystemExit(
                f"bench_posturl: the hub has {len(attributes)} attributes to change, fewer than {inflight} requests "
                "in flight: two requests would carry the same attribute and could be reordered"
            )
        self.inflight = inflight
        self._streams: list[Iterator[bytes]] = [self._stream(attributes[w::inflight]) for w in range(inflight)]

    @staticmethod
    def _stream(owned: list[Attribute]) -> Iterator[bytes]:
        changes = [a.changes() for a in owned]
        for i in itertools.count():
            k = i % len(owned)
            yield _body(owned[k], next(changes[k]))

    def take(self, n: int) -> list[list[bytes]]:
        """The next n bodies, split as evenly as possible among the workers (encoded now, outside any window)."""
        c = self.inflight
        return [list(itertools.islice(self._streams[w], n // c + (w < n % c))) for w in range(c)]


# ---------------------------------------------------------------------- the bridge


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Bridge:
    """One bridge subprocess with its own config, state dir and log file."""

    def __init__(self, workdir: Path, hub: HubitatSim, hec_url: str) -> None:
        self.port = _free_port()
        self.log_path = workdir / "bridge.log"
        cfg = workdir / "bridge.yaml"
        cfg.write_text(
            CONFIG.format(
                dir=workdir,
                port=self.port,
                hub=HUB,
                hub_url=hub.url,
                app_id=hub.app_id,
                hub_token=HUB_TOKEN,
                secret=SECRET,
                hec_url=hec_url,
                hec_token=HEC_TOKEN,
                max_wait=BATCH_MAX_WAIT,
            ),
            encoding="utf-8",
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.post_url = f"{self.base}/hubitat/{HUB}/{SECRET}"
        with open(self.log_path, "wb") as log:
            # Children inherit the CPU affinity: pin this process to CPU 0 while it forks the bridge, then back.
            pin({0})
            try:
                # cwd=REPO: "-m bridge.cli" then runs this checkout's bridge, whatever is installed.
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            finally:
                pin({last_cpu()})

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until /healthz answers 200: the listener is up, the start-up poll has run and the sink is ok."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(
                        f"bench_posturl: the bridge exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base}/healthz") as resp:
                        await resp.read()
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise SystemExit(f"bench_posturl: /healthz not 200 after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_findings(self) -> Counter[str]:
        """Lines at warning or above (JSON) and lines that are not JSON at all (tracebacks, Python warnings)."""
        found: Counter[str] = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                found[f"(not JSON) {line.strip()[:160]}"] += 1
                continue
            if not isinstance(rec, dict):
                found[f"(not JSON) {line.strip()[:160]}"] += 1
            elif str(rec.get("level", "")).lower() in ("warning", "error", "critical", "exception"):
                found[f"{rec.get('level')}: {rec.get('event')}"] += 1
        return found


# ---------------------------------------------------------------------- one run


@dataclass
class Result:
    inflight: int
    events: int
    wall: float  # first POST -> last event indexed
    posts_wall: float  # first POST -> last POST answered
    bridge_cpu: float
    side_cpu: float  # this process + the HEC simulator, on the other core
    latencies: list[float]
    findings: Counter[str]

    @property
    def rate(self) -> float:
        return self.events / self.wall

    @property
    def us_per_event(self) -> float:
        return self.bridge_cpu / self.events * 1e6

    def pct(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000


async def post_all(
    http: aiohttp.ClientSession, url: str, per_worker: list[list[bytes]]
) -> tuple[list[float], Counter[int]]:
    """POST every body, one worker per list: C workers = exactly C requests in flight. (latencies, non-200s)."""
    latencies: list[float] = []
    failures: Counter[int] = Counter()
    headers = {"Content-Type": "application/json"}

    async def worker(bodies: list[bytes]) -> None:
        for body in bodies:
            t0 = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = -1
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                failures[status] += 1

    await asyncio.gather(*(worker(b) for b in per_worker))
    return latencies, failures


async def settle(hec: HecChild, quiet: float) -> int:
    """The HEC count once it has not moved for ``quiet`` seconds (longer than a batch may wait to grow)."""
    last, since = -1, time.monotonic()
    while True:
        total, _, _ = hec.count(0)
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return total
        await asyncio.sleep(0.1)


async def run_once(
    hub: HubitatSim, hec: HecChild, attributes: list[Attribute], inflight: int, n: int, warmup: int, keep: bool
) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix=f"hubbridge-posturl-c{inflight}-"))
    hec.clear()
    bridge = Bridge(workdir, hub, hec.url)
    try:
        await bridge.wait_healthy()
        plan = Plan(attributes, inflight)
        connector = aiohttp.TCPConnector(limit=inflight)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            _, failed = await post_all(http, bridge.post_url, plan.take(warmup))
            if failed:
                raise SystemExit(f"bench_posturl: warm-up POSTs not answered 200: {dict(failed)}\n{bridge.log_tail()}")
            base = await settle(hec, quiet=2 * BATCH_MAX_WAIT + 0.5)
            bodies = plan.take(n)
            timeout = max(60.0, n * 0.005)
            hec.start_wait(base + n, bridge.proc.pid, timeout)
            gc.collect()
            ticks0, cpu0, t0 = cpu_ticks(bridge.proc.pid), time.process_time(), time.monotonic()
            latencies, failed = await post_all(http, bridge.post_url, bodies)
            posts_done, client_cpu = time.monotonic(), time.process_time() - cpu0
            if failed:
                raise SystemExit(
                    f"bench_posturl: {sum(failed.values())} of {n} POSTs not answered 200 (status: count, -1 = no "
                    f"answer) {dict(failed)}\n{bridge.log_tail()}"
                )
            ok, indexed_at, ticks1, hec_cpu = await asyncio.to_thread(hec.waited)
        total, unique, _ = hec.count(base)
        if not ok or unique < n:
            raise SystemExit(
                f"bench_posturl: events missing: the HEC simulator indexed {total - base} envelopes "
                f"({unique} distinct events) of the {n} POSTed, {timeout:.0f} s after the first POST"
                f"\n{bridge.log_tail()}"
            )
        if total - base != n:
            print(f"  note: {total - base - n} extra envelopes indexed (duplicates or unexpected events)")
        rc = bridge.stop()
        findings = bridge.log_findings()
        if rc != 0:
            findings[f"bridge exit status {rc} after SIGTERM"] += 1
        return Result(
            inflight=inflight,
            events=n,
            wall=indexed_at - t0,
            posts_wall=posts_done - t0,
            bridge_cpu=(ticks1 - ticks0) * TICK,
            side_cpu=client_cpu + hec_cpu,
            latencies=latencies,
            findings=findings,
        )
    finally:
        bridge.stop()
        if keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- main


def _spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    pct = (hi - lo) / med * 100 if med else 0.0
    return f"{format(med, fmt)} ({format(lo, fmt)}-{format(hi, fmt)}, spread {pct:.0f}%)"


async def amain(args: argparse.Namespace) -> int:
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; bridge pinned to CPU 0, client and HEC sim to "
        f"CPU {last_cpu()}; {args.events} events per run, {args.warmup} warm-up POSTs"
    )
    hec = HecChild(HEC_TOKEN, {last_cpu()})
    pin({last_cpu()})
    results: list[Result] = []
    try:
        async with HubitatSim(access_token=HUB_TOKEN) as hub:
            attributes = await hub_attributes(hub)
            devices = len({a.device_id for a in attributes})
            print(f"POST-URL bodies over {len(attributes)} attributes of {devices} devices")
            print()
            print(
                f"{'inflight':>8} {'round':>5} {'events/s':>9} {'bridge CPU':>12} {'bridge':>7} {'client+HEC':>10} "
                f"{'POST p50':>9} {'POST p99':>9} {'POSTs done':>10} {'all indexed':>11}"
            )
            print(
                f"{'':>8} {'':>5} {'(wall)':>9} {'us/event':>12} {'CPU %':>7} {'CPU %':>10} "
                f"{'ms':>9} {'ms':>9} {'s':>10} {'s':>11}"
            )
            for rnd in range(1, args.rounds + 1):
                for c in args.inflight:
                    r = await run_once(hub, hec, attributes, c, args.events, args.warmup, args.keep)
                    results.append(r)
                    print(
                        f"{c:>8} {rnd:>5} {r.rate:>9,.0f} {r.us_per_event:>12.1f} {r.bridge_cpu / r.wall * 100:>6.0f}% "
                        f"{r.side_cpu / r.wall * 100:>9.0f}% {r.pct(50):>9.2f} {r.pct(99):>9.2f} "
                        f"{r.posts_wall:>10.2f} {r.wall:>11.2f}",
                        flush=True,
                    )
                    for msg, k in sorted(r.findings.items(), key=lambda x: -x[1])[:5]:
                        print(f"{'':>15}bridge log: {k} x {msg}")
    finally:
        hec.stop()

    print()
    print(f"median (min-max, spread = (max-min)/median) of {args.rounds} rounds, {args.events} events each:")
    for c in args.inflight:
        rs = [r for r in results if r.inflight == c]
        print(
            f"  {c:>3} in flight: {_spread([r.rate for r in rs], ',.0f')} events/s; bridge CPU "
            f"{_spread([r.us_per_event for r in rs], '.1f')} us/event; POST p50 "
            f"{_spread([r.pct(50) for r in rs], '.2f')} ms, p99 {_spread([r.pct(99) for r in rs], '.2f')} ms"
        )
    logged = sum((r.findings for r in results), Counter[str]())
    if logged:
        print(f"bridge logs had {sum(logged.values())} lines at warning or above (or not JSON): see above")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bridge CPU per event on POST-URL -> Splunk HEC")
    parser.add_argument("--events", type=int, default=20_000, help="POSTs (= events) measured per run")
    parser.add_argument("--inflight", type=int, nargs="+", default=[8, 32], help="POST requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each concurrency, interleaved")
    parser.add_argument("--warmup", type=int, default=1000, help="POSTs before each timed window, not counted")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (config, state, log)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.rounds < 1 or min(args.inflight) < 1:
        parser.error("--events, --rounds and --inflight must be positive")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
