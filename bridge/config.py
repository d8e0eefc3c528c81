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
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.errors import ConfigError

# --------------------------------------------------------------------------------------------------------
# Scalar types: durations, sizes, secrets
# --------------------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a bare number of seconds -> seconds as float."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a positive duration, got {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)  # a bare number of seconds, e.g. from ${POLL_INTERVAL:-30}
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return total
    raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB|k|K|M|G)?$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "k": 1024,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


def parse_size(value: Any) -> int:
    """``"1MiB"``, ``"500KB"``, ``"2G"`` or a bare number of bytes -> bytes as int."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value.strip())
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise ValueError(f"expected a size like 512KiB, 1MiB or 10MB, got {value!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

# Every secret value seen while loading, so the log pipeline can scrub them from any text as a last line
# of defence (see bridge.logs). Module-level because secrets are process-wide by nature.
KNOWN_SECRETS: set[str] = set()


class Secret:
    """A credential given inline or as a file. Never shows its value in ``repr``/``str``.

    A file-backed secret is re-read when the file's mtime or size changes, so rotating a token on disk takes
    effect on the next request without a restart (systemd credentials and Docker secrets work this way).
    """

    __slots__ = ("_cache", "_path", "_stamp", "_value")

    def __init__(self, value: str | None = None, path: Path | None = None) -> None:
        if (value is None) == (path is None):
            raise ValueError("a secret needs exactly one of a value or a file")
        self._value = value
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._cache: str | None = None
        if value is not None:
            KNOWN_SECRETS.add(value)

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self) -> str:
        """The current value. For a file, re-read if it changed since the last call."""
        if self._value is not None:
            return self._value
        assert self._path is not None
        st = self._path.stat()
        # A rotation by rename changes the inode even when size and mtime tick look the same.
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp or self._cache is None:
            text = self._path.read_text(encoding="utf-8").strip()
            self._cache, self._stamp = text, stamp
            if text:
                KNOWN_SECRETS.add(text)
        return self._cache

    def __repr__(self) -> str:
        return f"Secret(file={str(self._path)!r})" if self._path else "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self._value, self._path) == (other._value, other._path)

    def __hash__(self) -> int:
        return hash((self._value, self._path))


def _secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str) and value:
        return Secret(value=value)
    raise ValueError("expected a non-empty string (or use the <key>_file form)")


SecretField = Annotated[Secret, BeforeValidator(_secret)]


# --------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, BeforeValidator(lambda v: _http_url(v) if isinstance(v, str) else v)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class TlsOptions(Model):
    verify: bool = True
    ca_file: Path | None = None


class HubitatHubConfig(Model):
    """One Hubitat Elevation hub, read through Maker API (poll and POST-URL) and ``/eventsocket``."""

    name: Name
    type: Literal["hubitat"]
    url: HttpUrl
    app_id: int = Field(gt=0)
    access_token: SecretField
    eventsocket: bool = True
    poll_interval: Duration = 300.0
    # Hub kindness (DESIGN 5): requests in flight, a timeout on every request, backoff cap.
    max_concurrency: int = Field(default=2, ge=1, le=8)
    request_timeout: Duration = 15.0
    backoff_max: Duration = 300.0
    # Pause between per-device detail fetches, so learning dataTypes never bursts the hub.
    detail_spacing: Duration = 0.1
    # The hub pings every ~120 s (hubitat.md 2.3); no frame, ping or pong for this long means a dead socket.
    eventsocket_timeout: Duration = 150.0
    # Maker API POST-URL intake on the bridge's listener: /hubitat/<name>/<webhook_secret>.
    webhook_secret: SecretField | None = None
    # When set, register <advertise_url>/hubitat/<name>/<secret> as the Maker API postURL at start.
    advertise_url: HttpUrl | None = None
    location_events: bool = True
    tls: TlsOptions = TlsOptions()

    @model_validator(mode="after")
    def _advertise_needs_secret(self) -> HubitatHubConfig:
        if self.advertise_url and self.webhook_secret is None:
            raise ValueError("advertise_url needs webhook_secret (the POST-URL path carries it)")
        return self


# A discriminated union on `type` once a second hub kind exists.
HubConfig = HubitatHubConfig


class BatchOptions(Model):
    max_events: int = Field(default=500, ge=1, le=100_000)
    max_bytes: Size = 1024 * 1024
    max_wait: Duration = 1.0


class RetryOptions(Model):
    """Full-jitter exponential backoff between attempts of one batch (DESIGN 6)."""

    initial: Duration = 0.5
    max: Duration = 60.0


class FileSinkConfig(Model):
    name: Name
    type: Literal["file"]
    path: Path
    rotate_bytes: Size = 100 * 1024 * 1024
    keep_files: int = Field(default=5, ge=0, le=1000)
    fsync: bool = True
    batch: BatchOptions = BatchOptions(max_events=1000, max_wait=0.2)
    retry: RetryOptions = RetryOptions()


class SplunkHecSinkConfig(Model):
    """Splunk HTTP Event Collector (docs/splunk.md; protocol notes in shared/reference/splunk_hec.md)."""

    name: Name
    type: Literal["splunk_hec"]
    # The HEC base URL, e.g. https://splunk.example.com:8088. A pasted endpoint path (".../services/collector
    # /event") is cut off, since the sink appends the paths it needs (event, ack, health).
    url: HttpUrl
    # Required (see _needs_token); `token_file` becomes a file-backed Secret here, re-read when it changes.
    token: SecretField | None = None
    index: str | None = None
    # Envelope overrides. Unset: host = the event's hub, source = "hubbridge:<hub>", sourcetype below.
    host: str | None = None
    source: str | None = None
    sourcetype: str = "hubbridge:event"
    # Event fields sent as HEC indexed fields (fast `tstats` searches).
    fields: list[str] = Field(default_factory=lambda: ["hub", "hub_type", "kind", "device_id", "attribute"])
    gzip: bool = True
    batch: BatchOptions = BatchOptions()
    retry: RetryOptions = RetryOptions()
    # Numeric values as HEC metric events too ("also") or instead of events ("only"), into metrics_index.
    metrics: Literal["off", "also", "only"] = "off"
    metrics_index: str | None = None
    # Indexer acknowledgement (reference section 4): the cursor moves only once Splunk confirms indexing.
    ack: bool = False
    ack_poll_interval: Duration = 10.0
    ack_timeout: Duration = 300.0
    # Batches awaiting confirmation at once (HEC's reply, or with ack Splunk's acknowledgement); unset: 2
    # without ack, 100 with ack (bridge.sinks.splunk_hec.in_flight).
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    request_timeout: Duration = 30.0
    tls: TlsOptions = TlsOptions()

    @field_validator("url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        return re.sub(r"/services/collector(/.*)?$", "", v)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: list[str]) -> list[str]:
        from bridge.events import FIELDS

        unknown = [f for f in v if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown event field(s) {unknown}; choose from {list(FIELDS)}")
        return v

    @model_validator(mode="after")
    def _checks(self) -> SplunkHecSinkConfig:
        if self.token is None:
            raise ValueError("token (or token_file) is required: the HEC token Splunk gave this input")
        if self.metrics != "off" and not self.metrics_index:
            raise ValueError(f"metrics: {self.metrics} needs metrics_index (a Splunk index of type metrics)")
        if self.ack and self.ack_timeout <= self.ack_poll_interval:
            raise ValueError("ack_timeout must be longer than ack_poll_interval")
        return self


SinkConfig = Annotated[FileSinkConfig | SplunkHecSinkConfig, Field(discriminator="type")]


class JournalOptions(Model):
    max_bytes: Size = 1024**3
    # FULL survives power loss; NORMAL survives kill -9 only. Group commit makes FULL cheap enough.
    synchronous: Literal["full", "normal"] = "full"
    # Extra wait before each commit to gather more appends; 0 groups whatever arrived during the last fsync.
    commit_window: Duration = 0.0


class LogOptions(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class BridgeConfig(Model):
    """The root of the config file."""

    state_dir: Path
    listen: str = "127.0.0.1:8470"
    hubs: list[HubConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(min_length=1)
    journal: JournalOptions = JournalOptions()
    log: LogOptions = LogOptions()
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
SECRET_KEYS = frozenset({"access_token", "token", "api_key", "secret", "webhook_secret", "password"})
# Keys holding paths that are resolved against the config file's directory.
PATH_KEYS = frozenset({"state_dir", "path", "ca_file"})

PathT = tuple[str | int, ...]
# pydantic puts the chosen union member's tag into error locations; users never wrote it, so drop it.
_UNION_TAGS = frozenset({"hubitat", "homey", "file", "splunk_hec", "webhook"})


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
