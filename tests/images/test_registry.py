"""Image lookups against real registries (anonymous, Basic, token auth) and the real Docker engine."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from binder_service.errors import EngineUnavailable, InvalidSpec, RegistryUnavailable, UpstreamTimeout
from binder_service.images.docker_config import DockerConfig, RegistryCredentials
from binder_service.images.registry.client import RegistryClient, split_image, token_ttl
from binder_service.images.store import EngineImageStore, RegistryImageStore
from tests.support.fixtures_http import Recorder
from tests.support.net import Blackhole, free_port
from tests.support.registry_servers import RegistryServer, ScriptedServer

REPO = "binder-test/busybox"


def creds(server: RegistryServer, password: str | None = None) -> RegistryCredentials:
    assert server.username is not None
    assert server.password is not None
    return RegistryCredentials(server.username, password or server.password)


# --- split_image -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("127.0.0.1:5055/binder-foo-1a2b:3f9c", ("127.0.0.1:5055", "binder-foo-1a2b", "3f9c")),
        ("registry.example.org/a/b/c:v1.0_x-y", ("registry.example.org", "a/b/c", "v1.0_x-y")),
        ("localhost/x:1", ("localhost", "x", "1")),
        ("localhost:5000/x", ("localhost:5000", "x", "latest")),
        ("busybox", ("", "busybox", "latest")),
        ("jupyter/base-notebook:2024", ("", "jupyter/base-notebook", "2024")),
        ("a__b/c.d-e:t", ("", "a__b/c.d-e", "t")),
        ("[::1]:5000/x:1", ("[::1]:5000", "x", "1")),
        ("quay.io/x/y@sha256:" + "a" * 64, ("quay.io", "x/y", "sha256:" + "a" * 64)),
        ("quay.io/x/y:t@sha256:" + "b" * 64, ("quay.io", "x/y", "sha256:" + "b" * 64)),
    ],
)
def test_split_image(image: str, expected: tuple[str, str, str]) -> None:
    assert split_image(image) == expected


@pytest.mark.parametrize(
    "image",
    [
        "",
        ":tag",
        "Upper/case:1",
        "host:5000/x:",
        "x:bad tag",
        "x:-dash",
        "x:" + "t" * 129,
        "a//b:1",
        "a/../b:1",
        "-a:1",
        "a-:1",
        "bad_host.:5000/x:1",
        "x@sha256:short",
        "x@",
        "x/" * 130 + "y:1",
        "x:1?y",
        "x:1/../../containers/json",
    ],
)
def test_split_image_rejects(image: str) -> None:
    with pytest.raises(InvalidSpec):
        split_image(image)


# --- DockerConfig ------------------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("auths", "lookup", "expected"),
    [
        ({"reg.example.org": {"auth": b64("u:p:with:colons")}}, "reg.example.org", ("u", "p:with:colons")),
        ({"reg.example.org": {"username": "u", "password": "p"}}, "reg.example.org", ("u", "p")),
        ({"https://reg.example.org": {"auth": b64("u:p")}}, "reg.example.org", ("u", "p")),
        ({"http://127.0.0.1:5055": {"auth": b64("u:p")}}, "127.0.0.1:5055", ("u", "p")),
        ({"https://reg.example.org/v1/": {"auth": b64("u:p")}}, "reg.example.org", ("u", "p")),
        ({"REG.example.org": {"auth": b64("u:p")}}, "https://reg.example.org/", ("u", "p")),
        ({"https://index.docker.io/v1/": {"auth": b64("hub:p")}}, "docker.io", ("hub", "p")),
        ({"https://index.docker.io/v1/": {"auth": b64("hub:p")}}, "registry-1.docker.io", ("hub", "p")),
        ({"docker.io": {"auth": b64("hub:p")}}, "index.docker.io", ("hub", "p")),
        ({"reg.example.org": {"auth": b64("u:p")}}, "reg.example.org:5000", None),
        ({"reg.example.org": {"auth": b64("u:p")}}, "other.example.org", None),
        ({"reg.example.org": {}}, "reg.example.org", None),
    ],
)
def test_docker_config_credentials(
    tmp_path: Path, auths: dict[str, object], lookup: str, expected: tuple[str, str] | None
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    found = DockerConfig.load(path).credentials_for(lookup)
    assert (found and (found.username, found.password)) == expected


def test_docker_config_identity_token() -> None:
    config = DockerConfig.from_json(
        {"auths": {"reg.example.org": {"auth": b64("u:"), "identitytoken": "rt"}}}
    )
    assert config.credentials_for("reg.example.org") == RegistryCredentials("u", "", identity_token="rt")


def test_docker_config_absent(tmp_path: Path) -> None:
    assert DockerConfig.load(None).credentials_for("docker.io") is None
    assert DockerConfig.load(tmp_path / "missing.json").credentials_for("docker.io") is None


@pytest.mark.parametrize(
    "content",
    [
        '{"auths": {"reg": {"auth": "s3cr3t-not-base64!"}}}',
        '{"auths": {"reg": {"auth": "' + b64("s3cr3t-no-colon") + '"}}}',
        '{"auths": {"reg": "s3cr3t"}}',
        '{"auths": ["s3cr3t"]}',
        '["s3cr3t"]',
        '{"auths": {"reg": {"auth": "s3cr3t"',
        '{"auths": {"reg": {"identitytoken": ["s3cr3t"]}}}',
    ],
)
def test_docker_config_malformed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"config\.json") as info:
        DockerConfig.load(path)
    assert "s3cr3t" not in str(info.value)


def test_docker_config_helpers_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "desktop", "auths": {"reg": {"auth": b64("u:s3cr3t")}}}))
    with caplog.at_level(logging.WARNING, logger="binder_service.images.docker_config"):
        DockerConfig.load(path)
        config = DockerConfig.load(path)
    assert len(caplog.records) == 1
    assert "s3cr3t" not in caplog.text
    assert config.credentials_for("reg") == RegistryCredentials("u", "s3cr3t")
    assert "s3cr3t" not in repr(config)


def test_credentials_repr_hides_secrets() -> None:
    text = repr(RegistryCredentials("alice", "pa55word", identity_token="refresh-me"))
    assert "alice" in text
    assert "pa55word" not in text
    assert "refresh-me" not in text


def test_tokens_are_renewed_early() -> None:
    assert token_ttl(60) == 54  # 10 % early
    assert token_ttl(300) == 290  # at most 10 s early


# --- registries that misbehave (no Docker needed) ----------------------------------------------------


async def test_registry_down_is_unavailable_fast(http: httpx.AsyncClient) -> None:
    store = RegistryImageStore(f"http://127.0.0.1:{free_port()}", http, credentials=None, timeout=5)
    # Refused at once, not waited out: a timeout would be UpstreamTimeout, not "not reachable".
    with pytest.raises(RegistryUnavailable, match="not reachable"):
        await store.exists("127.0.0.1:1/x:1")
    with pytest.raises(RegistryUnavailable, match="not reachable"):
        await store.check()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


async def test_registry_blackhole_times_out(http: httpx.AsyncClient, blackhole: Blackhole) -> None:
    store = RegistryImageStore(blackhole.url, http, credentials=None, timeout=0.3)
    for call in (store.exists("x/y:1"), store.check()):
        start = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"within 0\.3s"):
            await call
        assert time.monotonic() - start >= 0.25  # the timeout fired, not some other failure


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (500, {}, b"", "HTTP 500"),
        (418, {}, b"", "HTTP 418"),
        (401, {"WWW-Authenticate": "Negotiate"}, b"", "scheme"),
        (401, {"WWW-Authenticate": 'Bearer realm="file:///etc/passwd"'}, b"", "realm"),
        (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"", "none are set"),
    ],
)
async def test_registry_odd_answers(
    http: httpx.AsyncClient, status: int, headers: dict[str, str], body: bytes, message: str
) -> None:
    server = ScriptedServer(status, headers, body)
    try:
        store = RegistryImageStore(server.url, http, credentials=None, timeout=5)
        with pytest.raises(RegistryUnavailable, match=message):
            await store.exists("x/y:1")
    finally:
        server.close()


@pytest.mark.parametrize(
    ("status", "body", "message"), [(200, b"<html>", "without a token"), (502, b"", "HTTP 502")]
)
async def test_registry_token_service_odd_answers(
    http: httpx.AsyncClient, status: int, body: bytes, message: str
) -> None:
    tokens = ScriptedServer(status, {}, body)
    registry = ScriptedServer(401, {"WWW-Authenticate": f'Bearer realm="{tokens.url}/token",service="s"'})
    try:
        store = RegistryImageStore(registry.url, http, credentials=None, timeout=5)
        with pytest.raises(RegistryUnavailable, match=message):
            await store.exists("x/y:1")
    finally:
        registry.close()
        tokens.close()


@pytest.mark.parametrize("url", ["ftp://reg", "http://u:p@reg", "reg:5000", "http://reg?x=1"])
async def test_registry_url_validated(http: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(ValueError, match="registry URL") as info:
        RegistryImageStore(url, http, credentials=None, timeout=1)
    assert ":p@" not in str(info.value)


async def test_invalid_image_sends_nothing(http: httpx.AsyncClient, recorder: Recorder) -> None:
    store = RegistryImageStore("http://127.0.0.1:9", http, credentials=None, timeout=1)
    with pytest.raises(InvalidSpec):
        await store.exists("127.0.0.1:9/../v2/_catalog:1")
    assert recorder.sent == []


# --- real registries -------------------------------------------------------------------------------


@pytest.mark.docker
async def test_anonymous_registry(world_registry: RegistryServer, http: httpx.AsyncClient) -> None:
    image = world_registry.push(REPO)
    store = RegistryImageStore(world_registry.url, http, credentials=None, timeout=5)
    await store.check()
    assert await store.exists(image)
    assert not await store.exists(f"{world_registry.host}/{REPO}:no-such-tag")
    assert not await store.exists(f"{world_registry.host}/binder-test/no-such-repo:1")


@pytest.mark.docker
async def test_basic_auth_registry(
    basic_auth_registry: RegistryServer, http: httpx.AsyncClient, recorder: Recorder
) -> None:
    image = basic_auth_registry.push(REPO)
    store = RegistryImageStore(
        basic_auth_registry.url, http, credentials=creds(basic_auth_registry), timeout=5
    )
    await store.check()
    assert await store.exists(image)
    recorder.sent.clear()
    assert not await store.exists(f"{basic_auth_registry.host}/{REPO}:no-such-tag")
    assert recorder.sent == [f"HEAD /v2/{REPO}/manifests/no-such-tag"]  # Basic is sent up front


@pytest.mark.docker
async def test_basic_auth_wrong_password(
    basic_auth_registry: RegistryServer, http: httpx.AsyncClient
) -> None:
    wrong = "wrong-Pa55word-xyz"
    store = RegistryImageStore(
        basic_auth_registry.url, http, credentials=creds(basic_auth_registry, wrong), timeout=5
    )
    with pytest.raises(RegistryUnavailable, match="refused our credentials") as info:
        await store.exists(f"{basic_auth_registry.host}/{REPO}:1")
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value)


@pytest.mark.docker
async def test_basic_auth_without_credentials(
    basic_auth_registry: RegistryServer, http: httpx.AsyncClient
) -> None:
    store = RegistryImageStore(basic_auth_registry.url, http, credentials=None, timeout=5)
    await store.check()  # alive, even though it wants credentials
    with pytest.raises(RegistryUnavailable, match="wants credentials"):
        await store.exists(f"{basic_auth_registry.host}/{REPO}:1")


@pytest.mark.docker
async def test_token_auth_registry_caches_tokens(
    token_auth_registry: RegistryServer, http: httpx.AsyncClient, recorder: Recorder
) -> None:
    tokens = token_auth_registry.token_server
    assert tokens is not None
    image = token_auth_registry.push(REPO)
    store = RegistryImageStore(
        token_auth_registry.url, http, credentials=creds(token_auth_registry), timeout=5
    )
    await store.check()
    recorder.sent.clear()
    assert await store.exists(image)
    assert recorder.sent == [f"HEAD /v2/{REPO}/manifests/1", "GET /token", f"HEAD /v2/{REPO}/manifests/1"]

    # The hot path: one request, no token request.
    issued = tokens.requests
    recorder.sent.clear()
    assert await store.exists(image)
    assert not await store.exists(f"{token_auth_registry.host}/{REPO}:no-such-tag")
    assert tokens.requests == issued
    assert recorder.sent == [f"HEAD /v2/{REPO}/manifests/1", f"HEAD /v2/{REPO}/manifests/no-such-tag"]

    # A new repository: the realm is known, so the token comes first and no HEAD is wasted.
    recorder.sent.clear()
    assert not await store.exists(f"{token_auth_registry.host}/binder-test/other:1")
    assert recorder.sent == ["GET /token", "HEAD /v2/binder-test/other/manifests/1"]


@pytest.mark.docker
async def test_a_token_is_kept_for_its_own_lifetime_and_fetched_once(
    token_auth_registry: RegistryServer, http: httpx.AsyncClient
) -> None:
    tokens = token_auth_registry.token_server
    assert tokens is not None
    now = [1000.0]
    client = RegistryClient(
        token_auth_registry.url, http, credentials=creds(token_auth_registry), timeout=5, clock=lambda: now[0]
    )
    path = f"/v2/{REPO}/manifests/1"
    await client.request("HEAD", path, repo=REPO)  # learns the realm
    issued = tokens.requests
    client.forget_tokens()
    # Concurrent requests share one token request.
    await asyncio.gather(*(client.request("HEAD", path, repo=REPO) for _ in range(20)))
    assert tokens.requests == issued + 1
    now[0] += token_ttl(tokens.expires_in) - 1
    await client.request("HEAD", path, repo=REPO)
    assert tokens.requests == issued + 1
    now[0] += 2  # past its renewal time: a fresh token before the registry would refuse the old one
    await client.request("HEAD", path, repo=REPO)
    assert tokens.requests == issued + 2


@pytest.mark.docker
async def test_token_auth_wrong_password(
    token_auth_registry: RegistryServer, http: httpx.AsyncClient
) -> None:
    wrong = "wrong-Pa55word-xyz"
    store = RegistryImageStore(
        token_auth_registry.url, http, credentials=creds(token_auth_registry, wrong), timeout=5
    )
    with pytest.raises(RegistryUnavailable, match="refused our credentials") as info:
        await store.exists(f"{token_auth_registry.host}/{REPO}:1")
    assert wrong not in str(info.value)


@pytest.mark.docker
async def test_token_auth_anonymous_is_refused(
    token_auth_registry: RegistryServer, http: httpx.AsyncClient
) -> None:
    # The token service hands anonymous callers a token without rights; the registry then says 401.
    store = RegistryImageStore(token_auth_registry.url, http, credentials=None, timeout=5)
    with pytest.raises(RegistryUnavailable, match="wants credentials"):
        await store.exists(f"{token_auth_registry.host}/{REPO}:1")


@pytest.mark.docker
async def test_token_auth_identity_token(
    token_auth_registry: RegistryServer, http: httpx.AsyncClient, recorder: Recorder
) -> None:
    tokens = token_auth_registry.token_server
    assert tokens is not None
    image = token_auth_registry.push(REPO)
    host = token_auth_registry.host
    config = DockerConfig.from_json(
        {"auths": {host: {"auth": b64("<token>:"), "identitytoken": tokens.refresh_token}}}
    )
    store = RegistryImageStore(
        token_auth_registry.url, http, credentials=config.credentials_for(host), timeout=5
    )
    assert await store.exists(image)
    assert "POST /token" in recorder.sent

    bad = RegistryCredentials("<token>", "", identity_token="not-the-refresh-token")
    store = RegistryImageStore(token_auth_registry.url, http, credentials=bad, timeout=5)
    with pytest.raises(RegistryUnavailable, match="refused") as info:
        await store.exists(image)
    assert "not-the-refresh-token" not in str(info.value)


# --- the Docker engine -----------------------------------------------------------------------------


@pytest.fixture
async def engine(world_env: dict[str, str]) -> AsyncIterator[EngineImageStore]:
    store = EngineImageStore(world_env["DOCKER_HOST"], timeout=10)
    yield store
    await store.aclose()


@pytest.mark.docker
async def test_engine_exists(engine: EngineImageStore, world_registry: RegistryServer) -> None:
    import world

    await engine.check()
    assert await engine.exists(world.BUSYBOX_IMAGE)
    assert await engine.exists(world_registry.push(REPO))  # host:port/path:tag, tagged in the engine
    assert not await engine.exists("binder-test/no-such-image:1")
    with pytest.raises(InvalidSpec):
        await engine.exists("../containers/json")


@pytest.mark.parametrize("docker_host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:{port}"])
async def test_engine_down(docker_host: str) -> None:
    docker_host = docker_host.format(port=free_port())
    store = EngineImageStore(docker_host, timeout=5)
    try:
        with pytest.raises(EngineUnavailable, match=f"Docker engine at {docker_host} is not reachable"):
            await store.exists("busybox:1")
        with pytest.raises(EngineUnavailable):
            await store.check()
    finally:
        await store.aclose()


@pytest.mark.parametrize("docker_host", ["", "npipe:////./pipe/docker", "unix://", "tcp://"])
def test_engine_host_validated(docker_host: str) -> None:
    with pytest.raises(ValueError, match="DOCKER_HOST"):
        EngineImageStore(docker_host, timeout=1)
