"""Option types every component's config model shares: durations, sizes, secrets, URLs, names, TLS, batching.

Each component's own config model lives beside the component (``bridge/sources/hubitat/config.py``...) and is
built from these; :mod:`bridge.config` assembles the root model from the registered components and loads YAML.
This module imports nothing else of the bridge, so any component can use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

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
        """The current value. For a file, re-read if it changed since the last call.

        Raises ``OSError`` (with a message saying what is wrong) when the file cannot be read as UTF-8 text.
        """
        if self._value is not None:
            return self._value
        assert self._path is not None
        st = self._path.stat()
        # A rotation by rename changes the inode even when size and mtime tick look the same.
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp or self._cache is None:
            try:
                text = self._path.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                raise OSError(f"{self._path} is not UTF-8 text") from None
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


_QUERY_VALUE = re.compile(r"=[^&#]*")


def shown_url(value: str) -> str:
    """A URL as an error may repeat it: query values blanked (a pasted URL often carries a token)."""
    base, sep, query = value.partition("?")
    return base + (sep + _QUERY_VALUE.sub("=***", query) if sep else "")


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+", value):
        raise ValueError(f"expected an http:// or https:// URL, got {shown_url(value)!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, BeforeValidator(lambda v: _http_url(v) if isinstance(v, str) else v)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def at_least(minimum: float, why: str) -> AfterValidator:
    """A floor for a duration or number: below it, ``check`` refuses the value and says why the floor exists."""

    def check(value: float) -> float:
        if value < minimum:
            shown = f"{minimum * 1000:g}ms" if minimum < 1 else f"{minimum:g}s"
            raise ValueError(f"must be at least {shown} ({why})")
        return value

    return AfterValidator(check)


def readable_file(path: Path) -> Path:
    """``path`` must be a readable file now: found by ``check``, not at the first connection hours later."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


def ca_bundle(path: Path) -> Path:
    """``path`` must be a PEM bundle OpenSSL can load: found by ``check``, not at the first TLS handshake."""
    import ssl

    readable_file(path)
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{path} is not a PEM certificate (bundle) OpenSSL can load: {exc}") from None
    return path


class TlsOptions(Model):
    """TLS for one HTTPS peer: certificates are verified by default, against the system CAs or ``ca_file``."""

    verify: bool = True
    ca_file: Annotated[Path, AfterValidator(ca_bundle)] | None = None


class BatchOptions(Model):
    """How many events one request carries, at most, and how long a small batch waits to grow."""

    max_events: int = Field(default=500, ge=1, le=100_000)
    max_bytes: Size = 1024 * 1024
    max_wait: Duration = 1.0


class RetryOptions(Model):
    """Full-jitter exponential backoff between attempts of one batch (DESIGN 6)."""

    initial: Duration = 0.5
    max: Duration = 60.0

    @field_validator("max")
    @classmethod
    def _max_not_below_initial(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be above 0s (a zero backoff retries in a busy loop)")
        return v


# --------------------------------------------------------------------------------------------------------
# Filters (every sink's `filters:` section; applied by the delivery loop, see bridge.filters)
# --------------------------------------------------------------------------------------------------------


def _names(value: Any) -> Any:
    """One name or glob, or a list of them, as a list."""
    if isinstance(value, str):
        return [value]
    return value


Globs = Annotated[list[str], BeforeValidator(_names), Field(min_length=1)]


class FilterRule(Model):
    """Events this rule matches: every key given must match (a list means any of its globs); none given: all."""

    hub: Globs | None = None
    kind: Globs | None = None
    # The device's id or its label (or name), as glob patterns: "176", "Kitchen *".
    device: Globs | None = None
    room: Globs | None = None
    attribute: Globs | None = None


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be above 0")
    return value


class FilterOptions(Model):
    """Which events a sink forwards. Filtered events are counted and skipped, never dead-lettered."""

    # When given, only events matching at least one of these rules are forwarded.
    include: list[FilterRule] = Field(default_factory=list)
    # Events matching any of these are not forwarded (applied after include).
    exclude: list[FilterRule] = Field(default_factory=list)
    # attribute (or glob) -> the least change from the last value this sink forwarded that is forwarded.
    deadband: dict[str, Annotated[float, AfterValidator(_positive)]] = Field(default_factory=dict)
    # attribute (or glob) -> at most one event per device and attribute per this interval; the latest value
    # of a window is forwarded when it closes.
    min_interval: dict[str, Annotated[Duration, AfterValidator(_positive)]] = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude or self.deadband or self.min_interval)


class HubConfigBase(Model):
    """What every hub's config has: its name (``hub`` in every event) and its ``type`` (the registered family)."""

    name: Name
    type: str


class SinkConfigBase(Model):
    """What every sink's config has: its name, its ``type``, and the name it had before a rename (keeps its place)."""

    name: Name
    type: str
    # The sink was called this before: it takes over that name's place in the journal, and with it the backlog.
    renamed_from: Name | None = None
    # Which events this sink forwards (include/exclude, deadband, minimum interval): bridge.filters.
    filters: FilterOptions = FilterOptions()
