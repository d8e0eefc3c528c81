"""The journal: durable event log, cursors, dead letters, last-known values, migrations, disk bound (DESIGN 4)."""

from bridge.journal.lock import StateDirLock, prepare_state_dir
from bridge.journal.schema import SCHEMA_VERSION
from bridge.journal.store import (
    DeadLetter,
    DiskUse,
    Encoded,
    EncodedRecent,
    EncodedState,
    FilterRow,
    Journal,
    Recent,
    Record,
    SinkSpec,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "DiskUse",
    "Encoded",
    "EncodedRecent",
    "EncodedState",
    "FilterRow",
    "Journal",
    "Recent",
    "Record",
    "SinkSpec",
    "StateDirLock",
    "prepare_state_dir",
]
