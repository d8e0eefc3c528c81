"""The operator's commands, run as a user runs them: ``--help``, the default config path, ``check --credentials``,
``status``, ``tap``, ``top`` (in a pseudo-terminal) and ``devices``, against a real bridge and the Hubitat simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import _parser, main
from bridge.sim.hubitat import HubitatSim
from bridge.sources.hubitat import MOMENTARY
from tests.test_cli import WAIT, bridges, write_config

__all__ = ["bridges"]

TOKEN = "commands-test-token"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subparsers(sub)
                out.update({f"{name} {k}": v for k, v in nested.items()} if nested else {name: sub})
    return out


def test_every_subcommand_has_a_description_and_examples() -> None:
    """`hubbridge X --help` says what X does and shows how to call it, for every X."""
    subs = _subparsers(_parser())
    assert {"run", "check", "status", "top", "tap", "devices", "spool dead-letters", "spool drop-sink"} <= set(subs)
    for name, sub in subs.items():
        text = sub.format_help()
        assert sub.description and len(sub.description) > 40, name
        assert "examples:\n  hubbridge" in text or "examples:\n  HUBBRIDGE" in text or "systemctl" in text, name


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`hubbridge check ARGS` through the CLI's entry point (in-process: no interpreter start per call)."""
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_config_defaults_to_the_environment_then_etc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -c, `check` reads $HUBBRIDGE_CONFIG; without that, /etc/hubbridge/hubbridge.yaml (named if missing)."""
    cfg = write_config(tmp_path)
    monkeypatch.setenv("HUBBRIDGE_CONFIG", str(cfg))
    code, out, err = _check(capsys)
    assert code == 0 and str(cfg) in out, err
    monkeypatch.delenv("HUBBRIDGE_CONFIG")
    if Path("/etc/hubbridge/hubbridge.yaml").exists():
        pytest.skip("this machine has an installed config")
    code, out, err = _check(capsys)
    assert code == 2
    assert (
        err.strip()
        == "hubbridge: /etc/hubbridge/hubbridge.yaml: cannot read the config file: No such file or directory"
    )


def test_check_credentials_reads_the_secret_files_from_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A production config naming ${CREDENTIALS_DIRECTORY}/... is checked by hand with --credentials DIR."""
    hub = {
        "name": "home",
        "type": "hubitat",
        "url": "http://192.0.2.1",
        "app_id": 1,
        "access_token_file": "${CREDENTIALS_DIRECTORY}/hubitat-token",
    }
    cfg = str(write_config(tmp_path, hubs=[hub]))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code, _, err = _check(capsys, "-c", cfg)
    assert code == 2 and "environment variable CREDENTIALS_DIRECTORY is not set" in err
    creds = tmp_path / "credentials"
    creds.mkdir()
    code, _, err = _check(capsys, "-c", cfg, "--credentials", str(creds))
    assert code == 2 and f"cannot read secret file {creds}/hubitat-token" in err
    (creds / "hubitat-token").write_text("s3cret\n", encoding="utf-8")
    code, out, err = _check(capsys, "-c", cfg, "--credentials", str(creds))
    assert code == 0 and "1 hub(s): home" in out, err
    code, _, err = _check(capsys, "-c", cfg, "--credentials", str(tmp_path / "nope"))
    assert code == 2 and "not a directory" in err and err.count("\n") == 1


def _hub(url: str) -> dict[str, Any]:
    return {
        "name": "home",
        "type": "hubitat",
        "url": url,
        "app_id": 12,
        "access_token": TOKEN,
        "eventsocket": True,
        "poll_interval": "60s",
        "detail_spacing": "0s",
    }


async def _top_in_a_pty(cfg: Path) -> tuple[int, str]:
    """`hubbridge top` on a pseudo-terminal until it has redrawn a few times, then Ctrl-C."""
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "top",
        "-c",
        str(cfg),
        "--interval",
        "0.2",
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"},
    )
    os.close(slave)
    screen = b""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(WAIT):
            # rich's Live redraws in place: it moves the cursor up over the last frame (ESC [ n A) and redraws.
            while screen.count(b"\x1b[2K") < 40 or b"archive" not in screen:
                screen += await loop.run_in_executor(None, os.read, master, 65536)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            while proc.returncode is None:
                with contextlib.suppress(OSError):
                    screen += await loop.run_in_executor(None, os.read, master, 65536)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.2)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
    return proc.returncode, screen.decode("utf-8", "replace")


