"""GitRemote against real servers: `git daemon`, smart HTTP through `git http-backend`, `git ls-remote`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from binder_service.errors import (
    InputTooLarge,
    InvalidSpec,
    RefNotFound,
    RepoNotAllowed,
    RepoNotFound,
    RepoUnreachable,
    UpstreamTimeout,
)
from binder_service.providers.git import daemon, protocol
from binder_service.providers.git.protocol import RemoteRefs, pick_ref, pkt_line, ref_prefixes
from binder_service.providers.git.remote import GitRemote
from binder_service.providers.git.urls import check_git_url
from binder_service.security.credentials import GitCredentials, parse_credential
from binder_service.security.redaction import redact_url
from tests.support.gitserve import (
    branch,
    commit,
    git,
    make_repo,
    rev_parse,
    serve_threaded,
    tag,
)
from tests.support.net import blackhole, free_port

TIMEOUT = 2.0


@dataclass(frozen=True)
class Repo:
    name: str
    path: Path
    main: str  # tip of main, also HEAD
    feature: str  # tip of feature/with-slash
    light: str  # commit of the lightweight tag
    annotated: str  # commit the annotated tag peels to
    annotated_object: str  # the annotated tag object itself


@pytest.fixture(scope="module")
def repo(git_root: Path) -> Repo:
    name = f"remote-{uuid.uuid4().hex[:8]}"
    path = git_root / name
    first = make_repo(git_root, name, {"README.md": "hello\n", "sub/dir/file.txt": "x\n"})
    annotated = tag(path, "v1.0", annotated=True)
    assert annotated == first
    light = tag(path, "light", annotated=False)
    main = commit(path, {"README.md": "hello again\n"}, "second")
    branch(path, "feature/with-slash")
    git(path, "switch", "-q", "feature/with-slash")
    feature = commit(path, {"feature.txt": "f\n"}, "feature")
    git(path, "switch", "-q", "main")
    return Repo(name, path, main, feature, light, annotated, rev_parse(path, "refs/tags/v1.0"))


@pytest.fixture(params=["daemon", "http"])
def base_url(request: pytest.FixtureRequest) -> str:
    """Each transport-level test runs against both real servers."""
    return str(request.getfixturevalue("git_daemon_url" if request.param == "daemon" else "git_http_url"))


@pytest.fixture
def remote(http: httpx.AsyncClient) -> GitRemote:
    return GitRemote(http, timeout=TIMEOUT)


def ls_remote(url: str) -> RemoteRefs:
    """What `git ls-remote` itself reports, peeled the same way."""
    out = subprocess.run(
        ["git", "ls-remote", "--symref", "--", url], capture_output=True, text=True, check=True
    ).stdout
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head = target = None
    for line in out.splitlines():
        left, name = line.split("\t")
        if left.startswith("ref: "):
            target = left[5:]
        elif name == "HEAD":
            head = left
        elif name.endswith("^{}"):
            peeled[name[:-3]] = left
        else:
            refs[name] = left
    return RemoteRefs(refs=refs | peeled, head=head, head_target=target)


# --- resolving against real servers ---------------------------------------------------------------


async def test_branch_tags_head(remote: GitRemote, repo: Repo, base_url: str) -> None:
    url = base_url + repo.name
    assert await remote.resolve(url, "main") == repo.main
    assert await remote.resolve(url, "HEAD") == repo.main
    assert await remote.resolve(url, "light") == repo.light
    assert await remote.resolve(url, "v1.0") == repo.annotated
    assert await remote.resolve(url, "refs/tags/v1.0") == repo.annotated
    assert repo.annotated_object != repo.annotated  # so the line above proves peeling
    assert await remote.resolve(url, "refs/heads/main") == repo.main


async def test_branch_with_slash(remote: GitRemote, repo: Repo, base_url: str) -> None:
    url = base_url + repo.name
    assert await remote.resolve(url, "feature/with-slash") == repo.feature
    assert await remote.resolve(url, "refs/heads/feature/with-slash") == repo.feature


async def test_git_daemon_lists_only_the_refs_a_lookup_may_pick(repo: Repo, git_daemon_url: str) -> None:
    """Over git://, protocol v2: the daemon itself filters (a v0 advertisement would hold every ref)."""
    url = git_daemon_url + repo.name
    refs = await daemon.list_refs(url, egress=None, prefixes=ref_prefixes("main"))
    assert refs == RemoteRefs(refs={"refs/heads/main": repo.main}, head=None, head_target=None)
    head = await daemon.list_refs(url, egress=None, prefixes=ref_prefixes("HEAD"))
    assert (head.head, head.head_target, head.refs) == (repo.main, "refs/heads/main", {})
    tagged = await daemon.list_refs(url, egress=None, prefixes=ref_prefixes("v1.0"))
    assert tagged.refs == {"refs/tags/v1.0": repo.annotated}  # peeled
    assert await daemon.list_refs(url, egress=None) == ls_remote(url)  # no prefix: every ref


