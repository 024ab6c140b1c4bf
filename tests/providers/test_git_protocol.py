"""The sans-IO ref advertisement parser on plain bytes: no server, no socket."""

from __future__ import annotations

import pytest

from binder_service.errors import RepoNotFound, RepoUnreachable
from binder_service.providers.git import protocol
from binder_service.providers.git.protocol import (
    PktReader,
    RefsParser,
    RemoteRefs,
    ls_refs_command,
    parse_ls_remote,
    pick_ref,
    pkt_line,
    ref_prefixes,
)

MAIN = "a" * 40
FEATURE = "b" * 40
TAG_OBJECT = "c" * 40
TAGGED = "d" * 40
SHA256 = "e" * 64


def smart_http_answer(*lines: bytes, service_flush: bool = True) -> bytes:
    """What `GET info/refs?service=git-upload-pack` sends: service line, flush, refs, flush."""
    head = pkt_line(b"# service=git-upload-pack\n") + (b"0000" if service_flush else b"")
    return head + b"".join(pkt_line(line) for line in lines) + b"0000"


ADVERTISED = (
    f"{MAIN} HEAD\0multi_ack symref=HEAD:refs/heads/main agent=git/2.39\n".encode(),
    f"{FEATURE} refs/heads/feature/x\n".encode(),
    f"{MAIN} refs/heads/main\n".encode(),
    f"{TAG_OBJECT} refs/tags/v1\n".encode(),
    f"{TAGGED} refs/tags/v1^{{}}\n".encode(),
)
EXPECTED = RemoteRefs(
    refs={"refs/heads/feature/x": FEATURE, "refs/heads/main": MAIN, "refs/tags/v1": TAGGED},
    head=MAIN,
    head_target="refs/heads/main",
)


def parse(data: bytes, *, smart_http: bool = True, chunk: int | None = None) -> RemoteRefs:
    """As the transports read: `chunk` bytes at a time, until the parser has the whole advertisement."""
    parser = RefsParser("srv", smart_http=smart_http)
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        if parser.feed(data[i : i + step]):
            break
    return parser.result()


def test_pkt_line_frames_its_length_in_hex() -> None:
    assert pkt_line(b"hello\n") == b"000ahello\n"
    assert list(PktReader("srv").feed(b"000ahello\n0000")) == [b"hello", None]


@pytest.mark.parametrize("chunk", [None, 1, 3, 7, 64])
def test_an_advertisement_parses_whatever_the_chunks(chunk: int | None) -> None:
    """A transport hands over what it read: a pkt-line may be split anywhere, even inside its length."""
    assert parse(smart_http_answer(*ADVERTISED), chunk=chunk) == EXPECTED


def test_git_daemon_sends_no_service_line() -> None:
    data = b"".join(pkt_line(line) for line in ADVERTISED) + b"0000"
    assert parse(data, smart_http=False) == EXPECTED


def test_old_servers_may_omit_the_flush_after_the_service_line() -> None:
    assert parse(smart_http_answer(*ADVERTISED, service_flush=False)) == EXPECTED


def test_protocol_v1_announces_itself_first() -> None:
    assert parse(smart_http_answer(b"version 1\n", *ADVERTISED)) == EXPECTED


def test_an_empty_repository_advertises_only_capabilities() -> None:
    empty = parse(smart_http_answer(b"0" * 40 + b" capabilities^{}\0agent=git/2.39\n"))
    assert empty == RemoteRefs(refs={}, head=None, head_target=None)


def test_sha256_repositories() -> None:
    refs = parse(smart_http_answer(f"{SHA256} refs/heads/main\n".encode())).refs
    assert refs == {"refs/heads/main": SHA256}


