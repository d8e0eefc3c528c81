"""Sinks: one module per destination, registered here by the ``type`` its config uses (one line each)."""

from typing import Any

from bridge.options import SinkConfigBase
from bridge.sinks.base import DeliveryOptions, Sink
from bridge.sinks.file import FileSink
from bridge.sinks.mqtt import MqttSink
from bridge.sinks.nats import NatsSink
from bridge.sinks.splunk_hec import SplunkHecSink
from bridge.sinks.webhook import WebhookSink

SINKS: dict[str, type[Sink]] = {
    sink.type_name: sink
    for sink in (
        FileSink,
        MqttSink,
        NatsSink,
        SplunkHecSink,
        WebhookSink,
    )
}


def build_sink(config: SinkConfigBase) -> tuple[Sink, DeliveryOptions]:
    """The sink for ``config`` (a fresh one each call) and the delivery options its config asks for."""
    cls: Any = SINKS[config.type]  # each sink takes its own config model
    return cls(config), cls.delivery_options(config)


__all__ = ["SINKS", "DeliveryOptions", "Sink", "build_sink"]
