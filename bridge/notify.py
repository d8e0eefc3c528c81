"""systemd's notification protocol (sd_notify(3)), written out: one datagram per message to ``$NOTIFY_SOCKET``.

``READY=1`` once hubs and sinks are up, ``STATUS=...`` lines, ``RELOADING=1``/``READY=1`` around a reload,
``STOPPING=1`` on the way out and ``WATCHDOG=1`` while the pipeline makes progress (see :mod:`bridge.service`).
Without ``$NOTIFY_SOCKET`` (not under systemd, or ``Type=`` other than notify) every call is a no-op. A failed
send is logged once and never stops the bridge: systemd then decides (a missed watchdog restarts it).
"""

from __future__ import annotations

import os
import socket
import time

import structlog

log = structlog.get_logger("bridge.notify")


class Notifier:
    """Sends notifications to one socket address (a path, or ``@name`` for the abstract namespace)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` (``KEY=value`` each) as one datagram. Returns whether it was sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot notify systemd; is NOTIFY_SOCKET right?",
                    socket=self.address,
                    error=exc.strerror or str(exc),
                )
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (how often to feed), or None when the watchdog is off or not ours."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6


def monotonic_usec() -> str:
    """``MONOTONIC_USEC=`` as systemd wants it beside ``RELOADING=1``."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


# The bridge's notifier: reload and the service tasks share it.
NOTIFIER = Notifier.from_env()
