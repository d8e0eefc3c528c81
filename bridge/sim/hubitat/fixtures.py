"""Read the simulator's package data in ``data/``: the default device set and the verbatim hub payload fixtures."""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any


@functools.cache
def fixture_text(name: str) -> str:
    """The text of ``bridge/sim/hubitat/data/<name>`` (e.g. ``"postURL_events.json"``), UTF-8 decoded.

    Package data read with :mod:`importlib.resources`, so it works from an installed wheel too. The names are
    those of ``/work/shared/fixtures/hubitat/`` (listed in ``data/FIXTURES.md``) plus ``devices.json``.
    Raises :class:`FileNotFoundError` for an unknown name.
    """
    return importlib.resources.files("bridge.sim.hubitat").joinpath("data", name).read_text("utf-8")


def fixture_json(name: str) -> Any:
    """``fixture_text(name)`` parsed as JSON; a fresh object on every call, so callers may modify it."""
    return json.loads(fixture_text(name))
