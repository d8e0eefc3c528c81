"""Sources: one package per hub family, registered here by the ``type`` its config uses (one line each)."""

from bridge.sources.base import Source
from bridge.sources.homey import HomeySource
from bridge.sources.hubitat import HubitatSource
from bridge.sources.nats import NatsSource

SOURCES: dict[str, type[Source]] = {source.type_name: source for source in (HubitatSource, HomeySource, NatsSource)}

__all__ = ["SOURCES", "Source"]
