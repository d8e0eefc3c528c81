"""Reading a running bridge's /healthz, and drawing it as tables (``hubbridge status`` and ``hubbridge top``)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from bridge.config import load_config
from bridge.errors import BridgeError

STATE_STYLE = {"ok": "green", "starting": "yellow", "retrying": "yellow", "offline": "red", "restarting": "red"}


class Unreachable(BridgeError):
    """The bridge does not answer on its listener."""


def base_url(config: str, url: str | None) -> str:
    """The bridge's listener: ``--url``, else the config's ``listen`` (a wildcard address is asked on loopback)."""
    if url:
        return url.rstrip("/")
    cfg = load_config(config)
    host = cfg.listen_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.listen_port}"


def fetch(base: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """GET /healthz: (HTTP status, body). Raises :class:`Unreachable` with a line saying what to check."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: degraded, with the same body
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            raise Unreachable(
                f"{base}/healthz answered HTTP {exc.code} without health JSON: is that hubbridge?"
            ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        why = getattr(exc, "reason", exc)
        raise Unreachable(
            f"no bridge answers at {base} ({why}); is it running (systemctl status hubbridge), and is listen right?"
        ) from None
    except ValueError:
        raise Unreachable(f"{base}/healthz did not answer JSON: is that hubbridge?") from None


def ago(t: float | None, now: float | None = None) -> str:
    if t is None:
        return "-"
    return age((now or time.time()) - t)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def _state(value: str) -> Text:
    return Text(value, style=STATE_STYLE.get(value, "red"))


@dataclass
class Rates:
    """Events per second per sink (and in, under ""), from the totals of two successive reads."""

    last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def update(self, body: dict[str, Any], now: float | None = None) -> dict[str, float | None]:
        now = time.monotonic() if now is None else now
        out: dict[str, float | None] = {}
        for name, sink in [("", {"delivered_total": body.get("events_emitted", 0)}), *body.get("sinks", {}).items()]:
            total = int(sink.get("delivered_total", 0))
            before = self.last.get(name)
            out[name] = None if before is None or now <= before[0] else (total - before[1]) / (now - before[0])
            self.last[name] = (now, total)
        return out


def render(body: dict[str, Any], rates: dict[str, float | None] | None = None) -> Group:
    """The hubs table, the sinks table and a header line, from a /healthz body."""
    now = time.time()
    head = Text()
    head.append("hubbridge ", style="bold")
    head.append(body.get("status", "?"), style="green" if body.get("status") == "ok" else "bold red")
    journal = body.get("journal", {})
    rate = (rates or {}).get("")
    head.append(f"   in {'-' if rate is None else f'{rate:.1f}'} ev/s")
    head.append(
        f"   up {age(body.get('uptime'))}   journal {journal.get('disk_bytes', 0) / 1e6:.1f} MB"
        f" (head {journal.get('head', 0)}){'   FULL' if journal.get('full') else ''}"
    )
    hubs = Table(title="hubs", title_justify="left", expand=False)
    for col in ("hub", "state", "streams", "last event", "last poll", "devices", "restarts", "detail"):
        hubs.add_column(col, no_wrap=col != "detail")
    for name, h in body.get("hubs", {}).items():
        hubs.add_row(
            name,
            _state(h.get("state", "?")),
            ", ".join(h.get("streams_connected", [])) or "-",
            ago(h.get("last_event"), now),
            ago(h.get("last_poll"), now),
            str(h.get("devices", 0)),
            str(h.get("restarts", 0)),
            h.get("detail", "")[:60],
        )
    sinks = Table(title="sinks", title_justify="left", expand=False)
    for col in ("sink", "kind", "state", "ev/s", "backlog", "oldest", "in flight", "delivered", "dead", "detail"):
        sinks.add_column(col, no_wrap=col != "detail", justify="right" if col in ("ev/s", "backlog") else "left")
    for name, k in body.get("sinks", {}).items():
        rate = (rates or {}).get(name)
        sinks.add_row(
            name,
            k.get("kind", ""),
            _state(k.get("state", "?")),
            "-" if rate is None else f"{rate:.1f}",
            str(k.get("backlog", k.get("lag", 0))),
            age(k.get("oldest_undelivered_age")),
            str(k.get("in_flight", 0)),
            str(k.get("delivered_total", 0)),
            str(k.get("dead_lettered_total", 0)),
            k.get("detail", "")[:60],
        )
    parts: list[Any] = [head, hubs, sinks]
    for problem in body.get("problems", []):
        parts.append(Text(f"! {problem}", style="red"))
    return Group(*parts)
