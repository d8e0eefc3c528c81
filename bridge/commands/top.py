"""``hubbridge top``: a live view of the running bridge, redrawn in place by rich's Live display."""

from __future__ import annotations

import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from bridge.commands.health import Rates, Unreachable, base_url, fetch, render

EXIT_OK = 0
EXIT_UNREACHABLE = 3


def _frame(base: str, rates: Rates) -> Group:
    try:
        _, body = fetch(base, timeout=2.0)
    except Unreachable as exc:
        return Group(Text(str(exc), style="bold red"), Text("retrying...", style="dim"))
    return Group(render(body, rates.update(body)), Text(f"{base}   Ctrl-C to leave", style="dim"))


def top(config: str, url: str | None, interval: float, once: bool) -> int:
    base = base_url(config, url)
    console = Console(highlight=False)
    rates = Rates()
    if once:
        # Two reads an interval apart, so the frame has rates too.
        try:
            rates.update(fetch(base)[1])
            time.sleep(max(0.1, interval))
            _, body = fetch(base)
        except Unreachable as exc:
            print(f"hubbridge: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        console.print(render(body, rates.update(body)))
        return EXIT_OK
    interval = max(0.1, interval)
    try:
        with Live(_frame(base, rates), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(_frame(base, rates), refresh=True)
    except KeyboardInterrupt:
        pass
    return EXIT_OK
