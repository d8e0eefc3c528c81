"""Hubitat Elevation: Maker API polling, the ``/eventsocket`` stream and Maker API's POST-URL webhook."""

from bridge.sources.hubitat.config import HubitatConfig
from bridge.sources.hubitat.hub import HubitatSource
from bridge.sources.hubitat.values import MOMENTARY

__all__ = ["MOMENTARY", "HubitatConfig", "HubitatSource"]
