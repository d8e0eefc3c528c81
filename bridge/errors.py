"""One error hierarchy for the whole bridge, rooted at :class:`BridgeError`.

::

    BridgeError
    ├── ConfigError            the config file is invalid (exit 2)
    ├── EnvironmentProblem     the machine is not as the config needs it (exit 1): state_dir, listen port...
    │   ├── StateDirError      state_dir missing, not a directory, not writable, owned by another user
    │   ├── StateDirLocked     another hubbridge uses the same state_dir
    │   └── ListenError        the listen address cannot be bound
    ├── JournalError           the journal could not be read or written
    │   └── JournalFull        journal.max_bytes reached; sources hold until sinks catch up
    ├── HubError               a hub could not be talked to (``hub`` names it)
    │   ├── HubAuthError       the hub refused our credentials; retrying alone will not fix it
    │   ├── HubUnavailable     unreachable, overloaded or starting up: back off and retry
    │   └── HubProtocolError   the answer is not what the protocol promises (HTML page, bad JSON)
    └── SinkError              a sink failed in a way the delivery loop does not classify on its own

Callers catch the narrowest class they can act on; anything else is a bug. Messages are written for the operator
reading one log line: what failed, where, and how to fix it; they never carry a secret.
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


class EnvironmentProblem(BridgeError):
    """Something outside the config file is not as the bridge needs it; the message says how to fix it."""


class StateDirError(EnvironmentProblem):
    """``state_dir`` cannot be used: missing, not a directory, not writable, or holding files of another user."""


class StateDirLocked(EnvironmentProblem):
    """Another hubbridge process holds the lock on the same ``state_dir``."""


class ListenError(EnvironmentProblem):
    """The ``listen`` address cannot be bound (in use, not an address of this machine, no permission)."""


class JournalError(BridgeError):
    """The journal could not be read or written."""


class JournalFull(JournalError):
    """The journal reached ``journal.max_bytes``; sources hold until sinks catch up."""


class HubError(BridgeError):
    """A hub could not be talked to. ``hub`` names it in the config."""

    def __init__(self, hub: str, message: str) -> None:
        self.hub = hub
        super().__init__(message)


class HubAuthError(HubError):
    """The hub refused our credentials (Hubitat 401 ``invalid_token``). Retrying alone will not fix it."""


class HubUnavailable(HubError):
    """The hub is unreachable, overloaded, or starting up. Back off and retry.

    ``status`` is the HTTP status when the hub answered with one (a run of 5xx is a struggling hub);
    ``retry_after`` the seconds the server asked us to wait (a rate limit's ``Retry-After``), when it said.
    """

    def __init__(self, hub: str, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(hub, message)
        self.status = status
        self.retry_after = retry_after


class HubProtocolError(HubError):
    """The hub answered with something that is not what the protocol promises (HTML page, bad JSON).

    ``status`` is the HTTP status of that answer, when there was one.
    """

    def __init__(self, hub: str, message: str, status: int | None = None) -> None:
        super().__init__(hub, message)
        self.status = status


class SinkError(BridgeError):
    """A sink failed in a way the delivery loop does not classify on its own."""
