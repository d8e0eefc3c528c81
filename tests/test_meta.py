"""The test suite's own rules: every test says, in one docstring, what behaviour it proves."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_test_has_a_docstring() -> None:
    """Every test function carries a docstring naming the behaviour a user would notice."""
    missing = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
            if is_test and not ast.get_docstring(node):
                missing.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert not missing, f"{len(missing)} tests without a docstring: {missing[:10]}"