def test_an_error_packet_is_shown_without_credentials_or_control_characters() -> None:
    err = pkt_line(b"ERR no such repo https://user:s3cret@host/x\x1b[31m\n")
    with pytest.raises(RepoNotFound, match=r"^srv: no such repo https://host/x \[31m$") as info:
        parse(err, smart_http=False)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_an_error_packet_after_the_first_ref_is_an_error_too(chunk: int | None) -> None:
    data = smart_http_answer(*ADVERTISED[:1], b"ERR gone https://user:s3cret@host/x\n")
    with pytest.raises(RepoNotFound, match=r"^srv: gone https://host/x$"):
        parse(data, chunk=chunk)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (pkt_line(b"<html>\n") + b"0000", "does not speak git's smart HTTP protocol"),
        (b"<html></html>", "did not answer with git's protocol"),
        (pkt_line(b"# service=git-upload-pack\n") + b"00000001", "unexpected git protocol version"),  # v2
        (smart_http_answer(b"not-a-sha refs/heads/main\n"), "malformed ref advertisement"),
        (smart_http_answer(f"{MAIN}refs/heads/main\n".encode()), "malformed ref advertisement"),
        # After the first line (capabilities), the other lines take a faster path: the same checks.
        (smart_http_answer(*ADVERTISED[:1], b"not-a-sha refs/heads/x\n"), "malformed ref advertisement"),
        (smart_http_answer(*ADVERTISED[:1], f"{MAIN} \n".encode()), "malformed ref advertisement"),
        (smart_http_answer(*ADVERTISED[:1], f"{MAIN}refs/heads/x\n".encode()), "malformed ref advertisement"),
        # Two lines in one pkt-line, beside a bad one: as many matches as lines, still refused.
        (
            smart_http_answer(
                *ADVERTISED[:1], f"{MAIN} refs/heads/a\n{MAIN} refs/heads/b\n".encode(), b"x\n"
            ),
            "malformed ref advertisement",
        ),
        (smart_http_answer(*ADVERTISED)[:-4], "before the end of its refs"),
        (b"", "before the end of its refs"),
    ],
)
def test_what_is_not_an_advertisement_is_refused(data: bytes, match: str) -> None:
    with pytest.raises(RepoUnreachable, match=match):
        parse(data)


