"""The HEC simulator in a child process of its own, for the benchmarks that measure a client's CPU per event.

In its own process, pinned to a CPU of its own when the machine has two, the receiver's work never counts as the
client's nor competes with it for a core. Used by bench_hec.py and bench_posturl.py (run as scripts, so this
module is imported by its bare name from the bench folder, in the parent and in the spawned child alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Seconds per clock tick of /proc/<pid>/stat's CPU counters.
TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def pin(cpus: set[int]) -> None:
    """Restrict this process to ``cpus``, when the machine has them; its children inherit it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > max(cpus):
        os.sched_setaffinity(0, cpus)


def last_cpu() -> int:
    return max(0, (os.cpu_count() or 1) - 1)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, all its threads included, in clock ticks (proc(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of the whole line


def _main(conn: Connection, token: str, cpus: set[int]) -> None:
    """Host a HecSim and answer the parent's commands over ``conn`` (see :class:`HecChild`)."""
    # HecSim keeps every envelope; a cyclic GC walking them again and again would slow it down as it fills.
    gc.disable()
    pin(cpus)

    async def serve() -> None:
        from bridge.sim.hec import HecSim

        sim = HecSim(tokens=(token,), max_content_length=50_000_000)
        sim.record_bodies = False
        await sim.start()
        conn.send(sim.url)
        loop = asyncio.get_running_loop()
        try:
            while True:
                cmd = await loop.run_in_executor(None, conn.recv)
                if cmd[0] == "wait":
                    _, n, pid, timeout = cmd
                    cpu0 = time.process_time()
                    conn.send("waiting")
                    ok = True
                    try:
                        await sim.wait_indexed(n, timeout=timeout)
                    except TimeoutError:
                        ok = False
                    # Read the client's CPU here, the moment the last event is in, not after a round trip.
                    ticks = cpu_ticks(pid) if pid is not None else 0
                    conn.send((ok, time.monotonic(), ticks, time.process_time() - cpu0))
                elif cmd[0] == "count":
                    since = cmd[1]
                    ids = {e["event"].get("id") for e in sim.indexed[since:] if type(e.get("event")) is dict} - {None}
                    posts = sum(1 for r in sim.requests if r.path.endswith("/event") and r.status == 200)
                    conn.send((len(sim.indexed), len(ids), posts))
                elif cmd[0] == "clear":
                    sim.clear()
                    conn.send(True)
                else:
                    break
        finally:
            await sim.stop()

    asyncio.run(serve())


class HecChild:
    """The parent's handle on the simulator process: its URL and the commands it answers."""

    def __init__(self, token: str, cpus: set[int]) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_main, args=(child, token, cpus), daemon=True)
        self.proc.start()
        self.url: str = self.conn.recv()
        self.port = int(self.url.rsplit(":", 1)[1])

    def _ask(self, cmd: tuple[Any, ...]) -> Any:
        self.conn.send(cmd)
        return self.conn.recv()

    def start_wait(self, n: int, pid: int | None = None, timeout: float = 600.0) -> None:
        """Have the child watch for ``n`` indexed envelopes; :meth:`waited` then says when they were in."""
        assert self._ask(("wait", n, pid, timeout)) == "waiting"

    def waited(self) -> tuple[bool, float, int, float]:
        """(all in before the timeout, time.monotonic() then, CPU ticks of ``pid`` then, the child's CPU seconds)."""
        ok, at, ticks, cpu = self.conn.recv()
        return bool(ok), float(at), int(ticks), float(cpu)

    def count(self, since: int = 0) -> tuple[int, int, int]:
        """(envelopes indexed, distinct event ids among those from ``since`` on, event POSTs answered 200)."""
        total, unique, posts = self._ask(("count", since))
        return int(total), int(unique), int(posts)

    def clear(self) -> None:
        assert self._ask(("clear",)) is True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.proc.join(5)
