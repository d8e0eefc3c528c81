"""structlog set-up: JSON lines when not on a terminal (journald), readable console otherwise (DESIGN 7)."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog

from bridge.options import KNOWN_SECRETS

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@functools.lru_cache(maxsize=256)
def _forms(secret: str) -> tuple[str, ...]:
    """A secret as it may appear in text: as is, and URL-quoted (a webhook secret is one segment of a URL path)."""
    return tuple(dict.fromkeys(f for f in (secret, quote(secret, safe=""), quote(secret), quote_plus(secret)) if f))


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: no configured secret ever reaches a log line, whatever code logged it."""
    if not KNOWN_SECRETS:
        return event_dict
    forms = [f for secret in list(KNOWN_SECRETS) if secret for f in _forms(secret)]
    for key, value in event_dict.items():
        if isinstance(value, str):
            for form in forms:
                if form in value:
                    value = value.replace(form, "********")
            event_dict[key] = value
    return event_dict


# No value in a log line is longer than this: a hub can send a 200 000-character device id, and one line must
# stay one readable line.
MAX_LOG_VALUE = 1000
# A traceback (only ever logged for a bug, rate-limited) keeps its head and its tail, where the error is.
MAX_TRACEBACK = 8000
_TRACEBACK_KEYS = frozenset({"exception", "stack"})
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")


def truncate_values(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """One line per event: newlines in values become spaces and long texts are cut, saying how long they were.

    (Last line of defence; callers shorten too.) Tracebacks keep their lines, cut in the middle if huge.
    """
    for key, value in event_dict.items():
        if not isinstance(value, str):
            continue
        if key in _TRACEBACK_KEYS:
            if len(value) > MAX_TRACEBACK:
                cut = len(value) - MAX_TRACEBACK
                event_dict[key] = f"{value[:2000]}\n... ({cut} characters cut) ...\n{value[-(MAX_TRACEBACK - 2000) :]}"
            continue
        if "\n" in value or "\r" in value:
            value = _NEWLINES.sub(" ", value).strip()
        if len(value) > MAX_LOG_VALUE:
            value = f"{value[:MAX_LOG_VALUE]}... ({len(value)} characters)"
        event_dict[key] = value
    return event_dict


# syslog priorities (sd-daemon(3)): journald reads a "<N>" prefix on each line written to it (SyslogLevelPrefix=).
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}


def on_journald(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal's stream socket: ``$JOURNAL_STREAM`` names its device and inode."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def with_priority(renderer: Any) -> Any:
    """``renderer``, each line prefixed with its syslog priority, so `journalctl -p err` shows exactly errors."""

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        level = str(event_dict.get("level") or name).lower()
        return f"<{PRIORITIES.get(level, 6)}>{renderer(logger, name, event_dict)}"

    return render


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if console else structlog.processors.JSONRenderer()
    )
    if on_journald(out):
        renderer = with_priority(renderer)
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            redact_secrets,
            truncate_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (aiohttp, asyncio); keep their warnings, in the same stream and
    # format, through the same redaction: an exception's text can carry a URL with a token in it.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level, stamp],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            truncate_values,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)


_HANDLER = "hubbridge"
