"""structlog set-up: JSON lines when not on a terminal (journald), readable console otherwise (DESIGN 7)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from bridge.options import KNOWN_SECRETS

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: no configured secret ever reaches a log line, whatever code logged it."""
    if not KNOWN_SECRETS:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str):
            for secret in KNOWN_SECRETS:
                if secret and secret in value:
                    value = value.replace(secret, "********")
            event_dict[key] = value
    return event_dict


# No value in a log line is longer than this: a hub can send a 200 000-character device id, and one line must
# stay one readable line.
MAX_LOG_VALUE = 1000


def truncate_values(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Cut every long text in a log line, saying how long it was (last line of defence; callers shorten too)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and len(value) > MAX_LOG_VALUE:
            event_dict[key] = f"{value[:MAX_LOG_VALUE]}... ({len(value)} characters)"
    return event_dict


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            truncate_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library; keep their warnings, in the same stream.
    logging.basicConfig(level=logging.WARNING, stream=out, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)
