"""The config of a webhook relay sink (``type: webhook``); every key is documented in docs/webhooks.md."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bridge.options import Duration, HttpUrl, RetryOptions, SecretField, SinkConfigBase, Size, TlsOptions
from bridge.sinks.webhook.signing import secret_key

# RFC 9110 token characters: what a header name may hold (aiohttp would refuse anything else at the first request).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the sink sets itself: a user value would break signing or framing.
RESERVED_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host"}
)


class WebhookSinkConfig(SinkConfigBase):
    """An HTTP endpoint that receives each change (Node-RED, Home Assistant, a relay service)."""

    type: Literal["webhook"]
    url: HttpUrl
    # A Standard Webhooks secret (whsec_ + base64); unset: requests go unsigned (`check` says so).
    secret: SecretField | None = None
    # While a secret rotates: requests carry a signature with each, so receivers on either secret accept them.
    previous_secret: SecretField | None = None
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    # Extra request headers; every value is treated as a secret (an Authorization header often is one).
    headers: dict[str, SecretField] = Field(default_factory=dict)
    timeout: Duration = 10.0
    # false: one event per request (the contract object); true: a JSON array of up to max_events per request.
    batch: bool = False
    max_events: int = Field(default=100, ge=1, le=10_000)
    max_bytes: Size = 1024 * 1024
    max_wait: Duration = 0.5
    # Requests on their way at once; events of one device and attribute still arrive in order.
    max_in_flight: int = Field(default=4, ge=1, le=64)
    retry: RetryOptions = RetryOptions()
    # How long a failing event is retried before it is dead-lettered; unset: for ever (nothing is dropped).
    max_retry_time: Duration | None = None
    tls: TlsOptions = TlsOptions()

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        # The URL goes into log lines and /healthz: credentials in it would leak there.
        if "@" in v.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError(
                "the url holds user:password@ credentials; send them as a header instead "
                "(headers: {Authorization: ...}), the url then without them"
            )
        return v

    @field_validator("headers")
    @classmethod
    def _header_names(cls, v: dict[str, object]) -> dict[str, object]:
        for name in v:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"the sink sets {name} itself; remove it from headers")
        return v

    @model_validator(mode="after")
    def _secrets(self) -> WebhookSinkConfig:
        if self.previous_secret is not None and self.secret is None:
            raise ValueError("previous_secret needs secret (the new secret requests are signed with)")
        # An inline secret is checked now, by `check`; a file's content when it is read (it may change).
        for key, secret in (("secret", self.secret), ("previous_secret", self.previous_secret)):
            if secret is not None and secret.path is None:
                try:
                    secret_key(secret.get())
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        for name, value in self.headers.items():
            if value.path is None and any(c in value.get() for c in "\r\n\0"):
                raise ValueError(f"the value of header {name} holds a line break or NUL; give it on one line")
        return self

    def check_notes(self) -> list[str]:
        """What `hubbridge check` should tell about this sink although the config is valid."""
        if self.secret is None:
            return [
                f"sink {self.name}: no secret, so requests to the webhook are unsigned and a receiver cannot tell "
                "them from forged ones; set secret (a whsec_... Standard Webhooks secret)"
            ]
        return []
