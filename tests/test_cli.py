"""The real ``hubbridge`` command, run as a subprocess the way a user or systemd runs it.

Every ordinary mistake (a busy port, a config that is not UTF-8, a state_dir that cannot be used, a second bridge
on the same state_dir...) must give one line saying what and how to fix it, never a traceback, with exit 2 for the
config and 1 for the machine. The tests look at exactly what a user sees: the exit code and stderr.

Tests run as root here. "Not writable" and "another user's files" are made real by running the bridge as the
user ``nobody`` (``subprocess`` ``user=``) against files that root owns; when the tests do not run as root, the
same cases are made with permission bits the running user cannot pass.

The last tests check the log lines ``hubbridge run`` writes: one JSON line per event, library lines included, and
never a secret.

``BridgeProcess`` (one ``hubbridge run`` with its JSON log lines collected) is shared with tests/test_server.py and
tests/test_runtime.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import pwd
import shutil
import signal
import site
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
import yaml

WAIT = 15.0  # upper bound of any one wait; the tests normally take a small fraction of it


# ------------------------------------------------------------------------------------------------ helpers


def write_config(directory: Path, name: str = "bridge.yaml", **top: Any) -> Path:
    """A config with JSON logs, a free port, state in ``directory/state`` and a file sink; ``top`` overrides keys."""
    config: dict[str, Any] = {
        "state_dir": str(directory / "state"),
        "listen": "127.0.0.1:0",
        "log": {"level": "info", "format": "json"},
        "sinks": [{"name": "archive", "type": "file", "path": str(directory / "events.jsonl"), "fsync": False}],
    }
    config.update(top)
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o644)
    return path


def cli(
    *args: str, cwd: Path, timeout: float = WAIT, python: str = sys.executable, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """``hubbridge ARGS...`` to completion."""
    return subprocess.run(
        [python, "-m", "bridge.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        **popen,
    )


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """The log lines of ``hubbridge run``; fails on any line that is not one JSON object (a traceback, say)."""
    out = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"a line of stderr is not a JSON log line: {line!r}\n--- stderr:\n{stderr}") from None
        assert isinstance(entry, dict), line
        out.append(entry)
    return out


def assert_one_error_line(stderr: str, *needles: str) -> dict[str, Any]:
    """stderr of a failed ``run``: JSON lines only, no traceback, exactly one error line holding every needle."""
    assert "Traceback" not in stderr, stderr
    errors = [e for e in json_lines(stderr) if e.get("level") in ("error", "critical")]
    assert len(errors) == 1, f"expected one error line, got {len(errors)}:\n{stderr}"
    text = json.dumps(errors[0])
    for needle in needles:
        assert needle in text, f"{needle!r} is not in the error line: {errors[0]}"
    return errors[0]


def assert_one_plain_line(stderr: str, *needles: str) -> str:
    """stderr of a command that failed before logging started: exactly one line, holding every needle."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} is not in {lines[0]!r}"
    return lines[0]


