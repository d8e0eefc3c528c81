"""`hubbridge demo` runs the real pipeline against the built-in simulator and exits cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridge.events import FIELDS


def test_demo_shows_events_and_writes_the_file(tmp_path: Path) -> None:
    """`hubbridge demo` prints events as they flow, writes them to the file and reports what Splunk indexed."""
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "demo", "--duration", "6", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # The first reconciliation poll reports every attribute; then live changes stream in.
    assert "[reconcile]" in out
    assert "[eventsocket]" in out
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 20
    events = [json.loads(line) for line in lines]
    assert all(tuple(ev) == FIELDS for ev in events)
    assert any(ev["source"] == "eventsocket" and ev["previous"] is not None for ev in events)
    # The simulated Homey runs beside it: its poll, its realtime changes and its Logic variables.
    homey = [ev for ev in events if ev["hub_type"] == "homey"]
    assert any(ev["kind"] == "variable" for ev in homey)
    assert any(ev["source"] == "realtime" and ev["previous"] is not None for ev in homey)
    assert f"{len(lines)} event(s)" in out
    # The same events reached the simulated Splunk HEC, and the demo says what it indexed.
    assert f"{len(lines)} indexed by the Splunk simulator" in out
    assert "index=smarthome" in out
    # The simulated hub's own health (health: true in the demo config) shows as kind hub events, typed.
    assert "free_os_memory" in out and "internal_temperature" in out
    health = {ev["attribute"]: ev for ev in events if ev["kind"] == "hub" and ev["device_id"] is None}
    assert health["free_os_memory"]["unit"] == "KB" and isinstance(health["free_os_memory"]["value"], int)
    assert isinstance(health["cpu_load_5m"]["value"], float)
    # The relay got them too, every request signed, minus what its temperature deadband held back.
    relayed = int(out.split(" relayed to the webhook receiver")[0].rsplit(None, 1)[-1])
    assert 0 < relayed <= len(lines) and "; 0 request(s) with a bad signature" in out


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C stops the demo cleanly with exit code 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "demo", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "events.jsonl").exists():
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped:" in out
    assert "Traceback" not in err
