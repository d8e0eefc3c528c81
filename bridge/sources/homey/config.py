"""The config of one Athom Homey (``type: homey``), with the floors that protect the hub."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from bridge.options import Duration, HttpUrl, HubConfigBase, Model, SecretField, TlsOptions, at_least, shown_url

ATHOM_API = "https://api.athom.com"
ATHOM_ACCOUNTS = "https://accounts.athom.com"


class CloudOptions(Model):
    """The Athom cloud route (homey.md 6.2): the OAuth client and the endpoints (changed only for tests).

    ``client_id``/``client_secret`` are an Athom API client (https://tools.developer.homey.app/api/clients);
    ``hubbridge auth homey`` stores them with the refresh token when they are given there instead.
    """

    client_id: str | None = None
    client_secret: SecretField | None = None
    api_url: HttpUrl = ATHOM_API
    accounts_url: HttpUrl = ATHOM_ACCOUNTS
    redirect_uri: str = "http://localhost/oauth2/callback"


class HomeyConfig(HubConfigBase):
    """One Homey: an API key (Homey Pro 2023, Pro mini, Self-Hosted Server) or the Athom cloud login."""

    type: Literal["homey"]
    # http://<ip>, https://<ip-with-dashes>.homey.homeylocal.com or https://<cloud-id>.connect.athom.com.
    url: HttpUrl
    # None: the cloud login stored in state_dir by `hubbridge auth homey` is used.
    api_key: SecretField | None = None
    cloud: CloudOptions = CloudOptions()
    realtime: bool = True
    variables: bool = True
    poll_interval: Annotated[Duration, at_least(10, "a full poll is heavy for the hub; 5m is plenty")] = 300.0
    # While realtime is live, polls only reconcile: this often (and after every reconnect).
    reconcile_interval: Annotated[Duration, at_least(60, "the live stream brings changes; polls only audit it")] = 900.0
    max_concurrency: int = Field(default=2, ge=1, le=8)
    request_timeout: Annotated[Duration, at_least(1, "a busy hub needs time to answer")] = 15.0
    backoff_max: Annotated[Duration, at_least(1, "retrying a failing hub faster makes it fail longer")] = 300.0
    # No realtime frame for this long: the bridge asks the hub something over the socket; no answer is a dead stream.
    realtime_timeout: Annotated[Duration, at_least(1, "each dead-stream verdict costs a reconnect and a poll")] = 120.0
    # The Homey id (24 hex characters); learned from the ping's X-Homey-ID header when not given.
    homey_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{24}$")
    tls: TlsOptions = TlsOptions()

    @field_validator("url")
    @classmethod
    def _hub_address_only(cls, v: str) -> str:
        scheme, _, rest = v.partition("://")
        host, slash, _path = rest.partition("/")
        if slash or "?" in host or "#" in host:
            raise ValueError(
                f"expected only the Homey's address, like {scheme}://{host.split('?')[0]}, got {shown_url(v)!r}"
            )
        return v