class BridgeProcess:
    """One ``hubbridge run -c CONFIG`` subprocess; its stderr is collected line by line while it runs."""

    def __init__(self, config: Path, python: str = sys.executable, **popen: Any) -> None:
        self.config = config
        self.python = python
        self.popen = popen
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> BridgeProcess:
        self.proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "bridge.cli",
            "run",
            "-c",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.config.parent,
            limit=4 * 1024 * 1024,
            **self.popen,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines so far (``event`` given: only those with that event text)."""
        out = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and (event is None or entry.get("event") == event):
                    out.append(entry)
        return out

    async def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Wait until ``cond`` holds; fail at once if the bridge exits first, or after ``timeout``."""
        assert self.proc is not None
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    if self.proc.returncode is not None:
                        assert self._reader is not None
                        await self._reader
                        if cond():
                            return
                        raise AssertionError(
                            f"the bridge exited ({self.proc.returncode}) before {what}:\n{self.stderr}"
                        )
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out waiting until {what}:\n{self.stderr}") from None

    async def running(self) -> int:
        """Wait until the bridge logged "bridge running"; return the port it listens on."""
        await self.wait_for(lambda: bool(self.entries("bridge running")), "the bridge is running")
        address = self.entries("listening")[0]["address"]
        return int(address.rpartition(":")[2])

    async def exit_code(self, timeout: float = WAIT) -> int:
        """Wait for the process to end (all of stderr read); its exit code."""
        assert self.proc is not None and self._reader is not None
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
                await self._reader
        except TimeoutError:
            raise AssertionError(f"the bridge did not exit within {timeout:g}s:\n{self.stderr}") from None
        return code

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.exit_code(timeout)

    async def kill(self) -> None:
        """Teardown: make sure the process is gone, whatever happened in the test."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def bridges() -> Any:
    """Start ``BridgeProcess`` es through this; every one is killed at teardown even when the test fails."""
    started: list[BridgeProcess] = []

    async def start(config: Path, **popen: Any) -> BridgeProcess:
        b = BridgeProcess(config, **popen)
        started.append(b)
        return await b.start()

    try:
        yield start
    finally:
        for b in started:
            await b.kill()


# ------------------------------------------------------------------------------------------------ users


@dataclass
class Runner:
    """Who runs the bridge in a permission test: ``nobody`` when the tests run as root, else the test's user.

    ``popen`` holds the subprocess arguments that make it so (user, group, the interpreter and its path).
    """

    uid: int
    gid: int
    popen: dict[str, Any] = field(default_factory=dict)

    def own(self, path: Path) -> None:
        """Give ``path`` to the runner (a no-op when the runner is the test's own user)."""
        if "user" in self.popen:
            os.chown(path, self.uid, self.gid)


def _interpreters() -> list[str]:
    """This interpreter, then the system's of the same version (this one may live where nobody cannot go)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = [sys.executable, *(shutil.which(f"python{version}", path=d) for d in ("/usr/bin", "/usr/local/bin"))]
    return list(dict.fromkeys(p for p in found if p))


@functools.cache
def _nobody() -> Runner | str:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return "this machine has no user 'nobody'"
    # The checkout and the installed packages, on the path of whichever interpreter nobody can start.
    root = str(Path(__file__).resolve().parents[1])
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, root, *site.getsitepackages()])}
    why = "no interpreter"
    for python in _interpreters():
        popen = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env, "python": python}
        try:
            probe = _probe(python, popen)
        except OSError as exc:
            why = f"{python}: {exc.strerror}"
            continue
        if probe.returncode == 0:
            return Runner(pw.pw_uid, pw.pw_gid, popen)
        why = f"{python}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
    return f"user nobody cannot run this checkout's bridge ({why})"


def _probe(python: str, popen: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    args = {k: v for k, v in popen.items() if k != "python"}
    return subprocess.run(
        [python, "-c", "import bridge.cli, bridge.runtime"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
        **args,
    )


@pytest.fixture
def runner() -> Runner:
    if os.geteuid() != 0:
        return Runner(os.getuid(), os.getgid())
    nobody = _nobody()
    if isinstance(nobody, str):
        pytest.skip(f"the case needs a second user: {nobody}")
    return nobody


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is private to root), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hubbridge-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


def make_journal(config: Path) -> None:
    """Run the bridge once with ``config`` (as the test's user) so that its state_dir holds a real journal."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "-c", str(config)],
        cwd=config.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"bridge running"' in line:
                break
        else:
            raise AssertionError("the bridge did not start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------------ listen


async def test_listen_port_in_use_is_one_line_and_exit_1(tmp_path: Path, bridges: Any) -> None:
    """A busy listen port stops the bridge with one line naming the address and what to do, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        b = await bridges(write_config(tmp_path, listen=f"127.0.0.1:{port}"))
        assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, f"127.0.0.1:{port}", "already in use", "change listen")


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("command", ["check", "run"])
def test_config_that_is_not_utf8_names_the_line_exit_2(tmp_path: Path, command: str) -> None:
    """A config saved as Latin-1 gives one line naming the file and the line to fix, exit 2."""
    config = write_config(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_bytes(text.encode() + "# Küche\n".encode("latin-1"))
    line = len(text.splitlines()) + 1
    result = cli(command, "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert_one_plain_line(result.stderr, str(config), f"line {line}", "UTF-8")


@pytest.mark.parametrize("command", [["check"], ["run"], ["spool", "dead-letters"], ["spool", "drop-sink", "old"]])
def test_missing_config_is_one_line_exit_2(tmp_path: Path, command: list[str]) -> None:
    """Every command given a config path that does not exist says so in one line, exit 2."""
    missing = tmp_path / "nope.yaml"
    result = cli(*command[:2], "-c", str(missing), *command[2:], cwd=tmp_path)
    assert result.returncode == 2
    assert_one_plain_line(result.stderr, str(missing), "No such file")


@pytest.mark.parametrize("where", ["hub", "sink"])
def test_missing_ca_file_fails_check(tmp_path: Path, where: str) -> None:
    """A tls.ca_file that does not exist fails ``hubbridge check`` (exit 2), not the first connection hours later."""
    tls = {"tls": {"ca_file": "certs/missing-ca.pem"}}
    hub = {"name": "home", "type": "hubitat", "url": "https://127.0.0.1:1", "app_id": 1, "access_token": "t0k"}
    sink = {"name": "hec", "type": "splunk_hec", "url": "https://127.0.0.1:1", "token": "t0k"}
    (hub if where == "hub" else sink).update(tls)
    config = write_config(tmp_path, hubs=[hub], sinks=[sink])
    result = cli("check", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    key = "hubs[0].tls.ca_file" if where == "hub" else "sinks[0].tls.ca_file"
    assert_one_plain_line(result.stderr, key, str(tmp_path / "certs" / "missing-ca.pem"), "No such file", "line ")


# ------------------------------------------------------------------------------------------------ state_dir


@pytest.mark.parametrize("case", ["a regular file", "under a regular file"])
async def test_state_dir_that_is_a_file_is_one_line_exit_1(tmp_path: Path, bridges: Any, case: str) -> None:
    """A state_dir that is a file, or lies under one, stops the bridge with one line saying what to fix."""
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    state = afile if case == "a regular file" else afile / "state"
    b = await bridges(write_config(tmp_path, state_dir=str(state)))
    assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, str(state), "state_dir")


async def test_state_dir_not_writable_is_one_line_exit_1(world: Path, runner: Runner, bridges: Any) -> None:
    """A state_dir the bridge's user cannot write stops it with one line naming the directory and the fix."""
    state = world / "state"
    state.mkdir(mode=0o555)
    state.chmod(0o555)
    b = await bridges(write_config(world), **runner.popen)
    assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, str(state), "not writable by this user", f"uid {runner.uid}")


async def test_state_dir_behind_a_closed_directory_is_one_line_exit_1(
    world: Path, runner: Runner, bridges: Any
) -> None:
    """A state_dir inside a directory the bridge's user may not enter gives one line, not a PermissionError."""
    closed = world / "private"
    closed.mkdir()
    closed.chmod(0o700 if "user" in runner.popen else 0o000)
    state = closed / "state"
    b = await bridges(write_config(world, state_dir=str(state)), **runner.popen)
    assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, str(state), "Permission denied")


async def test_state_dir_that_cannot_be_listed_is_one_line_exit_1(world: Path, runner: Runner, bridges: Any) -> None:
    """A state_dir the bridge's user may write but not list (mode 333) gives one line, not a PermissionError."""
    state = world / "state"
    state.mkdir()
    runner.own(state)
    state.chmod(0o333)
    b = await bridges(write_config(world), **runner.popen)
    assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, str(state), "cannot list")


