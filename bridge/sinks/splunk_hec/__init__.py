"""Splunk HTTP Event Collector sink: envelopes, the code table, indexer acknowledgement, the health check."""

from bridge.sinks.splunk_hec.config import SplunkHecSinkConfig
from bridge.sinks.splunk_hec.sink import SplunkHecSink, in_flight

__all__ = ["SplunkHecSink", "SplunkHecSinkConfig", "in_flight"]
