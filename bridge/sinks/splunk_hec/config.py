"""The config of a Splunk HEC sink (``type: splunk_hec``); every key is documented in docs/splunk.md."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bridge.events import FIELDS
from bridge.options import (
    BatchOptions,
    Duration,
    HttpUrl,
    RetryOptions,
    SecretField,
    SinkConfigBase,
    TlsOptions,
)


class SplunkHecSinkConfig(SinkConfigBase):
    """Splunk HTTP Event Collector (docs/splunk.md; protocol notes in shared/reference/splunk_hec.md)."""

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
        base = re.sub(r"/services/collector(/.*)?$", "", v)
        # The URL goes into log lines, /healthz and outcome reasons, so it must not hold a credential (§1.2's
        # https://:token@host form, or ?token=); and the sink appends paths, which a query string would swallow.
        # The messages never repeat the URL: what is in it may be the token.
        if "@" in base.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError(
                "the url holds user:password@ credentials; give the HEC token as token or token_file instead, "
                "and the url as https://host:8088"
            )
        if "?" in base or "#" in base:
            raise ValueError(
                "the url has a query string or fragment; give the HEC base URL only (https://host:8088), and the "
                "token as token or token_file"
            )
        return base

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, v: list[str]) -> list[str]:
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
