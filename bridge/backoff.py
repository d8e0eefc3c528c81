"""The one backoff (capped exponential, full jitter) and the one rate-limited log helper, for every component.

Backoff: attempt ``n`` waits ``uniform(floor, min(cap, initial * 2**n))``; the floor keeps something that fails fast
from being hammered, the cap keeps a long outage from waiting for ever, and the jitter keeps many clients from
retrying in step. A server-given delay (Retry-After) wins when it is longer.

Rate limiting: one line per problem per window, never one per attempt; repeats inside the window are counted, and
the next line says how many were suppressed. Log floods hide the real problem (anchors: HA InfluxDB's 20 MB/day).
"""

from __future__ import annotations

import random
import time
from collections.abc import Hashable
from typing import Any

# A server's Retry-After is honoured up to this; a larger value is more likely a misconfiguration.
MAX_SERVER_DELAY = 600.0


class Backoff:
    """Capped exponential backoff with full jitter and a floor. ``next()`` gives the next wait in seconds."""

    def __init__(self, initial: float, cap: float, *, floor: float | None = None) -> None:
        self.initial = initial
        self.cap = max(cap, 0.0)
        # By default the floor is a tenth of the first step: full jitter, but never a busy loop.
        self.floor = min(initial / 10 if floor is None else floor, self.cap)
        self.failures = 0

    def next(self, server_delay: float | None = None) -> float:
        self.failures += 1
        # The exponent is bounded: 2.0**1100 does not fit a float, and a long outage must not crash the loop.
        high = min(self.cap, self.initial * 2.0 ** min(self.failures - 1, 62))
        wait = random.uniform(self.floor, max(self.floor, high))
        if server_delay:
            wait = max(wait, min(float(server_delay), MAX_SERVER_DELAY))
        return wait

    def ceiling(self, server_delay: float | None = None) -> float:
        """The longest the next :meth:`next` can wait (what a log line promises: "the next try within ...")."""
        high = max(self.floor, min(self.cap, self.initial * 2.0 ** min(self.failures, 62)))
        return max(high, min(float(server_delay), MAX_SERVER_DELAY)) if server_delay else high

    def reset(self) -> None:
        self.failures = 0


class RateLimitedLog:
    """Log each problem (a hashable key) at most once per ``window`` seconds, counting what was suppressed."""

    def __init__(self, logger: Any, window: float = 300.0) -> None:
        self.log = logger
        self.window = window
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        """None when ``key`` was logged within the window (counted); else how many repeats were suppressed."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if len(self._last) > 10_000:  # bounded: keys are problems, not events, but input can be hostile
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        return self._suppressed.pop(key, 0)

    def forget(self, key: Hashable) -> None:
        """The problem is over: the next occurrence is logged at once."""
        self._last.pop(key, None)
        self._suppressed.pop(key, None)

    def _emit(self, level: str, key: Hashable, event: str, kw: dict[str, Any]) -> bool:
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        if suppressed:
            kw["repeats_suppressed"] = suppressed
        getattr(self.log, level)(event, **kw)
        return True

    def debug(self, key: Hashable, event: str, **kw: Any) -> bool:
        return self._emit("debug", key, event, kw)

    def info(self, key: Hashable, event: str, **kw: Any) -> bool:
        return self._emit("info", key, event, kw)

    def warning(self, key: Hashable, event: str, **kw: Any) -> bool:
        return self._emit("warning", key, event, kw)

    def error(self, key: Hashable, event: str, **kw: Any) -> bool:
        return self._emit("error", key, event, kw)
