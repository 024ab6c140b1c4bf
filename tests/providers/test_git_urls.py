"""The URL helpers every git transport, the credential store and the REST APIs share."""

from __future__ import annotations

import pytest

from binder_service.providers.git.urls import http_origin, transport, url_host


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://github.com/org/repo", ("https", "github.com", 443)),
        ("http://Host.Example:8080/x", ("http", "host.example", 8080)),
        ("HTTPS://user:token@host/", ("https", "host", 443)),
        ("https://[::1]/x", ("https", "::1", 443)),
        ("git://host/x", None),
        ("ssh://host/x", None),
        ("https:///no-host", None),
        ("https://host:99999/x", None),  # a port that does not parse
        ("https://host:port/x", None),
        ("host:path", None),
    ],
)
def test_http_origin(url: str, origin: tuple[str, str, int] | None) -> None:
    assert http_origin(url) == origin


@pytest.mark.parametrize(
    ("url", "proto", "host"),
    [
        ("https://host/x", "https", "host"),
        ("GIT+SSH://git@host/x", "ssh", "host"),
        ("ssh+git://host/x", "ssh", "host"),
        ("git://[::1]:9418/x", "git", "::1"),
        ("git@host:org/repo", "ssh", "host"),
        ("[host:2222]:org/repo", "ssh", "host"),
        ("/srv/repo", "file", None),
        ("./repo", "file", None),
        ("file:///srv/repo", "file", None),
    ],
)
def test_transport_and_host(url: str, proto: str, host: str | None) -> None:
    assert transport(url) == proto
    assert url_host(url) == host