async def test_a_daemon_that_only_speaks_v0_is_read_as_v0(remote: GitRemote, repo: Repo) -> None:
    """A daemon older than git 2.18 ignores the request for v2: its v0 advertisement (git's own, here)
    is read, and the flush that ends the exchange reaches it."""
    advertisement = subprocess.run(
        ["git", "upload-pack", "--advertise-refs", "--", str(repo.path)], capture_output=True, check=True
    ).stdout
    after: asyncio.Queue[bytes] = asyncio.Queue()

    async def old_daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.write(advertisement)
        await writer.drain()
        await after.put(await reader.read(1000))
        writer.close()

    server = await asyncio.start_server(old_daemon, "127.0.0.1", 0)
    async with server:
        url = f"git://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
        assert await remote.resolve(url, "v1.0") == repo.annotated
        assert await remote.resolve(url, "feature/with-slash") == repo.feature
        assert [await asyncio.wait_for(after.get(), 30) for _ in range(2)] == [b"0000", b"0000"]


async def test_list_refs_matches_git_ls_remote(remote: GitRemote, repo: Repo, base_url: str) -> None:
    url = base_url + repo.name
    refs = await remote.list_refs(url)
    assert refs == ls_remote(url)
    assert refs.head_target == "refs/heads/main"
    assert set(refs.refs) == {
        "refs/heads/main",
        "refs/heads/feature/with-slash",
        "refs/tags/light",
        "refs/tags/v1.0",
    }
    assert repo.annotated_object not in refs.refs.values()


async def test_local_path_through_ls_remote(http: httpx.AsyncClient, repo: Repo, git_daemon_url: str) -> None:
    local = GitRemote(http, timeout=TIMEOUT, allow_local=True)
    refs = await local.list_refs(str(repo.path))
    assert refs == await local.list_refs(git_daemon_url + repo.name)
    assert refs == await local.list_refs(repo.path.as_uri())
    assert refs.head_target == "refs/heads/main"
    with pytest.raises(RepoNotFound):
        await local.list_refs(str(repo.path.parent / "no-such-repo"))


async def test_missing_ref(remote: GitRemote, repo: Repo, base_url: str) -> None:
    url = base_url + repo.name
    with pytest.raises(RefNotFound, match=r"ref 'nope' not found in .*" + repo.name):
        await remote.resolve(url, "nope")
    with pytest.raises(RefNotFound):
        await remote.resolve(url, "refs/heads/feature")  # a prefix of a ref is not a ref


async def test_missing_repo(remote: GitRemote, base_url: str) -> None:
    with pytest.raises(RepoNotFound):
        await remote.resolve(base_url + "no-such-repo", "main")


async def test_empty_repo(remote: GitRemote, git_root: Path, base_url: str) -> None:
    name = f"empty-{uuid.uuid4().hex[:8]}"
    (git_root / name).mkdir()
    git(git_root / name, "init", "-q", "-b", "main")
    refs = await remote.list_refs(base_url + name)
    assert refs.refs == {}
    assert refs.head is None
    with pytest.raises(RefNotFound):
        await remote.resolve(base_url + name, "HEAD")


