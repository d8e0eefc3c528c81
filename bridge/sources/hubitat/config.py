"""The config of one Hubitat hub (``type: hubitat``), with the floors that protect the hub.

Two ways in (hubitat.md 1.1, 3): the hub's LAN address (``http://192.168.1.10``: Maker API, ``/eventsocket``,
POST-URL, health endpoints) or Hubitat's cloud relay (``https://cloud.hubitat.com/api/<hubUID>``, also spelled
``https://oauth.cloud.hubitat.com/<hubUID>``): Maker API only, so polling only, less often. A URL whose path is
``/api/<hubUID>`` is the cloud form whatever its host (the simulator serves it on loopback).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from bridge.options import (
    Duration,
    HttpUrl,
    HubConfigBase,
    SecretField,
    TlsOptions,
    at_least,
    shown_url,
)

_MAKER_PATH = re.compile(r"/apps/(?:api/)?(\d+)")
# A hub UID is a UUID (hubData's hubId); letters, digits and dashes, nothing that could end a path segment.
_UID = r"[A-Za-z0-9][A-Za-z0-9-]{2,63}"
_CLOUD_PATH = re.compile(rf"/api/({_UID})")
# The second spelling (HousePanel logs getApiServerUrl() this way, hubitat.md 3): the UID right after the host.
_OAUTH_CLOUD_HOST = "oauth.cloud.hubitat.com"
_OAUTH_CLOUD_PATH = re.compile(rf"/({_UID})")
_CLOUD_HOSTS = ("cloud.hubitat.com", _OAUTH_CLOUD_HOST)

# Through the relay a poll crosses the internet twice and the relay is shared by every Hubitat owner [INF]: polls
# are slower by default and have a higher floor; requests get more time.
CLOUD_POLL_INTERVAL = 600.0
CLOUD_POLL_FLOOR = 60.0
CLOUD_REQUEST_TIMEOUT = 30.0
# What the cloud relay does not carry (it forwards Maker API's /apps/<id>/... and nothing else).
CLOUD_UNAVAILABLE = (
    "/eventsocket (eventsocket)",
    "Maker API POST-URL (webhook_secret, advertise_url)",
    "hub health endpoints /hub/advanced/*, /hub2/hubData (health)",
)


def _split(url: str) -> tuple[str, str, str]:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return scheme, host, slash + path


def cloud_hub_uid(url: str) -> str | None:
    """The hub UID when ``url`` is the cloud relay form, else None (the hub's LAN address)."""
    _, host, path = _split(url)
    match = _CLOUD_PATH.fullmatch(path)
    if match is None and host.lower().split(":")[0] == _OAUTH_CLOUD_HOST:
        match = _OAUTH_CLOUD_PATH.fullmatch(path)
    return match.group(1) if match else None


class HubitatConfig(HubConfigBase):
    """One Hubitat Elevation hub, read through Maker API (poll and POST-URL) and ``/eventsocket``, or the cloud."""

    type: Literal["hubitat"]
    url: HttpUrl
    app_id: int = Field(gt=0)
    access_token: SecretField
    eventsocket: bool = True
    # Hub kindness (DESIGN 5): every interval has a floor, so no setting can turn the bridge into a load test.
    poll_interval: Annotated[Duration, at_least(10, "a full poll is heavy for the hub; 5m is plenty")] = 300.0
    # While the eventsocket is live, polls only reconcile: this often (and at every reconnect and hub restart).
    reconcile_interval: Annotated[Duration, at_least(60, "the live stream brings changes; polls only audit it")] = 900.0
    max_concurrency: int = Field(default=2, ge=1, le=8)
    request_timeout: Annotated[Duration, at_least(1, "a busy hub needs time to answer")] = 15.0
    backoff_max: Annotated[Duration, at_least(1, "retrying a failing hub faster makes it fail longer")] = 300.0
    # Pause between per-device detail fetches, so learning dataTypes never bursts the hub.
    detail_spacing: Duration = 0.1
    # The hub pings every ~120 s (hubitat.md 2.3) and the bridge pings in between; no frame, ping or pong for this
    # long means a dead socket.
    eventsocket_timeout: Annotated[Duration, at_least(3, "each dead-socket verdict costs a reconnect and a poll")] = (
        150.0
    )
    # Maker API POST-URL intake on the bridge's listener: /hubitat/<name>/<webhook_secret>.
    webhook_secret: SecretField | None = None
    # When set, register <advertise_url>/hubitat/<name>/<secret> as the Maker API postURL at start.
    advertise_url: HttpUrl | None = None
    location_events: bool = True
    # Attributes that carry secrets (lockCodes holds every user's PIN): never read into events. Set [] to forward.
    sensitive_attributes: list[str] = Field(default_factory=lambda: ["lockCodes"])
    tls: TlsOptions = TlsOptions()
    # Hub health as data (kind: hub events): the admin UI's memory, load, temperature, database and alerts.
    health: bool = False
    health_interval: Annotated[Duration, at_least(30, "each round is several admin requests the hub answers")] = 300.0

    @model_validator(mode="before")
    @classmethod
    def _cloud_defaults(cls, data: object) -> object:
        # Through the cloud relay there is no eventsocket, and polls are slower: different defaults, same keys.
        if isinstance(data, dict) and isinstance(data.get("url"), str) and cloud_hub_uid(data["url"].rstrip("/")):
            data = {
                "eventsocket": False,
                "poll_interval": CLOUD_POLL_INTERVAL,
                "request_timeout": CLOUD_REQUEST_TIMEOUT,
                **data,
            }
        return data

    @field_validator("url")
    @classmethod
    def _hub_address_only(cls, v: str) -> str:
        # A URL copied from Maker API's page carries /apps/api/<id>/... and the token: it passes as a URL, then
        # every request fails with a misleading "bad token". Say what goes where, without repeating the token.
        scheme, host, path = _split(v)
        if cloud_hub_uid(v):
            return v
        cloud = host.lower().split(":")[0] in _CLOUD_HOSTS
        if path or "?" in host or "#" in host or cloud:
            match = _MAKER_PATH.search(path)
            hint = f" ({match.group(1)} here)" if match else ""
            uid = re.match(rf"/(?:api/)?({_UID})", path)
            if cloud or (uid and "/apps/" in path and not path.startswith("/apps/")):
                expected = f"https://cloud.hubitat.com/api/{uid.group(1) if uid else '<hubUID>'}"
                what = "the cloud relay's address with the hub's UID"
            else:
                expected, what = f"{scheme}://{host.split('?')[0]}", "only the hub's address"
            raise ValueError(
                f"expected {what}, like {expected}, got {shown_url(v)!r}; "
                f"put the Maker API app id in app_id{hint} and its token in access_token"
            )
        return v

    # ------------------------------------------------------------------ the way in

    @property
    def hub_uid(self) -> str | None:
        """The hub's UID when it is reached through the cloud relay, else None."""
        return cloud_hub_uid(self.url)

    @property
    def cloud(self) -> bool:
        """Whether the hub is reached through Hubitat's cloud relay (Maker API polling only)."""
        return self.hub_uid is not None

    @property
    def maker_base(self) -> str:
        """Where Maker API's endpoints are: ``<hub>/apps/api/<id>`` on the LAN, ``<relay>/apps/<id>`` in the cloud."""
        return f"{self.url}/apps/{self.app_id}" if self.cloud else f"{self.url}/apps/api/{self.app_id}"

    def check_notes(self) -> list[str]:
        """What ``hubbridge check`` tells about this hub beyond "valid": the way in and what it cannot reach."""
        if not self.cloud:
            ways = ["Maker API polling"]
            if self.eventsocket:
                ways.append("/eventsocket")
            if self.webhook_secret is not None:
                ways.append("POST-URL")
            if self.health:
                ways.append(f"hub health every {self.health_interval:g}s")
            return [f"LAN at {self.url}: {', '.join(ways)}"]
        return [
            f"through the Hubitat cloud relay (hub {self.hub_uid}): Maker API polling only, every "
            f"{self.poll_interval:g}s",
            "not available through the cloud relay: " + "; ".join(CLOUD_UNAVAILABLE),
        ]

    @model_validator(mode="after")
    def _advertise_needs_secret(self) -> HubitatConfig:
        if self.advertise_url and self.webhook_secret is None:
            raise ValueError("advertise_url needs webhook_secret (the POST-URL path carries it)")
        return self

    @model_validator(mode="after")
    def _cloud_is_polling_only(self) -> HubitatConfig:
        if not self.cloud:
            return self
        lan = "use the hub's LAN address as url for it"
        if self.eventsocket:
            raise ValueError(
                f"eventsocket: true needs the hub's LAN address: the cloud relay has no /eventsocket; {lan}"
            )
        if self.webhook_secret is not None or self.advertise_url is not None:
            raise ValueError(
                "Maker API's POST-URL is not set up through the cloud relay: drop webhook_secret and advertise_url, "
                f"or {lan}"
            )
        if self.health:
            raise ValueError(
                f"health: true reads the hub's admin endpoints, which the cloud relay does not carry; {lan}"
            )
        if self.poll_interval < CLOUD_POLL_FLOOR:
            raise ValueError(
                f"poll_interval must be at least {CLOUD_POLL_FLOOR:g}s through the cloud relay (it is shared by "
                f"every Hubitat owner; the default there is {CLOUD_POLL_INTERVAL:g}s), got {self.poll_interval:g}s"
            )
        return self
