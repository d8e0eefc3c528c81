"""``hubbridge status``: the running bridge's /healthz as a table; the exit code is its health."""

from __future__ import annotations

import json
import sys

from rich.console import Console

from bridge.commands.health import Unreachable, base_url, fetch, render

EXIT_OK = 0
EXIT_DEGRADED = 1
EXIT_UNREACHABLE = 3


def status(config: str, url: str | None, as_json: bool) -> int:
    base = base_url(config, url)
    try:
        code, body = fetch(base)
    except Unreachable as exc:
        print(f"hubbridge: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if as_json:
        print(json.dumps(body, indent=1))
    else:
        Console(highlight=False).print(render(body))
    return EXIT_OK if code == 200 and body.get("status") == "ok" else EXIT_DEGRADED
