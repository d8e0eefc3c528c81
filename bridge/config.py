"""Configuration: YAML in, typed and validated models out.

Every component has its own pydantic model that rejects unknown keys, so a typo (``pol_interval``) is an error
at start-up rather than a silently ignored setting. Loading does three things before validation:

* ``${VAR}`` / ``${VAR:-default}`` substitution in every string, so secrets can come from the environment;
* ``<key>_file`` for every secret ``<key>`` (``access_token_file``, ``token_file``...), read lazily so that a
  rotated credential file is picked up without a restart;
* relative paths are resolved against the directory of the config file, not the working directory, because
  systemd and cron start us from ``/``.

Errors name the file, the line, the key path and what was expected, e.g.::

    /etc/hubbridge.yaml:7: hubs[0].poll_interval: expected a duration like 30s, 5m or 1h, got 'soon'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from bridge.errors import ConfigError
from bridge.options import (
    KNOWN_SECRETS,
    Duration,
    HubConfigBase,
    Model,
    Secret,
    SinkConfigBase,
    Size,
    TlsOptions,
    parse_duration,
    parse_size,
)
from bridge.shard import ShardOptions
from bridge.sinks import SINKS
from bridge.sources import SOURCES

__all__ = [
    "KNOWN_SECRETS",
    "BridgeConfig",
    "JournalOptions",
    "LogOptions",
    "Secret",
    "TlsOptions",
    "load_config",
    "parse_duration",
    "parse_size",
]

# --------------------------------------------------------------------------------------------------------
# The root model, assembled from the registered components
# --------------------------------------------------------------------------------------------------------


def _union(models: list[type[Model]]) -> Any:
    """The type of one entry of ``hubs:`` or ``sinks:``: the registered models, told apart by ``type``."""
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007 - built at run time


if TYPE_CHECKING:
    HubConfig = HubConfigBase
    SinkConfig = SinkConfigBase
else:
    HubConfig = _union([s.Config for s in SOURCES.values()])
    SinkConfig = _union([s.Config for s in SINKS.values()])


class DeadLetterOptions(Model):
    """How long dead letters are kept: the newest ``max_count``, none older than ``max_age``."""

    max_count: int = Field(default=10_000, ge=0, le=10_000_000)
    max_age: Duration = 30 * 86400.0


class JournalOptions(Model):
    # Bounds the journal's files on disk (database and WAL). Below 4 MiB the WAL alone would not fit beside a
    # useful backlog.
    max_bytes: Annotated[Size, Field(ge=4 * 1024**2)] = 1024**3
    # FULL survives power loss; NORMAL survives kill -9 only. Group commit makes FULL cheap enough.
    synchronous: Literal["full", "normal"] = "full"
    # Extra wait before each commit to gather more appends; 0 groups whatever arrived during the last fsync.
    commit_window: Duration = 0.0
    dead_letters: DeadLetterOptions = DeadLetterOptions()
    # What happens to the backlog of a sink that is no longer configured: dropped (with a warning saying how
    # many events), or kept until it comes back or `hubbridge spool drop-sink` drops it.
    removed_sinks: Literal["drop", "keep"] = "drop"


class LogOptions(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    # An info line this often saying how much flowed (events in, delivered per sink, backlog).
    summary_every: Annotated[Duration, Field(ge=1)] = 300.0


class BridgeConfig(Model):
    """The root of the config file."""

    state_dir: Path
    listen: str = "127.0.0.1:8470"
    hubs: list[HubConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(min_length=1)
    journal: JournalOptions = JournalOptions()
    log: LogOptions = LogOptions()
    # Which hubs this instance runs when several share one config (bridge.shard, docs/scale.md).
    shard: ShardOptions | None = None
    # On SIGTERM (and for a hub or sink a reload replaces): how long queued readings and batches on their way get
    # to be committed and delivered; what is left stays in the journal for the next start.
    shutdown_timeout: Annotated[Duration, Field(gt=0, le=3600)] = 20.0
    # A hub poll, a sink batch or a journal commit on its way for this long without finishing is wedged: under
    # systemd's watchdog (WatchdogSec) the bridge then stops feeding it and is restarted. Waiting out an outage
    # (backoff, holding) is not wedged. Keep it above every sink's send_timeout plus ack_timeout.
    stall_timeout: Annotated[Duration, Field(gt=0)] = 900.0
    # Where the config came from; not a YAML key.
    source_file: Path | None = Field(default=None, exclude=True)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as 127.0.0.1:8470, got {v!r}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> BridgeConfig:
        for what, items in (("hubs", self.hubs), ("sinks", self.sinks)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{what}: the name {item.name!r} is used twice; names must be unique")
                seen.add(item.name)
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Keys whose value is a secret; each also accepts <key>_file.
SECRET_KEYS = frozenset(
    {"access_token", "token", "api_key", "secret", "previous_secret", "webhook_secret", "password", "client_secret"}
)
# Keys holding paths that are resolved against the config file's directory.
PATH_KEYS = frozenset({"state_dir", "path", "ca_file"})

PathT = tuple[str | int, ...]
# pydantic puts the chosen union member's tag into error locations; users never wrote it, so drop it.
_UNION_TAGS = frozenset({*SOURCES, *SINKS})


def format_path(path: PathT) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class _Lines:
    """Maps key paths to line numbers in the YAML source, for error messages."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[PathT, int] = {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: PathT) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                self.lines[(*path, key)] = k.start_mark.line + 1
                self._walk(v, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, (*path, i))

    def find(self, path: PathT) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _walk_values(data: Any, path: PathT = ()) -> Iterator[tuple[PathT, Any, Any]]:
    """Yield (path, container, key) for every scalar in a loaded YAML tree."""
    if isinstance(data, dict):
        for k in list(data):
            if isinstance(data[k], dict | list):
                yield from _walk_values(data[k], (*path, k))
            else:
                yield (*path, k), data, k
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if isinstance(item, dict | list):
                yield from _walk_values(item, (*path, i))
            else:
                yield (*path, i), data, i


