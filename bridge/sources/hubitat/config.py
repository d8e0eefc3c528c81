"""The config of one Hubitat hub (``type: hubitat``), with the floors that protect the hub."""

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

_MAKER_PATH = re.compile(r"/apps/api/(\d+)")


class HubitatConfig(HubConfigBase):
    """One Hubitat Elevation hub, read through Maker API (poll and POST-URL) and ``/eventsocket``."""

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

    @field_validator("url")
    @classmethod
    def _hub_address_only(cls, v: str) -> str:
        # A URL copied from Maker API's page carries /apps/api/<id>/... and the token: it passes as a URL, then
        # every request fails with a misleading "bad token". Say what goes where, without repeating the token.
        scheme, _, rest = v.partition("://")
        host, slash, path = rest.partition("/")
        if slash or "?" in host or "#" in host:
            match = _MAKER_PATH.search("/" + path)
            hint = f" ({match.group(1)} here)" if match else ""
            raise ValueError(
                f"expected only the hub's address, like {scheme}://{host.split('?')[0]}, got {shown_url(v)!r}; "
                f"put the Maker API app id in app_id{hint} and its token in access_token"
            )
        return v

    @model_validator(mode="after")
    def _advertise_needs_secret(self) -> HubitatConfig:
        if self.advertise_url and self.webhook_secret is None:
            raise ValueError("advertise_url needs webhook_secret (the POST-URL path carries it)")
        return self
