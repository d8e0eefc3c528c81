"""Webhook relay sink: the contract object POSTed as JSON, Standard Webhooks signatures, the outcome table."""

from bridge.sinks.webhook.config import WebhookSinkConfig
from bridge.sinks.webhook.sink import WebhookSink

__all__ = ["WebhookSink", "WebhookSinkConfig"]
