"""What a service manager and an operator see of a running bridge: systemd notifications, the watchdog, and the
periodic summary line. :func:`attach` adds them to a :class:`~bridge.runtime.Runtime` started by ``hubbridge run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.runtime import Runtime


def attach(runtime: Runtime) -> None:
    """Add the service tasks to ``runtime`` (they start once it is running)."""
