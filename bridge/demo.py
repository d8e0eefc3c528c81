"""``hubbridge demo``: the real pipeline against the built-in simulators, in a temporary directory.

Nothing here is a mock of the bridge: the simulated hub speaks Maker API, ``/eventsocket`` and POST-URL over
real loopback sockets, and the bridge is the same Runtime ``hubbridge run`` starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from bridge.config import load_config
from bridge.events import Event
from bridge.logs import setup_logging
from bridge.runtime import Runtime
from bridge.sim.hec import HecSim
from bridge.sim.homey import HomeySim
from bridge.sim.hubitat import HubitatSim
from bridge.sim.webhook import WebhookSim

DEMO_CONFIG = """\
state_dir: {dir}/state
listen: 127.0.0.1:0
log:
  level: warning
hubs:
  - name: demo-hub
    type: hubitat
    url: {hub_url}
    app_id: {app_id}
    access_token: ${{DEMO_HUB_TOKEN}}
    eventsocket: true
    poll_interval: 30s
    webhook_secret: demo-webhook-secret
    health: true
    health_interval: 30s
  - name: cabin
    type: homey
    url: {homey_url}
    api_key: ${{DEMO_HOMEY_KEY}}
    realtime: true
    poll_interval: 30s
sinks:
  - name: archive
    type: file
    path: {dir}/events.jsonl
  - name: splunk
    type: splunk_hec
    url: {hec_url}
    token: ${{DEMO_HEC_TOKEN}}
    index: smarthome
    batch:
      max_wait: 500ms
  - name: relay
    type: webhook
    url: {relay_url}
    secret: ${{DEMO_WEBHOOK_SECRET}}
    filters:
      deadband: {{temperature: 0.5}}
