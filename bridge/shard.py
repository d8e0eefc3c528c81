"""Sharding hubs across bridge instances (docs/scale.md): each instance runs the hubs a stable hash gives it.

``shard: {index, count}`` in the config, or ``HUBBRIDGE_SHARD=2/8`` in the environment (it wins over the config),
or ``shard: {count: 8}`` alone in a Kubernetes StatefulSet, where the index is the pod's ordinal (the host name ends
in ``-<ordinal>``). Shards are numbered from 0, as StatefulSet ordinals are.

A hub belongs to the shard with the highest hash of (shard, hub name) (rendezvous hashing): the assignment depends
only on the names and the count, so every instance computes the same one without talking to the others, and
changing the count from n to n+1 moves only about 1/(n+1) of the hubs (those the new shard wins). JetStream hubs
(``type: nats``) are not sharded: every instance joins their durable consumer, which splits the work itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from bridge.errors import ConfigError
from bridge.options import Model

ENV = "HUBBRIDGE_SHARD"
# Hub types every instance runs whatever its shard (they share the work by other means).
UNSHARDED = frozenset({"nats"})

_ORDINAL = re.compile(r"-(\d+)$")


class ShardOptions(Model):
    """``shard:`` in the config. Without ``index``, the StatefulSet ordinal of the host name is the index."""

    index: int | None = Field(default=None, ge=0)
    count: int = Field(ge=1, le=100_000)

    @model_validator(mode="after")
    def _index_below_count(self) -> ShardOptions:
        if self.index is not None and self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count} (shards are numbered from 0)")
        return self


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int
    origin: str  # where it came from, for `check` and the logs

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def owner(hub: str, count: int) -> int:
    """The shard (0..count-1) that runs hub ``hub``: the highest hash of (shard, name) wins."""
    best, best_score = 0, b""
    for i in range(count):
        score = hashlib.blake2b(f"{i}\x1f{hub}".encode(), digest_size=8).digest()
        if score > best_score:
            best, best_score = i, score
    return best


def resolve(
    options: ShardOptions | None, env: Mapping[str, str] | None = None, host: str | None = None
) -> Shard | None:
    """This instance's shard, or None when the hubs are not sharded. Raises ConfigError saying how to fix it."""
    env = os.environ if env is None else env
    text = env.get(ENV, "").strip()
    if text:
        m = re.fullmatch(r"(\d+)\s*/\s*(\d+)", text)
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise ConfigError(
                ENV, [f"expected index/count with index below count, e.g. 2/8 (shards from 0), got {text!r}"]
            )
        return Shard(int(m.group(1)), int(m.group(2)), ENV)
    if options is None:
        return None
    if options.index is not None:
        return Shard(options.index, options.count, "config")
    name = host if host is not None else socket.gethostname()
    m = _ORDINAL.search(name)
    if m is None:
        raise ConfigError(
            "shard",
            [
                f"shard.index is not set and the host name {name!r} does not end in a StatefulSet ordinal (-N); "
                f"set shard.index, or {ENV}=index/count"
            ],
        )
    index = int(m.group(1))
    if index >= options.count:
        raise ConfigError(
            "shard", [f"the pod ordinal {index} (host {name!r}) is not below shard.count {options.count}"]
        )
    return Shard(index, options.count, f"host name {name}")


def owned(hubs: Sequence[Any], shard: Shard | None) -> list[Any]:
    """The hub configs this instance runs."""
    if shard is None:
        return list(hubs)
    return [h for h in hubs if h.type in UNSHARDED or owner(h.name, shard.count) == shard.index]


def describe(hubs: Sequence[Any], shard: Shard | None) -> list[str]:
    """What `hubbridge check` prints: this instance's shard and where every hub runs."""
    if shard is None:
        return []
    mine = owned(hubs, shard)
    lines = [f"shard {shard} (from {shard.origin}): this instance runs {len(mine)} of {len(hubs)} hub(s)"]
    for h in hubs:
        if h.type in UNSHARDED:
            lines.append(f"  {h.name}: every shard (a {h.type} consumer shares the work itself)")
        else:
            n = owner(h.name, shard.count)
            lines.append(f"  {h.name}: shard {n}" + ("  <- this instance" if n == shard.index else ""))
    return lines
