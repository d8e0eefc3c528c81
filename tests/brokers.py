"""Real brokers for tests and benchmarks: Mosquitto and nats-server (Debian packages, installed by .ci/run).

Each runs as a child process on a free loopback port with its config and data in a temporary directory; nothing
relies on a system service. ``restart()`` and ``kill()`` are what the tests do to them mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def need(binary: str) -> str:
    """The path of ``binary``; skip the test with how to install it when it is missing (.ci/run installs it)."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install -y mosquitto nats-server; .ci/run does it)")
    return path


async def _listening(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g}s") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class Broker:
    """A broker child process that can be stopped, killed and started again on the same port and data."""

    name = "broker"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "broker.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            return subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)

    async def start(self) -> None:
        self.proc = self._spawn()
        await _listening(self.port, self.proc, self.name)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 10)
        except TimeoutError:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


class Mosquitto(Broker):
    """Mosquitto with persistence on, so queued QoS 1 messages of persistent sessions survive a restart."""

    name = "mosquitto"

    def __init__(self, directory: Path, port: int | None = None, *, extra: str = "") -> None:
        super().__init__(directory, port)
        self.extra = extra

    def command(self) -> list[str]:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            # Run as whoever started it (root in CI would otherwise switch to a `mosquitto` user).
            f"user {os.environ.get('USER') or 'root'}\n"
            "max_queued_messages 100000\n" + self.extra,
            encoding="utf-8",
        )
        return [need("mosquitto"), "-c", str(conf)]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class NatsServer(Broker):
    """nats-server with JetStream; ``routes`` makes it a node of a cluster."""

    name = "nats-server"

    def __init__(
        self, directory: Path, port: int | None = None, *, node: str = "n1", cluster_port: int | None = None
    ) -> None:
        super().__init__(directory, port)
        self.node = node
        self.cluster_port = cluster_port
        self.routes: list[int] = []

    def command(self) -> list[str]:
        cmd = [need("nats-server"), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.dir / "js")]
        cmd += ["--server_name", self.node]
        if self.cluster_port is not None:
            cmd += ["--cluster_name", "hubbridge", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            cmd += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return cmd

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def mosquitto(directory: Path, extra: str = "") -> AsyncIterator[Mosquitto]:
    broker = Mosquitto(directory, extra=extra)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def nats_server(directory: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def nats_cluster(directory: Path, size: int = 3) -> AsyncIterator[list[NatsServer]]:
    """``size`` JetStream nodes on loopback, routed to each other."""
    cluster_ports = [free_port() for _ in range(size)]
    nodes = [NatsServer(directory / f"n{i}", node=f"n{i}", cluster_port=cluster_ports[i]) for i in range(size)]
    for i, node in enumerate(nodes):
        node.routes = [p for j, p in enumerate(cluster_ports) if j != i]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        yield nodes
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))
