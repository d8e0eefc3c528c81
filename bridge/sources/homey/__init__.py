"""Athom Homey: the Web API (API keys or the Athom cloud login), Socket.IO realtime and Logic variables."""

from bridge.sources.homey.config import HomeyConfig
from bridge.sources.homey.hub import HomeySource

__all__ = ["HomeyConfig", "HomeySource"]
