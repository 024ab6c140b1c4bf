"""The ref rules the service applies (`check_ref`) and the pattern the OpenAPI schema states agree."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binder_service.errors import InvalidSpec
from binder_service.providers.git.provider import REF_PATTERN, check_ref

CASES = [
    *["HEAD", "main", "feature/x", "v1.0", "ü-branch", "a@b", "@", "a.lock/b", "x-", "1a2b3c"],
    *["-x", "/x", "x/", "x.", ".x", "x.lock", "a..b", "a@{b", "a//b", "a b", "a\tb", "a\nb", "x\n"],
    *["a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a\x7fb", "a\x00b"],
]


def accepted(ref: str) -> bool:
    try:
        check_ref(ref)
    except InvalidSpec:
        return False
    return True


def test_the_pattern_and_the_rules_agree_on_the_table() -> None:
    assert [re.fullmatch(REF_PATTERN, ref) is not None for ref in CASES] == [accepted(r) for r in CASES]
    assert sum(accepted(r) for r in CASES) == 10


@given(st.text(alphabet=st.sampled_from("ab./-@{}~^:?*[\\ \n\x7fük"), min_size=1, max_size=12))
def test_the_pattern_and_the_rules_agree(ref: str) -> None:
    assert (re.fullmatch(REF_PATTERN, ref) is not None) == accepted(ref)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (scripts/bootstrap.sh installs it)")
def test_a_javascript_engine_reads_the_pattern_the_same_way() -> None:
    """JSON Schema patterns are ECMA-262 regular expressions: what generated clients and validators use."""
    script = (
        "let s = ''; process.stdin.on('data', (d) => (s += d)).on('end', () => {"
        " const {pattern, cases} = JSON.parse(s); const p = new RegExp(pattern);"
        " console.log(JSON.stringify(cases.map((c) => p.test(c)))); });"
    )
    node = subprocess.run(
        ["node", "-e", script],
        input=json.dumps({"pattern": REF_PATTERN, "cases": CASES}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 0, node.stderr
    assert json.loads(node.stdout) == [accepted(r) for r in CASES]
