"""Long fuzz run over every Hubitat input parser: the generators of tests/sources/hubitat/test_fuzz.py, for longer.

Run:  python bench/fuzz_hubitat.py --seconds 60 --seed 1

Round-robin until the time is up: one eventsocket session (a dozen messages through one FrameParser, then their
frames through ``pushed``, typing, the diff and ``encode_event``), a batch of POST-URL bodies (``post_content``,
``pushed``, typing, encoding) and one set of Maker API answers (``MakerApi.get``, ``TypeBook.learn``,
``HubitatSource.poll``, ``coerce`` under every dataType, encoding). The properties checked are those of the test
module's docstring; on top, an input that takes longer than ``--slow`` seconds is a failure (the parsers run on the
bridge's event loop, so a slow input stalls every hub and sink).

Prints the inputs per parser, the events encoded and refused, the slowest input of each parser, peak memory
(tracemalloc's peak of traced allocations unless ``--no-tracemalloc``, and the process's peak RSS) and every
failure with its input (truncated) and traceback. The same seed gives the same inputs in the same order, so a
failure is reproduced by running again with that seed for at least as long. Exit code 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sources.hubitat.test_fuzz import Failure, Fuzzer

# Work per round: one eventsocket session, this many POST bodies, one set of Maker API answers (about equal time).
POSTS_PER_ROUND = 10


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run(fuzzer: Fuzzer, seconds: float, slow: float) -> None:
    deadline = time.monotonic() + seconds
    next_report = time.monotonic() + 30
    while time.monotonic() < deadline:
        for name, step in (
            ("eventsocket", lambda: fuzzer.eventsocket(1)),
            ("posturl", lambda: fuzzer.posturl(POSTS_PER_ROUND)),
            ("maker", lambda: fuzzer.maker(1)),
        ):
            before = len(fuzzer.failures)
            started = time.perf_counter()
            await step()
            took = time.perf_counter() - started
            if took > slow and len(fuzzer.failures) == before:
                shown = fuzzer.slowest.get(name, (0.0, "?"))[1]
                fuzzer.failures.append(
                    Failure(name, fuzzer.inputs[name], shown, f"too slow: {took:.2f} s (> {slow} s)")
                )
        if time.monotonic() >= next_report:
            next_report += 30
            done = ", ".join(f"{k} {v}" for k, v in sorted(fuzzer.inputs.items()))
            print(f"  ... {done}; {len(fuzzer.failures)} failures", flush=True)


def signature(f: Failure) -> str:
    """The failure's kind: its parser, the exception and the end of its message, numbers and quotes elided."""
    last = f.error.strip().splitlines()[-1] if f.error.strip() else "?"
    kind, _, message = last.partition(": ")
    message = message.rsplit(": ", 1)[-1]  # a property's message ends with what broke, after where it broke
    message = re.sub(r"'.*'|\d+", "_", message)[:120]
    return f"{f.parser}: {kind.rsplit('.', 1)[-1]}: {message}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow", type=float, default=1.0, help="seconds one input may take before it is a failure")
    parser.add_argument("--big", type=float, default=0.02, help="chance that a mutation uses a big token")
    parser.add_argument("--show", type=int, default=3, help="failures shown in full per kind")
    parser.add_argument("--dump", type=Path, help="write the first failing input of each kind here, whole (repr)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="faster; peak RSS only")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, seed {args.seed}, {args.seconds:g} s", flush=True)
    if not args.no_tracemalloc:
        tracemalloc.start()
    fuzzer = Fuzzer(args.seed, big=args.big, keep_inputs=args.dump is not None)
    started = time.monotonic()
    asyncio.run(run(fuzzer, args.seconds, args.slow))
    wall = time.monotonic() - started
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if tracemalloc.is_tracing() else None

    print(f"ran {wall:.1f} s")
    for name in ("eventsocket", "eventsocket messages", "posturl", "maker"):
        unit = "sessions" if name == "eventsocket" else "inputs"
        print(f"  {name:22} {fuzzer.inputs[name]:>9,} {unit}")
    for name, count in sorted(fuzzer.events.items()):
        print(f"  events {name:15} {count:>9,}")
    for name, (took, shown) in sorted(fuzzer.slowest.items()):
        print(f"  slowest {name:14} {took * 1000:>9.1f} ms  {shown[:150]}")
    memory = f"peak RSS {rss_peak_mb():.0f} MiB"
    if traced is not None:
        memory = f"tracemalloc peak {traced:.1f} MiB, " + memory
    print(f"  memory: {memory}")

    kinds: Counter[str] = Counter(signature(f) for f in fuzzer.failures)
    print(f"failures: {len(fuzzer.failures)} ({len(kinds)} kinds)")
    for kind, count in kinds.most_common():
        print(f"  {count:>6}  {kind}")
    shown: Counter[str] = Counter()
    for f in fuzzer.failures:
        kind = signature(f)
        shown[kind] += 1
        if args.dump is not None and shown[kind] == 1 and f.raw is not None:
            args.dump.mkdir(parents=True, exist_ok=True)
            (args.dump / f"{f.parser}-{f.index}.repr").write_text(repr(f.raw) + "\n", encoding="utf-8")
        if shown[kind] > args.show:
            continue
        print(f"\n--- {kind} ({kinds[kind]} in all) --- {f.parser} input #{f.index}:\n{f.input}\n{f.error}")
    return 1 if fuzzer.failures else 0


if __name__ == "__main__":
    sys.exit(main())