async def test_full_sha_needs_no_network(http: httpx.AsyncClient, repo: Repo) -> None:
    remote = GitRemote(http, timeout=0.2)
    with blackhole() as (host, port):
        for url in (f"http://{host}:{port}/x", f"git://{host}:{port}/x", f"ssh://{host}:{port}/x"):
            assert await remote.resolve(url, repo.main.upper()) == repo.main
        with pytest.raises(UpstreamTimeout):  # the same URL with a branch does go to the network
            await remote.resolve(f"http://{host}:{port}/x", "main")
    sha256 = "ab" * 32
    assert await remote.resolve("https://example.invalid/x", sha256) == sha256


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["git", "http", "ssh"])
async def test_connection_refused(remote: GitRemote, scheme: str) -> None:
    with pytest.raises(RepoUnreachable, match="refused"):
        await remote.list_refs(f"{scheme}://127.0.0.1:{free_port()}/repo")


@pytest.mark.parametrize("scheme", ["git", "http", "ssh"])
async def test_blackhole_times_out(http: httpx.AsyncClient, scheme: str) -> None:
    quick = GitRemote(http, timeout=0.3)
    with blackhole() as (host, port):
        # Our timeout's error (not ssh's own ConnectTimeout), and no `git ls-remote` left behind.
        with pytest.raises(UpstreamTimeout, match=r"did not answer within 0\.3s"):
            await quick.list_refs(f"{scheme}://{host}:{port}/repo")
        assert not processes_mentioning(str(port))


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (a leftover git or ssh, say)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if any(text.encode() in a for a in args) and b"pytest" not in args[0] + (
                args[1] if len(args) > 1 else b""
            ):
                found.append(b" ".join(args).decode(errors="replace"))
    return found


async def test_operator_credentials_sent_as_basic_auth_never_shown(repo: Repo, git_http_url: str) -> None:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    creds = GitCredentials([parse_credential(git_http_url.replace("http://", "http://alice:s3cr%40t@"))])
    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        remote = GitRemote(client, timeout=TIMEOUT, credentials=creds)
        assert await remote.resolve(git_http_url + repo.name, "main") == repo.main
        assert sent[0].headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
        assert "s3cr" not in str(sent[0].url)

        # Another origin (same host, other port) gets nothing.
        other = f"http://127.0.0.1:{free_port()}/x"
        with pytest.raises(RepoUnreachable) as info:
            await remote.resolve(other, "main")
        assert "s3cr" not in str(info.value)
        with pytest.raises(RepoNotFound) as missing:
            await remote.resolve(git_http_url + "no-such-repo", "main")
        assert "s3cr" not in str(missing.value)
        assert "alice" not in str(missing.value)
        with pytest.raises(RefNotFound) as ref_info:
            await remote.resolve(git_http_url + repo.name, "nope")
        assert "s3cr" not in str(ref_info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:s3cr%40t@example.com/repo.git",
        "https://ghp_s3cret@github.com/org/repo",
        "https://alice:@example.com/repo",
        "git://alice:s3cret@example.com/repo",
        "ssh://git:s3cret@example.com/repo.git",
    ],
)
def test_user_urls_with_credentials_are_refused(url: str) -> None:
    with pytest.raises(RepoNotAllowed, match="git_credentials") as info:
        check_git_url(url, allowed_protocols=ALL, allow_local=False, max_length=2048)
    assert "s3cr" not in str(info.value)


