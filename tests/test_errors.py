"""The error tree: codes and statuses clients see are stable, and a branch's status holds for its children."""

from __future__ import annotations

import re

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
