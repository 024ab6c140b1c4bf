"""The error tree: codes and statuses clients see are stable, and a branch's status holds for its children."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from binder_service import errors
from binder_service.errors import BinderError, KubeStatus, UpstreamError, error_tree

# What clients saw before the tree was reshaped (issue 13); a change here is an API change.
STABLE = [
    ("BinderError", "internal_error", 500),
    ("InvalidRequest", "invalid_request", 400),
    ("InvalidSpec", "invalid_spec", 400),
    ("InputTooLarge", "input_too_large", 413),
    ("RepoNotAllowed", "repo_not_allowed", 403),
    ("RepoBanned", "repo_banned", 403),
    ("DestinationNotAllowed", "destination_not_allowed", 403),
    ("NotFound", "not_found", 404),
    ("UnknownProvider", "unknown_provider", 404),
    ("RepoNotFound", "repo_not_found", 404),
    ("RefNotFound", "ref_not_found", 404),
    ("BuildNotFound", "build_not_found", 404),
    ("Unauthorized", "unauthorized", 401),
    ("Forbidden", "forbidden", 403),
    ("BuildShared", "build_shared", 409),
    ("TooManyRequests", "too_many_requests", 429),
    ("TooManyBuilds", "too_many_builds", 429),
    ("QuotaExceeded", "quota_exceeded", 429),
    ("UpstreamError", "upstream_error", 502),
    ("HubUnavailable", "hub_unavailable", 503),
    ("RepoUnreachable", "repo_unreachable", 502),
    ("UpstreamTimeout", "upstream_timeout", 504),
    ("RateLimited", "rate_limited", 429),
    ("RegistryUnavailable", "registry_unavailable", 503),
    ("EngineUnavailable", "engine_unavailable", 503),
    ("BuildError", "build_failed", 500),
    ("BuildTimeout", "build_timeout", 504),
    ("BuildCancelled", "build_cancelled", 409),
    ("BuildOwnerGone", "build_owner_gone", 503),
    ("BuildOutOfMemory", "build_out_of_memory", 500),
]

# Server-side branches general enough to have children of other 5xx statuses (a 504 is a failed
# upstream); a too-large request is a bad one. Every other child answers with its branch's very status:
# a refusal (403) is not a malformed request (400), nor an upstream's rate limit (429) a bad gateway.
GENERAL = {500, 502}
REFINES = {(400, 413)}


@pytest.mark.parametrize(("name", "code", "status"), STABLE)
def test_codes_and_statuses_are_stable(name: str, code: str, status: int) -> None:
    cls = getattr(errors, name)
    assert (cls.code, cls.status) == (code, status)


@pytest.mark.parametrize("cls", error_tree()[1:], ids=lambda c: c.__name__)
def test_a_branch_status_holds_for_its_children(cls: type[BinderError]) -> None:
    parent = cls.__mro__[1]
    assert issubclass(parent, BinderError)
    if parent is BinderError:
        return  # the root's 500 is the answer for what nothing more precise describes
    if (parent.status, cls.status) in REFINES:
        return
    if parent.status in GENERAL:
        assert cls.status // 100 == parent.status // 100, f"{cls.__name__} {cls.status} under {parent.status}"
    else:
        assert cls.status == parent.status, (
            f"{cls.__name__} {cls.status} under {parent.__name__} {parent.status}"
        )


def test_codes_are_unique() -> None:
    codes = [c.code for c in error_tree()]
    assert len(codes) == len(set(codes))


def test_the_docstring_draws_theerror_tree() -> None:
    drawn = re.findall(r"(\w+)\s+(\d{3}) (\w+)$", errors.__doc__ or "", re.M)
    assert [(n, c, int(s)) for n, s, c in drawn] == [(c.__name__, c.code, c.status) for c in error_tree()]


def test_a_kubernetes_status_is_an_upstream_error() -> None:
    e = KubeStatus(409, "AlreadyExists", 'pods "x" already exists')
    assert isinstance(e, UpstreamError)
    assert (e.api_status, e.reason, e.status, e.code) == (409, "AlreadyExists", 502, "kubernetes_error")
    assert str(e) == 'pods "x" already exists (HTTP 409)'


SRC = Path(errors.__file__).resolve().parent
# Codes the HTTP layer sends for Starlette's own errors (api/errors.py); docs/conf.py lists them too.
HTTP_LAYER_CODES = {"method_not_allowed", "http_error"}


def _emitted_codes(tree: ast.Module) -> set[str]:
    """String codes a module hands out: `code=`/`error_code=` arguments and `"code": ...` entries, as
    literals or as module constants."""
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }
    places: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("code", "error_code"):
            places.append(node.value)
        elif isinstance(node, ast.Dict):
            places += [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "code"
            ]
    found: set[str] = set()
    for place in places:
        for sub in ast.walk(place):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                found.add(sub.value)
            elif isinstance(sub, ast.Name) and sub.id in constants:
                found.add(constants[sub.id])
    return found


def test_every_code_the_service_sends_has_a_class() -> None:
    """A code written out in the code (a `failed` event of the replica code, a JSON body) is one of the error
    tree's, so the docs' table, generated from the tree, names it (build_owner_gone was missing)."""
    known = {c.code for c in error_tree()} | HTTP_LAYER_CODES
    stray = sorted(
        f"{path.relative_to(SRC)}: {code}"
        for path in SRC.rglob("*.py")
        for code in _emitted_codes(ast.parse(path.read_text(encoding="utf-8")))
        if code not in known
    )
    assert stray == []
