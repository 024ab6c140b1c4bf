"""The benchmarks borrow helpers from the tests: each name they import must still be there.

Several imports sit inside the functions that need them (a benchmark's rarely run part), so importing a
benchmark does not prove them; a helper renamed in the tests broke `bench/store.py --replicas` unseen.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _borrowed(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from tests... import name` in `path`, wherever it stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tests"
        for alias in node.names
    ]


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_what_a_benchmark_imports_from_the_tests_exists(script: Path) -> None:
    missing = [
        f"{module}.{name}"
        for module, name in _borrowed(script)
        if not hasattr(importlib.import_module(module), name)
    ]
    assert not missing, f"{script.name} imports what the tests no longer have: {missing}"


def test_the_check_sees_imports_inside_functions() -> None:
    names = _borrowed(BENCH / "store.py")
    assert ("tests.store.test_replica_join", "_env") in names  # imported inside join_rounds()