def test_the_size_cap_counts_every_byte_fed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_ADVERTISEMENT", 1000)
    reader = PktReader("srv")
    line = pkt_line(f"{MAIN} refs/heads/b\n".encode())
    for _ in range(1000 // len(line)):
        list(reader.feed(line))
    with pytest.raises(RepoUnreachable, match="srv sent more than 0 MiB of refs"):
        list(reader.feed(line))


def test_ls_remote_output() -> None:
    out = (
        f"ref: refs/heads/main\tHEAD\n{MAIN}\tHEAD\n"
        f"{FEATURE}\trefs/heads/feature/x\n{MAIN}\trefs/heads/main\n"
        f"{TAG_OBJECT}\trefs/tags/v1\n{TAGGED}\trefs/tags/v1^{{}}\n"
    ).encode()
    assert parse_ls_remote(out, "srv") == EXPECTED
    with pytest.raises(RepoUnreachable, match="malformed"):
        parse_ls_remote(b"no tab here\n", "srv")


@pytest.mark.parametrize(
    ("ref", "commit"),
    [
        ("HEAD", MAIN),
        ("main", MAIN),
        ("refs/heads/main", MAIN),
        ("v1", TAGGED),  # a tag wins over a branch of the same name, as git's own lookup order
        ("feature/x", FEATURE),
        ("pull/1/head", "f" * 40),  # refs/<ref>
        ("refs/heads/nope", None),
        ("nope", None),
    ],
)
def test_pick_ref(ref: str, commit: str | None) -> None:
    refs = RemoteRefs(
        refs={**EXPECTED.refs, "refs/heads/v1": FEATURE, "refs/pull/1/head": "f" * 40},
        head=MAIN,
        head_target=None,
    )
    assert pick_ref(refs, ref) == commit


# --- protocol v2 (git://): capabilities, then `ls-refs` for the refs a lookup may pick -------------

V2_CAPABILITIES = (
    pkt_line(b"version 2\n")
    + pkt_line(b"agent=git/2.39.5\n")
    + pkt_line(b"ls-refs=unborn\n")
    + pkt_line(b"fetch=shallow wait-for-done\n")
    + pkt_line(b"server-option\n")
    + pkt_line(b"object-format=sha1\n")
    + b"0000"
)
V2_REFS = (
    pkt_line(f"{MAIN} HEAD symref-target:refs/heads/main\n".encode())
    + pkt_line(f"{FEATURE} refs/heads/feature/x\n".encode())
    + pkt_line(f"{MAIN} refs/heads/main\n".encode())
    + pkt_line(f"{TAG_OBJECT} refs/tags/v1 peeled:{TAGGED}\n".encode())
    + b"0000"
)


def v2_exchange(
    answer: bytes, prefixes: tuple[str, ...], *, chunk: int | None = None
) -> tuple[RemoteRefs, bytes]:
    """Feed a v2 server's capabilities and answer as a transport would; what the parser made, and the
    one command it asked the transport to send."""
    parser = RefsParser("srv", smart_http=False, prefixes=prefixes)
    step = chunk or len(answer)
    sent = b""
    for i in range(0, len(answer), step):
        done = parser.feed(answer[i : i + step])
        sent += parser.take_request() or b""
        if done:
            break
    assert parser.take_request() is None  # asked once
    return parser.result(), sent


@pytest.mark.parametrize("chunk", [None, 1, 5, 64])
def test_a_v2_server_is_asked_for_the_refs_and_its_answer_read(chunk: int | None) -> None:
    refs, sent = v2_exchange(V2_CAPABILITIES + V2_REFS, ("refs/heads/main",), chunk=chunk)
    assert refs == EXPECTED
    assert sent == ls_refs_command(("refs/heads/main",), object_format="sha1")


def test_the_ls_refs_command_is_framed_as_git_sends_it() -> None:
    assert ls_refs_command(("HEAD", "refs/heads/x")) == (
        b"0014command=ls-refs\n"
        b"0001"
        b"0009peel\n"
        b"000csymrefs\n"
        b"0014ref-prefix HEAD\n"
        b"001cref-prefix refs/heads/x\n"
        b"0000"
    )
    assert b"object-format=sha256\n" in ls_refs_command((), object_format="sha256")
    for bad in ("a b", "a\nb", "a\0b", ""):
        with pytest.raises(ValueError, match="not a ref prefix"):
            ls_refs_command((bad,))


@pytest.mark.parametrize(
    ("ref", "prefixes"),
    [
        ("HEAD", ("HEAD",)),
        ("refs/heads/main", ("refs/heads/main",)),
        ("main", ("refs/tags/main", "refs/heads/main", "refs/main")),
        ("pull/1/head", ("refs/tags/pull/1/head", "refs/heads/pull/1/head", "refs/pull/1/head")),
    ],
)
def test_ref_prefixes_hold_every_ref_pick_ref_may_choose(ref: str, prefixes: tuple[str, ...]) -> None:
    assert ref_prefixes(ref) == prefixes


def test_a_v0_answer_to_a_v2_request_is_read_as_v0() -> None:
    """A daemon older than git 2.18 ignores the request for v2 and advertises every ref."""
    refs, sent = v2_exchange(
        smart_http_answer(*ADVERTISED)[len(pkt_line(b"# service=git-upload-pack\n")) + 4 :], ("x",)
    )
    assert (refs, sent) == (EXPECTED, b"")


def test_a_sha256_v2_server_gets_its_object_format() -> None:
    caps = pkt_line(b"version 2\n") + pkt_line(b"ls-refs\n") + pkt_line(b"object-format=sha256\n") + b"0000"
    refs, sent = v2_exchange(
        caps + pkt_line(f"{SHA256} refs/heads/main\n".encode()) + b"0000", ("refs/heads/main",)
    )
    assert refs.refs == {"refs/heads/main": SHA256}
    assert b"object-format=sha256\n" in sent


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        # v2 offered without ls-refs: nothing to ask
        (pkt_line(b"version 2\n") + pkt_line(b"fetch\n") + b"0000", RepoUnreachable, "without listing refs"),
        (V2_CAPABILITIES + pkt_line(b"not-a-sha refs/heads/main\n") + b"0000", RepoUnreachable, "malformed"),
        (
            V2_CAPABILITIES + pkt_line(f"{MAIN} refs/heads/main weird\n".encode()) + b"0000",
            RepoUnreachable,
            "malformed",
        ),
        (
            V2_CAPABILITIES + pkt_line(f"{MAIN} refs/tags/v1 peeled:zz\n".encode()) + b"0000",
            RepoUnreachable,
            "malformed",
        ),
        (V2_CAPABILITIES + pkt_line(b"ERR no such ref\n"), RepoNotFound, "no such ref"),
        (V2_CAPABILITIES + V2_REFS[:-4], RepoUnreachable, "before the end of its refs"),
        (V2_CAPABILITIES, RepoUnreachable, "before the end of its refs"),
    ],
)
def test_what_is_not_a_v2_answer_is_refused(answer: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        v2_exchange(answer, ("refs/heads/main",))


def test_v2_is_refused_where_it_was_not_asked_for() -> None:
    """Smart HTTP asks for v0: a v2 answer there cannot be followed by a command."""
    with pytest.raises(RepoUnreachable, match="unexpected git protocol version"):
        parse(pkt_line(b"# service=git-upload-pack\n") + b"0000" + V2_CAPABILITIES)
