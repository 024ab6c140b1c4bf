"""The spawn form's "Build from repository" section: escaping, parsing, validation."""

from __future__ import annotations

import html

import pytest
from binder_service_hub.form import (
    BuildRequest,
    InvalidBuildRequest,
    build_request,
    options_from_form,
    redact,
    render_form,
)

EVIL = '"><script>alert(1)</script><input value="'


def test_form_has_the_fields_and_is_unchecked_by_default() -> None:
    form = render_form()
    assert 'name="binder_build"' in form
    assert 'name="binder_repo"' in form
    assert 'name="binder_ref"' in form
    assert "Build from repository" in form
    assert " checked" not in form


def test_previous_choices_are_filled_in_escaped() -> None:
    form = render_form({"binder_build": True, "binder_repo": EVIL, "binder_ref": "<b>main</b>"})
    assert "<script>" not in form
    assert "<b>" not in form
    assert html.escape(EVIL, quote=True) in form
    assert "&lt;b&gt;main&lt;/b&gt;" in form
    assert " checked" in form


def test_title_is_escaped() -> None:
    form = render_form(title="<i>Build</i> & run")
    assert "<i>" not in form
    assert "&lt;i&gt;Build&lt;/i&gt; &amp; run" in form


def test_values_that_are_not_text_are_not_rendered() -> None:
    form = render_form({"binder_repo": ["not", "text"], "binder_ref": 42})
    assert "not" not in form.split("Repository URL")[1].split("maxlength")[0]
    assert "42" not in form


@pytest.mark.parametrize(
    ("formdata", "expected"),
    [
        (
            {"binder_build": ["on"], "binder_repo": [" https://github.com/org/repo "], "binder_ref": ["v1"]},
            {"binder_build": True, "binder_repo": "https://github.com/org/repo", "binder_ref": "v1"},
        ),
        (
            {"binder_build": ["on"], "binder_repo": ["git://127.0.0.1/r"], "binder_ref": [""]},
            {"binder_build": True, "binder_repo": "git://127.0.0.1/r"},
        ),
        # Unchecked: the repository is kept (to fill the form next time) but nothing is built.
        ({"binder_repo": ["org/repo"]}, {"binder_build": False, "binder_repo": "org/repo"}),
        ({}, {"binder_build": False}),
    ],
)
def test_options_from_form(formdata: dict[str, list[str]], expected: dict[str, object]) -> None:
    assert options_from_form(formdata) == expected


@pytest.mark.parametrize(
    ("formdata", "message"),
    [
        ({"binder_build": ["on"]}, "Enter the repository"),
        ({"binder_build": ["on"], "binder_repo": ["   "]}, "Enter the repository"),
        ({"binder_build": ["on"], "binder_repo": ["https://x.org/a b"]}, "spaces or control characters"),
        ({"binder_build": ["on"], "binder_repo": ["org/repo"], "binder_ref": ["ma\x00in"]}, "control"),
        ({"binder_build": ["on"], "binder_repo": ["r" * 2049]}, "too long"),
        ({"binder_build": ["on"], "binder_repo": ["org/repo"], "binder_ref": ["r" * 1025]}, "too long"),
        (
            {"binder_build": ["on"], "binder_repo": ["org/repo"], "binder_provider": ["--upload-pack"]},
            "provider",
        ),
    ],
)
def test_bad_form_input_is_refused_with_a_message(formdata: dict[str, list[str]], message: str) -> None:
    with pytest.raises(InvalidBuildRequest, match=message):
        options_from_form(formdata)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, None),
        ({"image": "x"}, None),
        ({"binder_repo": "org/repo"}, BuildRequest("org/repo", "HEAD")),  # the API: a repository asks
        (
            {"binder_repo": "org/repo", "binder_ref": "v2", "binder_provider": "gh"},
            BuildRequest("org/repo", "v2", "gh"),
        ),
        ({"binder_build": False, "binder_repo": "org/repo"}, None),
        ({"binder_build": "false", "binder_repo": "org/repo"}, None),
        ({"binder_build": "on", "binder_repo": "org/repo"}, BuildRequest("org/repo", "HEAD")),
    ],
)
def test_build_request_from_user_options(options: dict[str, object], expected: BuildRequest | None) -> None:
    assert build_request(options) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"binder_build": True},
        {"binder_repo": ["a", "list"]},
        {"binder_repo": "org/repo", "binder_ref": {"not": "text"}},
        {"binder_repo": "org/repo", "binder_provider": "GH!"},
    ],
)
def test_bad_api_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidBuildRequest):
        build_request(options)


@pytest.mark.parametrize(
    ("repo", "shown"),
    [
        ("https://ada:s3cret@git.example.org/r.git", "https://***@git.example.org/r.git"),
        ("https://oauth2@git.example.org/r", "https://***@git.example.org/r"),
        ("https://github.com/org/repo", "https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),  # scp-like: a user, no secret
        ("org/repo", "org/repo"),
    ],
)
def test_credentials_in_repository_urls_are_not_shown(repo: str, shown: str) -> None:
    assert redact(repo) == shown