@pytest.mark.parametrize("left_behind", ["journal", "lock file"])
async def test_state_of_another_user_is_one_line_exit_1(
    world: Path, runner: Runner, bridges: Any, left_behind: str
) -> None:
    """Files left by a run as another user (``sudo hubbridge run`` once) give one line saying whose and how to fix."""
    config = write_config(world)
    state = world / "state"
    if left_behind == "journal":
        make_journal(config)  # as root when the tests run as root: the "ran it once with sudo" case
        culprit = state / "journal.sqlite3"
        (state / "hubbridge.lock").unlink()
    else:
        state.mkdir()
        culprit = state / "hubbridge.lock"
        culprit.write_text("1234\n")
        culprit.chmod(0o600)
    runner.own(state)
    if "user" not in runner.popen:  # the test's own user: files it cannot read or write
        culprit.chmod(0o000)
    b = await bridges(config, **runner.popen)
    assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, str(culprit), "not readable and writable by this user", "chown")


def test_spool_dead_letters_state_dir_missing_says_so(tmp_path: Path) -> None:
    """``spool dead-letters`` before the bridge ever ran says that state_dir does not exist yet, exit 0."""
    config = write_config(tmp_path)
    result = cli("spool", "dead-letters", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == ""
    assert_one_plain_line(result.stderr, str(tmp_path / "state"), "does not exist")


@pytest.mark.parametrize("command", [["dead-letters"], ["drop-sink", "old"]])
def test_spool_state_dir_that_is_a_file_is_one_line_exit_1(tmp_path: Path, command: list[str]) -> None:
    """``spool`` with a state_dir that is a file says so, instead of "no journal" (which sends a user looking)."""
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    config = write_config(tmp_path, state_dir=str(afile))
    result = cli("spool", command[0], "-c", str(config), *command[1:], cwd=tmp_path)
    assert result.returncode == 1
    assert_one_plain_line(result.stderr, str(afile), "is a file")


@pytest.mark.parametrize("command", [["dead-letters"], ["drop-sink", "old"]])
def test_spool_on_a_journal_from_a_newer_release_is_one_line_exit_1(tmp_path: Path, command: list[str]) -> None:
    """``spool`` on a journal written by a newer hubbridge says so in one line, exit 1, and leaves it alone."""
    config = write_config(tmp_path)
    make_journal(config)
    db = tmp_path / "state" / "journal.sqlite3"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version=99")
        conn.commit()
    result = cli("spool", command[0], "-c", str(config), *command[1:], cwd=tmp_path)
    assert result.returncode == 1
    assert_one_plain_line(result.stderr, str(db), "newer hubbridge", "upgrade")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


async def test_spool_behind_a_closed_directory_is_one_line(world: Path, runner: Runner) -> None:
    """``spool dead-letters`` with a state_dir the user may not reach gives one line, not a PermissionError."""
    closed = world / "private"
    closed.mkdir()
    closed.chmod(0o700 if "user" in runner.popen else 0o000)
    config = write_config(world, state_dir=str(closed / "state"))
    result = cli("spool", "dead-letters", "-c", str(config), cwd=world, **runner.popen)
    assert result.returncode == 1
    assert_one_plain_line(result.stderr, str(closed / "state"), "Permission denied")


# ------------------------------------------------------------------------------------------- one state_dir, one bridge


async def test_second_bridge_on_one_state_dir_refuses_and_first_keeps_running(tmp_path: Path, bridges: Any) -> None:
    """A second bridge on the same state_dir refuses at start naming the first's pid; the first carries on."""
    config = write_config(tmp_path)
    first = await bridges(config)
    port = await first.running()
    second = await bridges(config)
    assert await second.exit_code() == 1
    assert_one_error_line(second.stderr, f"pid {first.pid}", str(tmp_path / "state"), "already using")
    assert not second.entries("journal open"), "the second bridge must not have opened the journal"
    # The first is unharmed: still running, still answering.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.close()
    assert first.proc is not None and first.proc.returncode is None
    assert await first.stop() == 0


async def test_after_sigkill_a_new_bridge_starts(tmp_path: Path, bridges: Any) -> None:
    """After the bridge is killed with SIGKILL, a new one starts on the same state_dir (the lock died with it)."""
    config = write_config(tmp_path)
    first = await bridges(config)
    await first.running()
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert (tmp_path / "state" / "hubbridge.lock").exists(), "the stale lock file is left behind, as after a crash"
    again = await bridges(config)
    await again.running()
    assert await again.stop() == 0
    assert "Traceback" not in again.stderr


async def test_run_on_a_journal_from_a_newer_release_is_one_line_exit_1(tmp_path: Path, bridges: Any) -> None:
    """``run`` on a journal written by a newer hubbridge stops with one line saying so, and leaves it alone."""
    config = write_config(tmp_path)
    make_journal(config)
    db = tmp_path / "state" / "journal.sqlite3"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version=99")
        conn.commit()
    b = await bridges(config)
    assert await b.exit_code() == 1
    assert_one_error_line(b.stderr, str(db), "newer hubbridge")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


# ------------------------------------------------------------------------------------------------ log lines


def test_library_log_lines_are_json_and_never_show_a_secret(log_stream: io.StringIO) -> None:
    """A library's log line (asyncio, aiohttp) is one JSON line like the bridge's own, with secrets blanked."""
    try:
        raise ValueError("GET http://hub/apps/api/1/devices?access_token=s3cret/t0ken+x= failed")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    logging.getLogger("aiohttp.server").warning("POST %s", "/hubitat/home/" + quote("s3cret/t0ken+x=", safe=""))
    text = log_stream.getvalue()
    lines = json_lines(text)
    assert [e["logger"] for e in lines] == ["asyncio", "aiohttp.server"]
    assert "ValueError" in lines[0]["exception"], "a library's traceback (a bug) is kept, inside its one line"
    for form in ("s3cret/t0ken+x=", quote("s3cret/t0ken+x=", safe=""), quote("s3cret/t0ken+x=")):
        assert form not in text


def test_a_value_with_newlines_is_logged_on_one_line(log_stream: io.StringIO) -> None:
    """A value holding newlines (aiohttp's error texts do) still gives one line, in JSON and in its text."""
    structlog.get_logger("bridge.test").warning(
        "cannot read a POST-URL body", error="400, message:\n  Can not decode content-encoding: gzip"
    )
    [entry] = json_lines(log_stream.getvalue())
    assert entry["error"] == "400, message: Can not decode content-encoding: gzip"
