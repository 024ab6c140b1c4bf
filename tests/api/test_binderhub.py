"""The BinderHub-compatible face, end to end: real git servers, repo2docker, dockerd and registry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.net import blackhole, free_port
from tests.support.repos import buildable_repo
from tests.support.service import build_url, spec, sse_messages

pytestmark = pytest.mark.docker


def registry_has(registry: str, image: str) -> bool:
    repo, tag = image.split("/", 1)[1].rsplit(":", 1)
    r = httpx.head(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        headers={
            "Accept": ",".join(
                [
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.oci.image.index.v1+json",
                ]
            )
        },
    )
    return r.status_code == 200


def test_build_streams_to_ready_and_pushes(
    service_url: str, git_root: Path, git_daemon_url: str, world_env: dict[str, str]
) -> None:
    name, commit = buildable_repo(git_root)
    messages = sse_messages(build_url(service_url, git_daemon_url + name))
    phases = [m["phase"] for m in messages]
    assert phases[0] == "waiting"
    assert phases[-2:] == ["built", "ready"]
    for expected in ("fetching", "building"):
        assert expected in phases
    # phases never go back once the build moved on
    order = ["waiting", "fetching", "building", "pushing", "built", "ready"]
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases)
    image = messages[-1]["imageName"]
    assert image.endswith(":" + commit)
    assert image.startswith(world_env["BINDER_WORLD_REGISTRY"] + "/test-")
    assert registry_has(world_env["BINDER_WORLD_REGISTRY"], image)
    assert any("echo hello" in m["message"] for m in messages)

    # The same commit again: answered from the registry at once, no build.
    again = sse_messages(build_url(service_url, git_daemon_url + name))
    assert [m["phase"] for m in again] == ["built", "ready"]
    assert again[-1]["imageName"] == image


def test_smart_http_repository_and_tag(service_url: str, git_root: Path, git_http_url: str) -> None:
    from tests.support.gitserve import tag

    name, commit = buildable_repo(git_root)
    tag(git_root / name, "v1.0", annotated=True)
    messages = sse_messages(build_url(service_url, git_http_url + name, "v1.0"))
    assert messages[-1]["phase"] == "ready", messages[-3:]
    assert messages[-1]["imageName"].endswith(":" + commit)


def test_identical_requests_share_one_build(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root, run="sleep 1 && echo shared > /x")
    url = build_url(service_url, git_daemon_url + name)
    before = _metric(service_url, "binder_builds_started_total")
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: sse_messages(url), range(12)))
    assert _metric(service_url, "binder_builds_started_total") - before == 1
    images = {r[-1]["imageName"] for r in results}
    assert len(images) == 1
    assert all(r[-1]["phase"] == "ready" for r in results)
    # every watcher saw the build's log, not just the end
    assert all(any("shared" in m["message"] for m in r) for r in results)


def test_failing_build_is_a_failed_event(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root, run="echo about to fail && exit 3")
    messages = sse_messages(build_url(service_url, git_daemon_url + name))
    assert messages[-1]["phase"] == "failed"
    assert messages[-1]["code"] == "build_failed"
    # The engine's reason, not repo2docker's "Command [docker buildx build ...] returned non-zero".
    assert "exit code: 3" in messages[-1]["message"]
    assert any("about to fail" in m["message"] for m in messages)
    assert httpx.get(f"{service_url}health").status_code == 200  # and the service carries on


def test_unknown_commit_fails_and_the_stream_ends(
    service_url: str, git_root: Path, git_daemon_url: str
) -> None:
    name, _ = buildable_repo(git_root)
    messages = sse_messages(build_url(service_url, git_daemon_url + name, "0" * 40), timeout=60)
    assert messages[-1]["phase"] == "failed"


BAD_INPUT = [
    # (provider, raw spec, expected code)
    ("nope", "x/y", "unknown_provider"),
    ("git", "no-ref-here", "invalid_spec"),
    ("git", spec("--upload-pack=touch /tmp/binder-pwned", "main"), "repo_not_allowed"),
    ("git", spec("-u", "main"), "repo_not_allowed"),
    ("git", spec("file:///etc", "main"), "repo_not_allowed"),
    ("git", spec("/etc", "main"), "repo_not_allowed"),
    ("git", spec("ext::sh -c touch% /tmp/binder-pwned", "main"), "repo_not_allowed"),
    ("git", spec("https://example.org/x", "--upload-pack=touch /tmp/binder-pwned"), "invalid_spec"),
    ("git", spec("https://example.org/" + "x" * 5000, "main"), "input_too_large"),
]


@pytest.mark.parametrize(("provider", "raw", "code"), BAD_INPUT)
def test_bad_input_is_a_failed_event(service_url: str, provider: str, raw: str, code: str) -> None:
    messages = sse_messages(f"{service_url}build/{provider}/{raw}?build_only=true", timeout=10)
    assert [m["phase"] for m in messages] == ["failed"]
    assert messages[0]["code"] == code, messages
    assert not Path("/tmp/binder-pwned").exists()


def test_missing_ref_and_repo(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root)
    missing_ref = sse_messages(build_url(service_url, git_daemon_url + name, "no-such-branch"))
    assert missing_ref[-1]["code"] == "ref_not_found"
    missing_repo = sse_messages(build_url(service_url, git_daemon_url + "does-not-exist"))
    assert missing_repo[-1]["code"] == "repo_not_found"


def test_unreachable_and_blackholed_hosts_end_in_time(service_url: str) -> None:
    closed = sse_messages(build_url(service_url, f"http://127.0.0.1:{free_port()}/repo"))
    assert closed[-1]["code"] == "repo_unreachable"
    with blackhole() as (host, port):
        # The service's resolve timeout (2 s here) ends the stream, not the client's 20 s.
        stuck = sse_messages(build_url(service_url, f"git://{host}:{port}/repo"), timeout=20)
        assert stuck[-1]["code"] == "upstream_timeout"


def test_build_only_is_required(service_url: str, git_daemon_url: str) -> None:
    messages = sse_messages(f"{service_url}build/git/{spec(git_daemon_url + 'x', 'main')}")
    assert messages[-1]["phase"] == "failed"
    assert "build_only=true" in messages[-1]["message"]


def test_keepalive_while_idle(service_url: str, git_root: Path, git_daemon_url: str) -> None:
    name, _ = buildable_repo(git_root, run="sleep 2")
    raw: list[str] = []
    messages = sse_messages(build_url(service_url, git_daemon_url + name), raw=raw)
    assert messages[-1]["phase"] == "ready"
    assert ":keepalive" in raw


def _metric(service: str, name: str) -> float:
    for line in httpx.get(f"{service}metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")
