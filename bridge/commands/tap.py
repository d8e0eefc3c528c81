"""``hubbridge tap``: follow the journal and print events as they are committed, filtered.

It reads the journal file read-only beside the running bridge (no endpoint serves events to whoever can reach the
listener, which may face the LAN for POST-URL). The bridge trims events every sink has delivered, about once a
second; tap reads every 0.1 s, and says so on stderr if events were trimmed before it could read them.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import load_config
from bridge.errors import StateDirError

POLL = 0.1
EXIT_OK = 0


@dataclass(frozen=True, slots=True)
class Filter:
    hub: str | None = None
    device: str | None = None  # an id or a name
    attribute: str | None = None
    kind: str | None = None

    def matches(self, ev: dict[str, Any]) -> bool:
        if self.hub is not None and ev.get("hub") != self.hub:
            return False
        if self.kind is not None and ev.get("kind") != self.kind:
            return False
        if self.attribute is not None and ev.get("attribute") != self.attribute:
            return False
        return self.device is None or self.device in (ev.get("device_id"), ev.get("device"))


def line(ev: dict[str, Any]) -> str:
    """One event as the demo prints it: time, hub, device, attribute, change, unit, source."""
    when = time.strftime("%H:%M:%S", time.localtime(float(ev.get("time") or 0)))
    kind = ev.get("kind", "")
    what = str(ev.get("device") or {"location": "location", "hub": "hub", "bridge": "bridge"}.get(kind, kind))
    prev, value = ev.get("previous"), ev.get("value")
    change = f"{prev!r} -> {value!r}" if prev is not None else f"{value!r}"
    unit = f" {ev['unit']}" if ev.get("unit") else ""
    hub, attribute = ev.get("hub", ""), ev.get("attribute", "")
    return f"{when}  {hub:<9} {what[:28]:<28} {attribute:<18} {change}{unit}  [{ev.get('source')}]"


def _open(db: Path) -> sqlite3.Connection:
    if not db.exists():
        raise StateDirError(f"no journal at {db}: the bridge has not run with this config yet (or run tap with sudo)")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise StateDirError(
            f"cannot read the journal {db}: {exc} (run tap as the bridge's user, or with sudo)"
        ) from None
    return conn


def tap(config: str, wanted: Filter, *, last: int = 0, as_json: bool = False, count: int | None = None) -> int:
    cfg = load_config(config)
    conn = _open(cfg.state_dir / "journal.sqlite3")
    head = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    pos = max(0, head - max(0, last))
    shown = 0
    print(f"tapping {cfg.state_dir / 'journal.sqlite3'} from seq {pos}; Ctrl-C to stop", file=sys.stderr)
    try:
        while count is None or shown < count:
            rows = conn.execute("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT 1000", (pos,)).fetchall()
            if not rows:
                time.sleep(POLL)
                continue
            if rows[0][0] > pos + 1 and pos:
                print(f"({rows[0][0] - pos - 1} event(s) were trimmed before tap read them)", file=sys.stderr)
            for seq, body in rows:
                pos = seq
                ev = json.loads(body)
                if not wanted.matches(ev):
                    continue
                print(body if as_json else line(ev), flush=True)
                shown += 1
                if count is not None and shown >= count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
    return EXIT_OK