async def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`hubbridge status ARGS` through the CLI's entry point, in a thread (it blocks on its HTTP request)."""
    code = await asyncio.to_thread(main, ["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_tap_and_top_show_the_running_bridge(
    tmp_path: Path, bridges: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """status: a table and exit 0, JSON, exit 3 when down; tap: the committed change; top: redrawn in place."""
    async with HubitatSim(access_token=TOKEN) as sim:
        port = _free_port()
        cfg = write_config(tmp_path, hubs=[_hub(sim.url)], listen=f"127.0.0.1:{port}")
        b = await bridges(cfg)
        await b.running()
        await b.wait_for(lambda: bool(b.entries("hub online")), "the hub is online")

        code, out, err = await _status(capsys, "-c", str(cfg))
        assert code == 0, (out, err)
        assert "hubbridge ok" in out and "home" in out and "archive" in out and "eventsocket" in out, out
        code, out, _ = await _status(capsys, "-c", str(cfg), "--json")
        assert code == 0 and json.loads(out)["sinks"]["archive"]["state"] == "ok"

        key = next(
            k
            for k, v in sim.state().items()
            if isinstance(v, int) and not isinstance(v, bool) and k[1] not in MOMENTARY
        )
        tap = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bridge.cli", "tap", "-c", str(cfg), "--device", key[0]),
            *("--attribute", key[1], "--count", "1"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert tap.stderr is not None
        started = await asyncio.wait_for(tap.stderr.readline(), WAIT)  # it follows from the head it found
        assert b"tapping" in started, started
        sim.set_attribute(key[0], key[1], 31337)
        raw, _ = await asyncio.wait_for(tap.communicate(), WAIT)
        out = raw.decode()
        assert tap.returncode == 0
        assert out.count("\n") == 1 and "31337" in out and key[1] in out and "[eventsocket]" in out, out

        code, screen = await _top_in_a_pty(cfg)
        assert code == 0, screen
        assert "home" in screen and "archive" in screen and "ev/s" in screen
        assert "\x1b[1A" in screen or "\x1b[A" in screen, "the view is redrawn in place (cursor moves up)"
        assert "Traceback" not in screen

        assert await b.stop() == 0
        code, out, err = await _status(capsys, "-c", str(cfg))
        assert code == 3 and out == "" and err.count("\n") == 1 and "no bridge answers" in err, (out, err)


async def test_status_exit_code_is_1_when_degraded(
    tmp_path: Path, bridges: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Splunk not reachable: status exits 1 and says which sink and why."""
    async with HubitatSim(access_token=TOKEN) as sim:
        sink = {"name": "splunk", "type": "splunk_hec", "url": f"http://127.0.0.1:{_free_port()}", "token": "t0k3n"}
        cfg = write_config(tmp_path, hubs=[_hub(sim.url)], sinks=[sink], listen=f"127.0.0.1:{_free_port()}")
        b = await bridges(cfg)
        await b.running()
        await b.wait_for(lambda: bool(b.entries("sink delivery failed; will retry")), "the sink fails")
        code, out, err = await _status(capsys, "-c", str(cfg))
        assert code == 1, (out, err)
        assert "degraded" in out and "sink splunk is retrying" in out, out
        await b.stop()


async def test_devices_lists_devices_and_estimates_events_per_day(tmp_path: Path) -> None:
    """A dry run lists the hub's devices with their attributes, a device that changes gets a non-zero estimate,
    and each sink's filters say which attributes it would forward."""
    async with HubitatSim(access_token=TOKEN) as sim:
        key = next(
            k
            for k, v in sim.state().items()
            if isinstance(v, int) and not isinstance(v, bool) and k[1] not in MOMENTARY
        )
        sinks = [
            {"name": "archive", "type": "file", "path": str(tmp_path / "events.jsonl")},
            {
                "name": "slim",
                "type": "file",
                "path": str(tmp_path / "slim.jsonl"),
                "filters": {"exclude": [{"attribute": key[1]}]},
            },
        ]
        cfg = write_config(tmp_path, hubs=[_hub(sim.url)], sinks=sinks)
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bridge.cli", "devices", "-c", str(cfg), "--sample", "2", "--json"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        started = await asyncio.wait_for(proc.stderr.readline(), WAIT)
        assert b"sampling changes for 2s" in started, started
        for n in range(20):  # changes while it samples
            sim.set_attribute(key[0], key[1], 500 + n)
            await asyncio.sleep(0.05)
        raw, rest = await asyncio.wait_for(proc.communicate(), WAIT)
        code, out, err = proc.returncode, raw.decode(), rest.decode()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len({d for d, _ in sim.state()}), "every device of the hub"
    row = next(r for r in rows if r["device_id"] == key[0])
    assert key[1] in row["attributes"] and row["attributes"][key[1]] > 0 and row["device"]
    assert key[1] in row["sinks"]["archive"] and key[1] not in row["sinks"]["slim"]
    assert set(row["sinks"]["slim"]) == set(row["attributes"]) - {key[1]}
    assert not (tmp_path / "state").exists(), "a dry run journals nothing"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