"""
# A Standard Webhooks secret for the demo's relay (whsec_ + base64); the simulated receiver checks every signature.
DEMO_WEBHOOK_SECRET = "whsec_ZGVtby1yZWxheS1zZWNyZXQtMDEyMzQ1"


def _show(events: list[Event]) -> None:
    for ev in events:
        when = time.strftime("%H:%M:%S", time.localtime(ev.time))
        what = ev.device or {"location": "location", "hub": "hub", "bridge": "bridge"}.get(ev.kind, ev.kind)
        change = f"{ev.previous!r} -> {ev.value!r}" if ev.previous is not None else f"{ev.value!r}"
        unit = f" {ev.unit}" if ev.unit else ""
        print(f"{when}  {ev.hub:<9} {what[:28]:<28} {ev.attribute:<18} {change}{unit}  [{ev.source}]", flush=True)


async def _demo(duration: float | None, directory: Path) -> int:
    hec = HecSim(tokens=("demo-hec-token",), allowed_indexes=("smarthome",))
    await hec.start()
    sim = HubitatSim(seed=int(time.time()))
    sim.duplicate_frame_rate = 0.05  # the real eventsocket repeats frames; the diff drops the repeats
    sim.split_frame_rate = 0.05
    await sim.start()
    homey = HomeySim(seed=int(time.time()))
    await homey.start()
    relay = WebhookSim(secrets=[DEMO_WEBHOOK_SECRET], require_signature=True)
    await relay.start()
    cfg_path = directory / "hubbridge.yaml"
    cfg_path.write_text(
        DEMO_CONFIG.format(
            dir=directory,
            hub_url=sim.url,
            app_id=sim.app_id,
            hec_url=hec.url,
            relay_url=relay.url,
            homey_url=homey.url,
        ),
        encoding="utf-8",
    )
    env = {
        "DEMO_HUB_TOKEN": sim.access_token,
        "DEMO_HEC_TOKEN": "demo-hec-token",
        "DEMO_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
        "DEMO_HOMEY_KEY": homey.api_key,
    }
    cfg = load_config(cfg_path, env=env)
    setup_logging(cfg.log.level, "console")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"hubbridge demo: simulated Hubitat hub at {sim.url}, simulated Homey at {homey.url}")
    print(f"  sinks: {directory / 'events.jsonl'} and a simulated Splunk HEC at {hec.url} (index smarthome)")
    print(f"  relay: a simulated webhook receiver at {relay.url} (signed; temperature deadband 0.5)")
    print("Ctrl-C to stop.\n")
    runtime = Runtime(cfg, on_events=_show)
    activity: asyncio.Task[None] | None = None

    async def drive() -> None:
        await runtime.ready.wait()
        await asyncio.sleep(2.0)
        await activity_loop()

    async def activity_loop() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.random_activity(interval=1.0), name="sim-hubitat-activity")
            tg.create_task(homey.random_activity(interval=1.0), name="sim-homey-activity")

    async def hub_weather() -> None:
        # The hub's own health moves too (memory, load, heat), and after a while it has a 500 storm.
        await runtime.ready.wait()
        await _hub_health_demo(sim, runtime)

    async def splunk_report() -> None:
        # What the (simulated) Splunk indexed, as a search would show it.
        seen = 0
        while True:
            await asyncio.sleep(5.0)
            events = hec.events()
            if len(events) > seen:
                latest = events[-1]["event"]
                print(
                    f"          splunk    indexed {len(events) - seen} new event(s), {len(events)} in "
                    f"index=smarthome sourcetype=hubbridge:event; latest: {latest['device'] or latest['kind']} "
                    f"{latest['attribute']}={latest['value']!r}",
                    flush=True,
                )
                seen = len(events)

    async def relay_report() -> None:
        # What the (simulated) webhook receiver accepted, each request's signature checked.
        seen = 0
        while True:
            await asyncio.sleep(5.0)
            got = relay.delivered()
            if len(got) > seen:
                latest = got[-1]
                print(
                    f"          relay     received {len(got) - seen} new event(s) by webhook, {len(got)} in all, every "
                    f"signature verified; latest: {latest['device'] or latest['kind']} "
                    f"{latest['attribute']}={latest['value']!r}",
                    flush=True,
                )
                seen = len(got)

    async def timer() -> None:
        if duration is not None:
            await asyncio.sleep(duration)
            stop.set()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runtime.run(stop), name="bridge")
            activity = tg.create_task(drive(), name="sim-activity")
            stopper = tg.create_task(timer(), name="demo-timer")
            reporter = tg.create_task(splunk_report(), name="demo-splunk-report")
            weather = tg.create_task(hub_weather(), name="demo-hub-health")
            relayer = tg.create_task(relay_report(), name="demo-relay-report")
            await stop.wait()
            for task in (activity, stopper, reporter, weather, relayer):
                task.cancel()
    finally:
        await sim.stop()
        await homey.stop()
        await hec.stop()
        await relay.stop()
    lines = (directory / "events.jsonl").read_text(encoding="utf-8").count("\n")
    indexed = len(hec.events())
    relayed = len(relay.delivered())
    refused = sum(1 for q in relay.received if q.verified is not True)
    print(f"\nstopped: {lines} event(s) in {directory / 'events.jsonl'}; {indexed} indexed by the Splunk simulator")
    print(
        f"         {relayed} relayed to the webhook receiver ({lines - relayed} held back by the temperature "
        f"deadband); {refused} request(s) with a bad signature"
    )
    return 0


async def _hub_health_demo(sim: HubitatSim, runtime: Runtime, storm_after: float = 45.0) -> None:
    """Move the simulated hub's health values now and then, and give it one 500 storm after ``storm_after`` s."""
    rng = random.Random(sim.firmware)
    sim.hub_data_base_model = {"zigbeeStatus": "enabled", "zwaveStatus": "false", "cloudDisconnected": False}
    started = time.monotonic()
    stormed = False
    while True:
        await asyncio.sleep(5.0)
        sim.set_health(
            free_os=rng.randint(600_000, 1_250_000),
            cpu=round(rng.uniform(0.2, 2.5), 2),
            total_java=174384,
            free_java=rng.randint(4000, 60000),
            direct_java=22091,
        )
        sim.internal_temp = round(rng.uniform(37.0, 41.0), 1)
        if not stormed and time.monotonic() - started >= storm_after:
            stormed = True
            print("          demo      the simulated hub answers HTTP 500 to everything for 10 s (a 500 storm)")
            sim.storm = True
            runner = runtime.runners.get("demo-hub")
            if runner is not None:
                runner.reconcile("demo: 500 storm")  # a poll now, so the storm is seen; backoff paces the rest
            await asyncio.sleep(10.0)
            sim.storm = False
            print("          demo      the storm is over", flush=True)


def run_demo(duration: float | None = None, directory: str | None = None) -> int:
    if directory is not None:
        path = Path(directory).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(duration, path))
    with tempfile.TemporaryDirectory(prefix="hubbridge-demo-") as tmp:
        try:
            return asyncio.run(_demo(duration, Path(tmp)))
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
            return 0