class _BadGitHandler(BaseHTTPRequestHandler):
    """Real HTTP answers a git server should not give."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        kind = self.path.split("/")[1]
        if kind == "error":
            self._send(503, "text/plain", b"down")
        elif kind == "html":
            self._send(200, "text/html", b"<html>login</html>")
        elif kind == "garbage":
            self._send(200, "application/x-git-upload-pack-advertisement", b"not pkt lines at all")
        elif kind == "truncated":
            self._send(
                200, "application/x-git-upload-pack-advertisement", b"001e# service=git-upload-pack\n0000"
            )
        elif kind == "huge":
            line = pkt_line(b"%s refs/heads/b\n" % (b"a" * 40))
            self._send(
                200,
                "application/x-git-upload-pack-advertisement",
                b"001e# service=git-upload-pack\n0000" + line * 2000,
            )

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    with serve_threaded(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("error/repo", RepoUnreachable, "HTTP 503"),
        ("html/repo", RepoUnreachable, "smart HTTP"),
        ("garbage/repo", RepoUnreachable, "git's protocol"),
        ("truncated/repo", RepoUnreachable, "before the end"),
        ("huge/repo", RepoUnreachable, "more than 0 MiB"),
    ],
)
async def test_bad_http_servers(
    remote: GitRemote, monkeypatch: pytest.MonkeyPatch, path: str, error: type[Exception], match: str
) -> None:
    monkeypatch.setattr(protocol, "MAX_ADVERTISEMENT", 10_000)  # "huge" sends ~100 kB
    with http_server(_BadGitHandler) as url, pytest.raises(error, match=match):
        await remote.list_refs(url + path)


async def test_dumb_http_server_is_refused(remote: GitRemote, repo: Repo, git_root: Path) -> None:
    git(repo.path, "update-server-info")
    root = str(git_root)

    class Dumb(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=root, **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    with http_server(Dumb) as url:
        async with httpx.AsyncClient() as client:  # it really is a dumb git server
            assert (await client.get(f"{url}{repo.name}/.git/info/refs")).status_code == 200
        with pytest.raises(RepoUnreachable, match="dumb HTTP"):
            await remote.list_refs(f"{url}{repo.name}/.git")


async def test_hostile_daemon_cannot_exhaust_memory(
    remote: GitRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol, "MAX_ADVERTISEMENT", 100_000)
    line = pkt_line(b"%s refs/heads/b\n" % (b"a" * 40))

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                writer.write(line * 1000)
                await writer.drain()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(RepoUnreachable, match="more than"):
            await remote.list_refs(f"git://127.0.0.1:{port}/x")


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (pkt_line(b"%s HEAD\0caps\n" % (b"a" * 40)), RepoUnreachable, "before the end of its refs"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", RepoUnreachable, "did not answer with git's protocol"),
        (pkt_line(b"ERR access denied\n"), RepoNotFound, "access denied"),
        (b"", RepoUnreachable, "before the end of its refs"),
    ],
)
async def test_a_daemon_that_answers_wrongly_then_hangs_up(
    remote: GitRemote, answer: bytes, error: type[Exception], match: str
) -> None:
    """git:// : whatever the daemon sends before it closes, the lookup ends with a clear error."""
    requests: list[bytes] = []

    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.read(1000))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(wrong, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(error, match=match):
            await remote.list_refs(f"git://127.0.0.1:{port}/x")
    # As git asks: protocol v2 in the extra parameters (these answers are v0's, read as such).
    assert requests == [pkt_line(f"git-upload-pack /x\0host=127.0.0.1:{port}\0\0version=2\0".encode())]


async def test_option_injection_never_runs(remote: GitRemote, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for url in (f"--upload-pack=touch {marker}", f"ext::sh -c touch% {marker}", f"-u touch {marker}"):
        with pytest.raises(RepoNotAllowed):
            await remote.resolve(url, "main")
    assert not marker.exists()


# --- pure functions -------------------------------------------------------------------------------

ALL = frozenset({"http", "https", "git", "ssh"})


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("--upload-pack=touch /tmp/pwned", RepoNotAllowed),
        ("-u", RepoNotAllowed),
        ("file:///etc", RepoNotAllowed),
        ("FILE:///etc", RepoNotAllowed),
        ("/etc/passwd", RepoNotAllowed),
        ("./x", RepoNotAllowed),
        ("../x", RepoNotAllowed),
        ("~/x", RepoNotAllowed),
        ("x", RepoNotAllowed),
        ("ext::sh -c touch% /tmp/pwned", RepoNotAllowed),
        ("ext::sh", RepoNotAllowed),
        ("fd::17", RepoNotAllowed),
        ("ftp://example.com/repo.git", RepoNotAllowed),
        ("rsync://example.com/repo.git", RepoNotAllowed),
        ("https://example.com/repo\n.git", RepoNotAllowed),
        ("https://example.com/re po", RepoNotAllowed),
        ("https://example.com/repo\x00", RepoNotAllowed),
        ("https://example.com/repo\x7f", RepoNotAllowed),
        ("ssh://-oProxyCommand=touch%20x/repo", RepoNotAllowed),
        ("-oProxyCommand=x@host:repo", RepoNotAllowed),
        ("user@-oProxyCommand=x:repo", RepoNotAllowed),
        ("", InvalidSpec),
        ("https://", InvalidSpec),
        ("https:///repo", InvalidSpec),
        ("http://host:notaport/repo", InvalidSpec),
        ("git://host", InvalidSpec),
        ("host:", InvalidSpec),
        ("https://example.com/" + "a" * 2100, InputTooLarge),
    ],
)
def test_check_git_url_rejects(url: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        check_git_url(url, allowed_protocols=ALL, allow_local=False, max_length=2048)
    assert type(info.value) is error
    assert str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/binder-examples/requirements",
        "http://127.0.0.1:8080/repo",
        "https://[::1]:8443/repo",
        "git://example.com/repo.git",
        "ssh://git@example.com/repo.git",
        "git+ssh://git@example.com:2222/repo.git",
        "git@github.com:binder-examples/requirements.git",
        "example.com:repo.git",
        "git@[::1]:repo.git",
    ],
)
def test_check_git_url_accepts(url: str) -> None:
    assert check_git_url(url, allowed_protocols=ALL, allow_local=False, max_length=2048) == url


