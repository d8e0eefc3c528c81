"""Memory and disk under hostile input: many eventsocket frames just under the frame limit.

    python bench/bench_memory.py                 # --frames 1000 --size 440000 (frames of about 900 KB)

The bridge runs as a real subprocess (``python -m bridge.cli run``) against the Hubitat simulator in this process,
with one file sink. The simulator sends ``--frames`` eventsocket frames whose value is ``--size`` characters (each
under the 1 MiB frame limit), as fast as the socket takes them. Printed: the bridge's peak RSS (VmHWM from
/proc), the state directory's size on disk at its largest and at the end, how many of those events reached the
file, and how long the bridge took to be idle again. Not a test: nothing asserts.

It uses only the config, the CLI, /healthz and HubitatSim's public API, so it runs against older builds too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bridge.sim.hubitat import HubitatSim

TOKEN = "bench-token"

CONFIG = """\
state_dir: {dir}/state
listen: 127.0.0.1:{port}
log: {{level: warning, format: json}}
hubs:
  - name: bench
    type: hubitat
    url: {url}
    app_id: {app_id}
    access_token: {token}
    eventsocket: true
    poll_interval: 1h
    detail_spacing: 0s
sinks:
  - name: archive
    type: file
    path: {dir}/events.jsonl
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().split()
    return (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


async def main(frames: int, size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hubbridge-mem-") as tmp:
        directory = Path(tmp)
        async with HubitatSim(access_token=TOKEN) as sim:
            port = free_port()
            cfg = directory / "bench.yaml"
            cfg.write_text(
                CONFIG.format(dir=directory, port=port, url=sim.url, app_id=sim.app_id, token=TOKEN), encoding="utf-8"
            )
            log = (directory / "bridge.log").open("wb")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg), stdout=log, stderr=log
            )
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            await resp.read()
                            if sim.eventsocket_connections:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # the start-up reconciliation
                base_rss = vm_hwm(proc.pid)
                start = time.monotonic()
                state = directory / "state"
                peak_disk = 0
                filler = "x" * size
                for n in range(frames):
                    sim.set_attribute("176", "label", f"{n}:{filler}")
                    if n % 20 == 0:
                        await sim.wait_eventsockets_idle(timeout=600)
                        peak_disk = max(peak_disk, dir_bytes(state))
                await sim.wait_eventsockets_idle(timeout=600)
                sent = time.monotonic() - start
                # Idle again: the bridge's CPU stops moving.
                last, quiet = -1.0, 0
                while quiet < 5:
                    await asyncio.sleep(0.2)
                    cpu = cpu_seconds(proc.pid)
                    peak_disk = max(peak_disk, dir_bytes(state))
                    quiet = quiet + 1 if cpu == last else 0
                    last = cpu
                idle = time.monotonic() - start
                peak_rss = vm_hwm(proc.pid)
                end_disk = dir_bytes(state)
            proc.terminate()
            await proc.wait()
            log.close()
            lines = (directory / "events.jsonl").read_text(encoding="utf-8", errors="replace").count('"label"')
            total = frames * 2 * size / 1e6
            print(f"{frames} frames of about {2 * size:,} bytes ({total:,.0f} MB) sent in {sent:.1f} s")
            print(f"bridge peak RSS: {peak_rss / 1e6:,.0f} MB (before the frames: {base_rss / 1e6:,.0f} MB)")
            print(f"state directory on disk: peak {peak_disk / 1e6:,.1f} MB, at the end {end_disk / 1e6:,.1f} MB")
            print(f"events of those frames in the file: {lines}; bridge idle again after {idle:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    # The simulator repeats the value in descriptionText: 440 000 characters make a frame of about 900 KB.
    parser.add_argument("--size", type=int, default=440_000)
    args = parser.parse_args()
    asyncio.run(main(args.frames, args.size))
