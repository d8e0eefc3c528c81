"""hubbridge: durable bridge from smart-home hubs to Splunk HEC, webhooks and JSON-lines files."""

__version__ = "0.1.0"