@pytest.mark.parametrize("url", ["file:///etc", "/srv/repos/x", "./x", "~/x"])
def test_check_git_url_local_when_allowed(url: str) -> None:
    assert check_git_url(url, allowed_protocols=ALL, allow_local=True, max_length=2048) == url
    with pytest.raises(RepoNotAllowed):  # still no option injection
        check_git_url("-" + url, allowed_protocols=ALL, allow_local=True, max_length=2048)


@pytest.mark.parametrize(
    "url", ["git://example.com/r", "ssh://example.com/r", "git@example.com:r", "http://e.com/r"]
)
def test_check_git_url_protocol_not_allowed(url: str) -> None:
    with pytest.raises(RepoNotAllowed, match="not allowed"):
        check_git_url(url, allowed_protocols=frozenset({"https"}), allow_local=False, max_length=2048)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pass@example.com/repo", "https://example.com/repo"),
        ("https://tok@example.com:8443/repo", "https://example.com:8443/repo"),
        ("https://us%40er:p@ss@example.com/r", "https://example.com/r"),
        ("https://example.com/a@b", "https://example.com/a@b"),
        ("git@github.com:org/repo", "git@github.com:org/repo"),
        ("git://example.com/repo", "git://example.com/repo"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_pick_ref() -> None:
    refs = RemoteRefs(
        refs={
            "refs/heads/main": "1" * 40,
            "refs/heads/v1": "2" * 40,
            "refs/tags/v1": "3" * 40,
            "refs/pull/7/head": "4" * 40,
        },
        head="1" * 40,
        head_target="refs/heads/main",
    )
    assert pick_ref(refs, "HEAD") == "1" * 40
    assert pick_ref(refs, "main") == "1" * 40
    assert pick_ref(refs, "v1") == "3" * 40  # a tag wins over a branch of the same name
    assert pick_ref(refs, "refs/heads/v1") == "2" * 40
    assert pick_ref(refs, "pull/7/head") == "4" * 40
    assert pick_ref(refs, "refs/main") is None
    assert pick_ref(refs, "nope") is None
    assert pick_ref(RemoteRefs(refs={}, head=None, head_target=None), "HEAD") is None


@pytest.mark.parametrize("version", ["0", "2"])
def test_support_servers_clone(
    repo: Repo, git_daemon_url: str, git_http_url: str, tmp_path: Path, version: str
) -> None:
    """repo2docker clones through these servers, so a real `git clone` must work over both protocols."""
    for i, base in enumerate((git_daemon_url, git_http_url)):
        dest = tmp_path / str(i)
        subprocess.run(
            [
                "git",
                "-c",
                f"protocol.version={version}",
                "clone",
                "-q",
                "-b",
                "feature/with-slash",
                base + repo.name,
                str(dest),
            ],
            check=True,
            capture_output=True,
        )
        assert rev_parse(dest, "HEAD") == repo.feature
        assert (dest / "sub/dir/file.txt").read_text() == "x\n"
