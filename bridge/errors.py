"""One error hierarchy for the whole bridge, rooted at :class:`BridgeError`.

Callers catch the narrowest class they can act on; anything else is a bug. Messages are written for the
operator reading one log line: they say what failed and where, and never carry a secret.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid. ``str()`` names the file, the key path and what was expected."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid config {file}:\n{lines}" if len(problems) > 1 else f"{file}: {problems[0]}")


class JournalError(BridgeError):
    """The journal could not be read or written."""


class JournalFull(JournalError):
    """The journal reached ``journal.max_bytes``; push sources must hold until sinks catch up."""


class HubError(BridgeError):
    """A hub could not be talked to. ``hub`` names it in the config."""

    def __init__(self, hub: str, message: str) -> None:
        self.hub = hub
        super().__init__(message)


class HubAuthError(HubError):
    """The hub refused our credentials (Hubitat 401 ``invalid_token``). Retrying alone will not fix it."""


class HubUnavailable(HubError):
    """The hub is unreachable, overloaded, or starting up. Back off and retry."""


class HubProtocolError(HubError):
    """The hub answered with something that is not what the protocol promises (HTML page, bad JSON)."""


class SinkError(BridgeError):
    """A sink failed in a way the delivery loop does not classify on its own."""
