#!/usr/bin/env python3
"""Run the blocks of docs/operations.md marked ``<!-- ci: run -->``, as written, on this (throwaway) machine.

Two substitutions only: ``sudo`` is dropped when already root (a fresh machine may not have it), and the package
is installed from this checkout instead of PyPI (``pip install ... hubbridge`` -> ``pip install ... <checkout>``).
Prints the exposure figure and the verify result at the end. Needs root: it installs to /opt and /etc.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- ci: run -->\s*```sh\n(.*?)```", re.DOTALL)


def main() -> int:
    if os.geteuid() != 0:
        print("guide: not root; skipped (it installs to /opt/hubbridge and /etc/hubbridge)")
        return 0
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    blocks = BLOCK.findall(text)
    assert blocks, "no <!-- ci: run --> blocks in docs/operations.md"
    for n, block in enumerate(blocks, 1):
        script = re.sub(r"^sudo ", "", block, flags=re.MULTILINE).replace("| sudo ", "| ")
        script = re.sub(
            r"pip install (--quiet (?:--upgrade )?)hubbridge$", rf"pip install \g<1>{ROOT}", script, flags=re.M
        )
        print(f"--- guide block {n}:\n{script}", flush=True)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, check=False)
        if done.returncode != 0:
            print(f"guide: block {n} failed (exit {done.returncode})", file=sys.stderr)
            return 1
    print("guide: every block ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