def _prepare(
    data: Any, base_dir: Path, env: dict[str, str], problems: list[tuple[PathT, str]], substituted: set[PathT]
) -> None:
    """Substitute ${ENV}, turn <secret>_file keys into Secret objects and resolve relative paths, in place."""
    for path, container, key in list(_walk_values(data)):
        value = container[key]
        if isinstance(value, str) and "${" in value:

            def sub(m: re.Match[str], path: PathT = path) -> str:
                name, default = m.group(1), m.group(2)
                if name in env:
                    return env[name]
                if default is not None:
                    return default
                problems.append((path, f"environment variable {name} is not set"))
                return ""

            value = container[key] = _ENV_RE.sub(sub, value)
            substituted.add(path)
        if not isinstance(key, str):
            continue
        if key in PATH_KEYS and isinstance(value, str) and value:
            container[key] = str((base_dir / os.path.expanduser(value)).resolve())
        if key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
            plain = key[: -len("_file")]
            if plain in container:
                problems.append(((*path[:-1], plain), f"give either {plain} or {key}, not both"))
                continue
            if not isinstance(value, str) or not value:
                problems.append((path, "expected the path of a file holding the secret"))
                continue
            file = (base_dir / os.path.expanduser(value)).resolve()
            try:
                content = file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append((path, f"cannot read secret file {file}: {exc.strerror or exc}"))
                continue
            except UnicodeDecodeError:
                problems.append((path, f"secret file {file} is not UTF-8 text"))
                continue
            if not content:
                problems.append((path, f"secret file {file} is empty"))
                continue
            del container[key]
            container[plain] = Secret(path=file)


def _duplicate_names(data: dict[str, Any], problems: list[tuple[PathT, str]]) -> None:
    """Names must be unique per section; report the duplicate at its own line and key path."""
    for what in ("hubs", "sinks"):
        items = data.get(what)
        if not isinstance(items, list):
            continue
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in first:
                msg = f"the name {name!r} is already used by {what}[{first[name]}]; names must be unique"
                problems.append(((what, i, "name"), msg))
            else:
                first[name] = i


def _problem_text(err: Any, echo: bool = True) -> str:
    msg: str = err["msg"]
    typ: str = err["type"]
    if typ == "extra_forbidden":
        return "unknown key (check the spelling; see config.example.yaml for the keys this section takes)"
    if typ == "missing":
        return "required key is missing"
    if typ == "literal_error" and "expected" in err.get("ctx", {}):
        return f"expected one of {err['ctx']['expected']}, got {err.get('input')!r}"
    if typ == "union_tag_invalid":
        return f"unsupported type {err['ctx'].get('tag')!r}; expected one of {err['ctx'].get('expected_tags')}"
    if typ == "union_tag_not_found":
        return "the required key 'type' is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    inp = err.get("input")
    if not echo:
        # The value came from ${...}: it may be a secret put under the wrong key, so never repeat it.
        return msg.split(", got ")[0] + " (value from an environment variable, not shown)"
    if typ.endswith(("_type", "_parsing")) and not isinstance(inp, dict | list | Secret):
        return f"{msg[0].lower()}{msg[1:]}, got {inp!r}"
    return msg


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> BridgeConfig:
    """Read, substitute and validate a config file. Raises :class:`ConfigError` listing every problem."""
    file = Path(path)
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, [f"cannot read the config file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            name, [f"line {line}: the file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8"]
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(name, [f"{where}not valid YAML: {problem}"]) from None
    lines = _Lines(node)
    if not isinstance(data, dict):
        raise ConfigError(name, ["expected a mapping of keys (state_dir, hubs, sinks...) at the top level"])
    problems: list[tuple[PathT, str]] = []
    substituted: set[PathT] = set()
    _prepare(data, file.parent.resolve(), dict(os.environ if env is None else env), problems, substituted)
    _duplicate_names(data, problems)
    if not problems:
        try:
            cfg = BridgeConfig.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
                problems.append((loc, _problem_text(err, echo=loc not in substituted)))
        else:
            return cfg.model_copy(update={"source_file": file.resolve()})

    def fmt(p: PathT, msg: str) -> str:
        line = lines.find(p)
        return f"line {line}: {format_path(p)}: {msg}" if line else f"{format_path(p)}: {msg}"

    raise ConfigError(name, [fmt(p, m) for p, m in problems])
