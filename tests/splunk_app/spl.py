"""Just enough SPL to know which fields a search reads: macros expanded, pipeline split, each command's fields.

It covers the commands the hubbridge app's searches use and refuses anything else, so a new command in a
dashboard gets a rule here before its fields go unchecked. Fields a command creates (``eval x=``, ``stats ... as
x``, the by-fields of a ``stats``) are known to the commands after it; a reporting command (stats, timechart,
chart, tstats, mstats) replaces the known set with what it outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SPLUNK_FIELDS = frozenset(
    {"_time", "_raw", "index", "sourcetype", "host", "eventtype", "tag", "linecount", "splunk_server"}
)
# Functions and words of eval/where expressions that look like identifiers.
_EXPR_WORDS = frozenset({"AND", "OR", "NOT", "LIKE", "IN", "true", "false", "TRUE", "FALSE"})
_AGG = re.compile(r"(?P<func>\w+)(?:\((?P<arg>[^)]*)\))?(?:\s+as\s+(?P<alias>\w+))?", re.IGNORECASE)
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z_][\w.]*\*?(?=\s*\()|[A-Za-z_][\w.]*|\d+(?:\.\d+)?|!=|==|<=|>=|[=<>()*,+\-/.]'
)


def read_conf(path: Path) -> dict[str, dict[str, str]]:
    """A Splunk .conf file: stanzas of ``key = value``, a trailing backslash continuing the value on the next line."""
    stanzas: dict[str, dict[str, str]] = {}
    current: dict[str, str] = stanzas.setdefault("default", {})
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            current = stanzas.setdefault(line.strip()[1:-1], {})
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + "\n" + lines[i]
            i += 1
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return stanzas


def expand_macros(query: str, macros: dict[str, str]) -> str:
    for _ in range(10):
        new = re.sub(r"`(\w+)`", lambda m: macros[m.group(1)], query)
        if new == query:
            return new
        query = new
    raise ValueError(f"macros nested too deep in {query!r}")


def split_pipeline(query: str) -> list[str]:
    """The commands of a search: split at ``|`` outside quotes and brackets."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(query):
        if quote:
            if ch == quote and query[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(query[start:i])
            start = i + 1
    parts.append(query[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass
class Usage:
    """What one search reads: ``fields`` (field -> commands), plus the values it compares some fields with."""

    fields: dict[str, set[str]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # fields used where no command made them and none is known
    values: dict[str, set[str]] = field(default_factory=dict)  # kind=..., event_source=... comparisons
    metrics: set[str] = field(default_factory=set)  # mstats metric names
    problems: list[str] = field(default_factory=list)

    def use(self, name: str, command: str, known: set[str]) -> None:
        self.fields.setdefault(name, set()).add(command)
        if name not in known:
            self.unknown.append(f"{name} (in {command})")


def _expr_fields(expr: str) -> list[str]:
    out = []
    tokens = _TOKEN.findall(expr)
    for i, tok in enumerate(tokens):
        if not re.match(r"[A-Za-z_]", tok) or tok in _EXPR_WORDS:
            continue
        if i + 1 < len(tokens) and tokens[i + 1] == "(":
            continue  # a function name
        out.append(tok)
    return out


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _search_terms(text: str, usage: Usage, known: set[str], command: str) -> None:
    """Field comparisons of a search (or a tstats/mstats where clause): ``f=v``, ``f!=v``, ``f IN (a, b)``."""
    for m in re.finditer(r'([A-Za-z_][\w.]*)\s*(!=|=|<=|>=|<|>)\s*("(?:[^"\\]|\\.)*"|[^\s()]+)', text):
        name, value = m.group(1), m.group(3).strip('"')
        usage.use(name, command, known)
        usage.values.setdefault(name, set()).add(value)
    for m in re.finditer(r"([A-Za-z_][\w.]*)\s+IN\s*\(([^)]*)\)", text):
        usage.use(m.group(1), command, known)
        usage.values.setdefault(m.group(1), set()).update(v.strip().strip('"') for v in m.group(2).split(","))


def _aggregations(text: str, usage: Usage, known: set[str], command: str) -> set[str]:
    """``count``, ``f(x) as y`` ...: uses the arguments, returns the output names."""
    out: set[str] = set()
    for m in _AGG.finditer(text):
        func, arg, alias = m.group("func"), m.group("arg"), m.group("alias")
        if func.lower() == "as" or (alias is None and arg is None and func.lower() not in ("count", "c")):
            if func.lower() != "as" and func not in out:
                usage.problems.append(f"{command}: cannot read aggregation {func!r}")
            continue
        if arg:
            if arg.startswith("eval("):
                usage.problems.append(f"{command}: eval inside an aggregation is not checked; use eval first")
            else:
                usage.use(arg.strip(), command, known)
        out.add(alias or (f"{func}({arg})" if arg else func))
    return out


def analyse(
    query: str, macros: dict[str, str], known: Iterable[str], *, indexed: Iterable[str], dimensions: Iterable[str]
) -> Usage:
    """The fields ``query`` reads, with those not in ``known`` (or ``indexed`` for tstats) listed as unknown."""
    usage = Usage()
    text = expand_macros(query, macros)
    text = re.sub(r"\$[\w.]+\$", "1", text)  # a dashboard token stands for a value
    available = set(known) | SPLUNK_FIELDS
    for n, part in enumerate(split_pipeline(text)):
        name, _, rest = part.partition(" ")
        name = name.lower()
        if n == 0 and name not in ("tstats", "mstats"):
            name, rest = "search", part
        if name == "search":
            _search_terms(rest, usage, available, "search")
        elif name in ("tstats", "mstats"):
            m = re.match(r"(?P<aggs>.*?)\bwhere\b(?P<where>.*?)(?:\bby\b(?P<by>.*))?$", rest, re.IGNORECASE | re.S)
            if m is None:
                usage.problems.append(f"{name}: no where clause")
                continue
            allowed = {"index", "sourcetype", "_time"} | (
                set(indexed) if name == "tstats" else set(dimensions) | {"metric_name", "_value"}
            )
            aggs = re.sub(r"\w+=\S+", "", m.group("aggs"))  # prestats=true
            where = re.sub(r"\bspan=\S+", "", m.group("where"))
            by = re.sub(r"\bspan=\S+", "", m.group("by") or "")
            if name == "tstats":
                outputs = _aggregations(aggs, usage, allowed | {"_time"}, name)
            else:
                outputs = set()
                for a in _AGG.finditer(aggs):
                    if a.group("arg"):
                        if a.group("arg") != "_value":
                            usage.metrics.add(a.group("arg"))
                        outputs.add(a.group("alias") or a.group("arg"))
                names = re.search(r"\bmetric_name\s+IN\s*\(([^)]*)\)", where, re.IGNORECASE)
                usage.metrics |= {n.strip() for n in names.group(1).split(",")} if names else set()
            _search_terms(where, usage, allowed, name)
            groups = [f for f in re.split(r"[\s,]+", by) if f]
            for f in groups:
                usage.use(f, name, allowed)
            available = outputs | set(groups) | {"_time"}
        elif name in ("stats", "eventstats", "streamstats", "timechart", "chart", "top"):
            rest = re.sub(r"\b(span|limit|current|window|useother|usenull)=\S+", "", rest)
            m = re.match(r"(?P<aggs>.*?)(?:\bover\b(?P<over>.*?))?(?:\bby\b(?P<by>.*))?$", rest, re.IGNORECASE | re.S)
            assert m is not None
            groups = [f for f in re.split(r"[\s,]+", (m.group("over") or "") + " " + (m.group("by") or "")) if f]
            if name == "top":
                groups += [f for f in re.split(r"[\s,]+", m.group("aggs")) if f]
                outputs = {"count", "percent"}
            else:
                outputs = _aggregations(m.group("aggs"), usage, available, name)
            for f in groups:
                usage.use(f, name, available)
            if name in ("eventstats", "streamstats"):
                available = available | outputs
            else:
                available = outputs | set(groups) | ({"_time"} if name == "timechart" else set())
        elif name == "eval":
            for assignment in _split_top(rest):
                target, _, expr = assignment.partition("=")
                for f in _expr_fields(expr):
                    usage.use(f, "eval", available)
                available = available | {target.strip()}
        elif name == "where":
            for f in _expr_fields(rest):
                usage.use(f, "where", available)
        elif name in ("table", "fields", "sort", "dedup", "filldown"):
            words = [w for w in re.split(r"[\s,]+", rest) if w and not w.isdigit()]
            for w in words:
                w = w.lstrip("+-")
                if w:
                    usage.use(w, name, available)
            if name in ("table", "fields") and not rest.lstrip().startswith("-"):
                available = {w.lstrip("+") for w in words}
        elif name == "rename":
            for m2 in re.finditer(r"([\w.]+)\s+as\s+([\w.]+)", rest, re.IGNORECASE):
                usage.use(m2.group(1), name, available)
                available = (available - {m2.group(1)}) | {m2.group(2)}
        elif name == "head":
            pass
        else:
            usage.problems.append(f"command {name!r} is not known to tests/splunk_app/spl.py; add its rule there")
    return usage
