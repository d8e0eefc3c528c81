"""Hub JSON text in, Python values out, whatever the hub (or anyone who can reach the port) sends.

Every source parses hub answers with :func:`loads` (a whole text) or :func:`raw_decode` (one value of a stream of
them): a value or a :class:`NotJson` refusal, never NaN or Infinity, never a lone surrogate, never a
RecursionError. Shared by the hub families (Hubitat, Homey): the rules are JSON's and our event contract's, not a
hub's.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from bridge.events import MAX_DEPTH, clean_text

# A JSON escape of a UTF-16 surrogate: only then can decoding produce a lone one, so only then is cleaning needed.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]|\\u[dD][c-fC-F]")


def _constant(name: str) -> str:
    # NaN, Infinity and -Infinity are not JSON; the hub's Groovy JSON writer can still produce them. Kept as the
    # text they are, so one odd value stays one odd value instead of failing everything parsed with it.
    return name


def _float(literal: str) -> float | str:
    # A number too large for a float (1e400, 400 digits) would parse as Infinity: kept as its text, like the constants.
    number = float(literal)
    return number if math.isfinite(number) else literal


def _int(literal: str) -> int | str:
    # Python refuses to convert integers of more than 4300 digits (a ValueError that is no JSONDecodeError): kept as
    # the text, too. Only the retry decoder has this hook, so ordinary integers stay on the C fast path.
    try:
        return int(literal)
    except ValueError:
        return literal


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float)
_LONG_INTS = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


class NotJson(ValueError):
    """The text is not JSON the bridge can use; ``str()`` says why in a few words."""


def clean(value: Any, depth: int = 0) -> Any:
    """``value`` with every string made valid Unicode (lone surrogates -> U+FFFD); nesting is bounded."""
    if isinstance(value, str):
        return clean_text(value)
    if depth > MAX_DEPTH:
        raise NotJson(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {clean_text(k): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value]
    return value


# Hub JSON is a few levels deep (a device, its attributes, a value). Deeper than this is refused when parsed, so no
# later code (a log line's repr, an event's encoding) ever walks a structure near Python's recursion limit.
MAX_PARSE_DEPTH = 64


def _check_depth(value: Any) -> None:
    """Raise NotJson if ``value`` nests deeper than MAX_PARSE_DEPTH (iteratively: no recursion of our own)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_PARSE_DEPTH:
            raise NotJson(f"nested deeper than {MAX_PARSE_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


# What JSON counts as white space around a value (json's own definition; str.strip() would take more).
_WHITESPACE = re.compile(r"[ \t\n\r]+")


def _skip_space(text: str, pos: int) -> int:
    space = _WHITESPACE.match(text, pos)
    return space.end() if space else pos


def loads(text: str) -> Any:
    """Parse hub JSON text. Raises :class:`NotJson` for anything that is not usable JSON (never RecursionError)."""
    try:
        value, end = raw_decode(text, _skip_space(text, 0))
        end = _skip_space(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        raise NotJson(str(exc)) from None
    return value


def raw_decode(text: str, pos: int) -> tuple[Any, int]:
    """One JSON value of ``text`` starting at ``pos`` and where it ends (for frames holding several objects).

    Raises ``json.JSONDecodeError`` when the text there is not (yet) JSON, :class:`NotJson` when it never will be.
    """
    try:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            raise
        except ValueError:
            # An integer over Python's digit limit (int() refuses it): decode again, keeping such integers as text.
            value, end = _LONG_INTS.raw_decode(text, pos)
    except RecursionError:
        raise NotJson("nested too deeply") from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise NotJson(str(exc)) from None
    # Only text with brackets enough to nest deeply is walked (a frame is a flat object, a POST-URL body has two).
    if text.count("[", pos, end) + text.count("{", pos, end) > 8:
        _check_depth(value)
    # A plain substring test first: most texts have no \u escape at all.
    if text.find("\\u", pos, end) >= 0 and _SURROGATE_ESCAPE.search(text, pos, end):
        value = clean(value)
    return value, end
