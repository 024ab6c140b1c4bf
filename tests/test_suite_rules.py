"""The rules docs/contributing.md states for the tests hold: helpers come only from tests/support/, the
chart tier needs nothing outside the process, and every test file a page names exists (issue 17)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"


def _imported(source: str, package: str) -> list[str]:
    """Every module `source` (a module of `package`) imports, relative imports made absolute."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            # `from tests.x import y` may import the module tests.x.y: name both.
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return found


def _borrowed(source: str, package: str) -> set[str]:
    """The modules of tests/ outside tests/support/ that `source` imports."""
    return {
        name
        for name in _imported(source, package)
        if name.split(".")[:2] != ["tests", "support"]
        and name.startswith("tests.")
        and (ROOT / Path(*name.split("."))).with_suffix(".py").exists()
    }


def test_no_test_module_imports_from_another() -> None:
    """Helpers and constants come from tests/support/ only: tests/api/test_builds.py took `build_url` from
    test_binderhub.py, three API tests their constants from tests/api/conftest.py, the pairing tests a
    helper from the chart's conftest.py, a build test the chart's helpers."""
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parent.parts)
        if borrowed := _borrowed(path.read_text(), package):
            offenders[str(path.relative_to(TESTS))] = sorted(borrowed)
    assert offenders == {}


def test_the_import_rule_sees_what_it_looks_for() -> None:
    # Relative imports of a sibling and absolute imports of another test module count; tests/support not.
    source = "from . import test_chart\nfrom .. import conftest\nfrom tests.api.conftest import served\n"
    source += "import tests.support.net\nfrom tests.support import chart\nfrom tests import support\n"
    assert _borrowed(source, "tests.chart") == {
        "tests.chart.test_chart",
        "tests.conftest",
        "tests.api.conftest",
    }


TIERS = ("docker", "hub", "browser")  # the markers of tiers that need the world


def test_the_chart_tier_needs_no_world() -> None:
    """The chart tier is offline (Helm SDK and kubernetes-validate): the service image's test, which
    builds it with dockerd, lives in tests/release/test_service_image.py."""
    marked = [
        f"{path.name}:{node.lineno}"
        for path in sorted((TESTS / "chart").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in TIERS
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    ]
    assert marked == []


def test_every_test_path_the_docs_name_exists() -> None:
    """contributing.md named `tests/providers/test_<name>.py` for every provider; most have none."""
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    named = {token for page in pages for token in re.findall(r"`(tests/[^`\s]*)`", page.read_text())}
    assert named  # the pages do name some
    missing = sorted(token for token in named if not list(ROOT.glob(token.rstrip("/"))))
    assert missing == []
