"""Credentials kept out of what we show: the helpers git transports, REST APIs and the build pod use."""

from __future__ import annotations

import pytest

from binder_service.security.redaction import redact_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@git.example.org/hello.git", "https://git.example.org/hello.git"),
        ("git-https://user:s3cret@git.example.org/x", "git-https://git.example.org/x"),  # a build slug
        ("https://a@b:c@host/x?q=a@b", "https://host/x?q=a@b"),
        ("https://host/x@y", "https://host/x@y"),
        ("git@host:org/repo", "git@host:org/repo"),  # an ssh user name is not a secret
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub() -> None:
    assert scrub("fatal:\tsee https://x-access-token:ghp_abc@github.com/o/r\r\n  now\x00") == (
        "fatal: see https://github.com/o/r now"
    )
    assert scrub("x" * 10, limit=4) == "xxxx…"
