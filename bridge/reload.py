"""SIGHUP: re-read the config file and apply what changed, restarting only the hubs and sinks that changed.

A new config that does not load (invalid YAML, an unknown key, a missing secret file) is refused with one error
line and the old one keeps running. Keys that only take effect at start (``state_dir``, ``listen``, ``journal``)
refuse the reload too, saying which key and that it needs a restart: applying half of a config is worse than
applying none of it.

Nothing is lost or repeated across a reload: a hub that changes or goes away commits what it queued before it
stops, and the new one reconciles against the last-known values (a value seen already is no change); a sink that
changes or goes away finishes the batches it has on their way, so the cursor covers them, before it stops (if it
cannot within ``shutdown_timeout`` the batch is sent again later with the same event ids). A new sink starts at the
journal head, as at start-up; a removed sink's cursor follows ``journal.removed_sinks``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from bridge.config import BridgeConfig, load_config
from bridge.errors import ConfigError
from bridge.journal import SinkSpec
from bridge.logs import setup_logging
from bridge.notify import NOTIFIER, monotonic_usec
from bridge.options import HubConfigBase, Model
from bridge.shard import owned, resolve

if TYPE_CHECKING:
    from bridge.runtime import Runtime

log = structlog.get_logger("bridge.reload")

# Keys read once at start: a reload that changes one is refused.
RESTART_ONLY = ("state_dir", "listen", "journal", "shard")


@dataclass(slots=True)
class Plan:
    """What a reload does: component names per kind of change, or why it is refused."""

    hubs_added: list[str] = field(default_factory=list)
    hubs_removed: list[str] = field(default_factory=list)
    hubs_changed: list[str] = field(default_factory=list)
    sinks_added: list[str] = field(default_factory=list)
    sinks_removed: list[str] = field(default_factory=list)
    sinks_changed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def components(self) -> bool:
        return bool(self.summary())

    def summary(self) -> dict[str, list[str]]:
        return {
            k: v
            for k, v in (
                ("hubs_added", self.hubs_added),
                ("hubs_removed", self.hubs_removed),
                ("hubs_changed", self.hubs_changed),
                ("sinks_added", self.sinks_added),
                ("sinks_removed", self.sinks_removed),
                ("sinks_changed", self.sinks_changed),
            )
            if v
        }


def _diff(old: list[Model], new: list[Model], plan_added: list[str], removed: list[str], changed: list[str]) -> None:
    before = {getattr(c, "name"): c for c in old}  # noqa: B009 - hubs and sinks both have a name
    after = {getattr(c, "name"): c for c in new}  # noqa: B009
    plan_added.extend(n for n in after if n not in before)
    removed.extend(n for n in before if n not in after)
    changed.extend(n for n in after if n in before and before[n] != after[n])


def plan(old: BridgeConfig, new: BridgeConfig) -> Plan:
    """Compare two configs: which hubs and sinks are added, removed or changed; what cannot change without restart."""
    p = Plan()
    for key in RESTART_ONLY:
        if getattr(old, key) != getattr(new, key):
            p.refused.append(key)
    # Only the hubs this instance owns run here (docs/scale.md); the shard itself only changes at a restart.
    _diff(list(_owned(old)), list(_owned(new)), p.hubs_added, p.hubs_removed, p.hubs_changed)
    _diff(list(old.sinks), list(new.sinks), p.sinks_added, p.sinks_removed, p.sinks_changed)
    return p


def _owned(cfg: BridgeConfig) -> list[HubConfigBase]:
    hubs: list[HubConfigBase] = owned(cfg.hubs, resolve(cfg.shard))
    return hubs


async def reload_from_file(runtime: Runtime) -> bool:
    """Load the config file again and apply it. Returns whether it was applied; never raises for a bad config."""
    path = runtime.config.source_file
    if path is None:
        log.error("reload refused: this bridge was not started from a config file")
        return False
    log.info("reloading the config", path=str(path))
    NOTIFIER.send("RELOADING=1", monotonic_usec(), "STATUS=reloading the config")
    try:
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("reload refused: the new config is invalid; the old one keeps running", error=str(exc))
            return False
        return await apply(runtime, new)
    finally:
        NOTIFIER.send("READY=1")


async def apply(runtime: Runtime, new: BridgeConfig) -> bool:
    """Apply ``new`` to a running bridge (see the module docstring)."""
    old = runtime.config
    p = plan(old, new)
    if p.refused:
        log.error(
            "reload refused: these keys only take effect at start; restart the bridge to change them "
            "(the old config keeps running)",
            keys=p.refused,
        )
        return False
    if old.log != new.log:
        setup_logging(new.log.level, new.log.format)
    timeout = new.shutdown_timeout
    await asyncio.gather(
        *(_stop_hub(runtime, n, timeout) for n in (*p.hubs_removed, *p.hubs_changed)),
        *(_stop_sink(runtime, n, timeout) for n in (*p.sinks_removed, *p.sinks_changed)),
    )
    if p.sinks_added or p.sinks_removed:
        await runtime.journal.register_sinks(
            [SinkSpec(s.name, s.renamed_from) for s in new.sinks], keep_removed=new.journal.removed_sinks == "keep"
        )
    by_name_sinks = {s.name: s for s in new.sinks}
    for name in (*p.sinks_changed, *p.sinks_added):
        runtime.start_sink(by_name_sinks[name])
    new_hubs = _owned(new)
    by_name_hubs = {h.name: h for h in new_hubs}
    for name in p.hubs_added:
        runtime.mount_routes(by_name_hubs[name])
    for name in (*p.hubs_changed, *p.hubs_added):
        runtime.start_hub(by_name_hubs[name])
    # Keep the order of the new config for /healthz and the status table.
    runtime.hubs = {name: runtime.hubs[name] for name in by_name_hubs}
    runtime.sinks = {s.name: runtime.sinks[s.name] for s in new.sinks}
    runtime.config = new
    if p.components:
        log.info("config reloaded", **p.summary())
    else:
        log.info("config reloaded; no hub or sink changed")
    return True


async def _finish(task: asyncio.Task[None] | None, timeout: float, what: str, name: str) -> None:
    if task is None:
        return
    _, pending = await asyncio.wait([task], timeout=timeout)
    if pending:
        log.warning(f"{what} did not stop within shutdown_timeout; stopped anyway", **{what: name})
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _stop_hub(runtime: Runtime, name: str, timeout: float) -> None:
    slot = runtime.hubs.pop(name)
    slot.stop()
    if slot.runner is None and slot.task is not None:
        slot.task.cancel()  # between a crash and its replacement: nothing queued to commit
    await _finish(slot.task, timeout, "hub", name)


async def _stop_sink(runtime: Runtime, name: str, timeout: float) -> None:
    slot = runtime.sinks[name]
    slot.stop()
    if slot.task is not None and (slot.delivery is None or slot.status.state in ("restarting", "retrying", "holding")):
        # Failing or between runs: what it has on its way is not delivered, and is sent again (same ids) later.
        slot.task.cancel()
    await _finish(slot.task, timeout, "sink", name)
    runtime.stats.count()  # what it delivered goes into the totals before its status is gone
    del runtime.sinks[name]
