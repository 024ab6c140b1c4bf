"""The access log: uvicorn's line per request, with no credential a client put in a repository URL."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

from binder_service.access_log import AccessFormatter
from binder_service.security.redaction import redact_path
from tests.support.serve_process import serve_process

TOKEN = "ghp_s3cretT0ken"


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        # BinderHub's spec: the URL escaped once (as clients send it), twice, or not at all.
        (
            f"/build/git/https%3A%2F%2Fuser%3A{TOKEN}%40github.com%2Fa%2Fb/HEAD?build_only=true",
            "/build/git/https%3A%2F%2Fgithub.com%2Fa%2Fb/HEAD?build_only=true",
        ),
        (
            f"/build/git/https%253A%252F%252F{TOKEN}%2540github.com%252Fa/HEAD",
            "/build/git/https%253A%252F%252Fgithub.com%252Fa/HEAD",
        ),
        (f"/x?repo=https://u:{TOKEN}@h/r", "/x?repo=https://h/r"),
        (f"/x?repo=HTTPS%3a%2f%2f{TOKEN}%40h%2fr", "/x?repo=HTTPS%3a%2f%2fh%2fr"),
        # An `@` after the host (in the path or the ref) is not userinfo, and stays.
        (
            "/build/git/https%3A%2F%2Fgithub.com%2Fa%2Fb/v1%40x",
            "/build/git/https%3A%2F%2Fgithub.com%2Fa%2Fb/v1%40x",
        ),
        ("/build/gh/a/b/main", "/build/gh/a/b/main"),
    ],
)
def test_paths_lose_the_userinfo_of_urls_in_them(path: str, shown: str) -> None:
    assert redact_path(path) == shown


def test_the_line_is_uvicorns() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/versions", "1.1", 404),
        None,
    )
    assert (
        AccessFormatter().format(record)
        == 'INFO:     127.0.0.1:5000 - "GET /versions HTTP/1.1" 404 Not Found'
    )


def test_other_records_are_formatted_as_they_are() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "plain %s", ("text",), None)
    assert AccessFormatter().format(record) == "plain text"


def test_a_token_in_a_build_url_never_reaches_the_services_log(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "BINDER_SERVICE_STATE_DIR": str(tmp_path / "state"),
        "BINDER_SERVICE_REGISTRY_URL": "",
    }
    log = tmp_path / "serve.log"
    with serve_process(env, log) as (_, url):
        target = f"build/git/https%3A%2F%2Fuser%3A{TOKEN}%40127.0.0.1%3A1%2Fr/HEAD?build_only=true"
        reply = httpx.get(url + target, timeout=30)
        assert reply.status_code == 200  # a `failed` event: the service refuses credentials in URLs
        assert "failed" in reply.text
        assert TOKEN not in reply.text
    text = log.read_text(errors="replace")
    assert '"GET /build/git/https%3A%2F%2F127.0.0.1%3A1%2Fr/HEAD?build_only=true HTTP/1.1" 200 OK' in text
    assert TOKEN not in text
