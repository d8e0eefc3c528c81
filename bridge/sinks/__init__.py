"""Sinks: one module per destination. :func:`build_sink` maps a sink's config to its implementation."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import FileSinkConfig, SinkConfig, SplunkHecSinkConfig
from bridge.sinks.base import Sink


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the delivery loop drives one sink (see bridge.delivery.Delivery)."""

    max_events: int
    max_bytes: int
    max_wait: float
    retry_initial: float
    retry_max: float
    max_in_flight: int = 1
    send_timeout: float = 120.0


def build_sink(config: SinkConfig) -> tuple[Sink, DeliveryOptions]:
    """The sink for ``config`` and the delivery options its config asks for."""
    if isinstance(config, FileSinkConfig):
        from bridge.sinks.file import FileSink

        return FileSink(config), DeliveryOptions(
            max_events=config.batch.max_events,
            max_bytes=config.batch.max_bytes,
            max_wait=config.batch.max_wait,
            retry_initial=config.retry.initial,
            retry_max=config.retry.max,
        )
    if isinstance(config, SplunkHecSinkConfig):
        from bridge.sinks.splunk_hec import SplunkHecSink, delivery_options

        return SplunkHecSink(config), delivery_options(config)
    raise NotImplementedError(f"no sink implementation for {type(config).__name__}")
