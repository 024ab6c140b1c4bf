"""The sans-IO ref advertisement parser on plain bytes: no server, no socket."""

from __future__ import annotations

import pytest

from binder_service.errors import RepoNotFound, RepoUnreachable
from binder_service.providers.git import protocol
from binder_service.providers.git.protocol import (
    PktReader,
    RefsParser,
    RemoteRefs,
    parse_ls_remote,
    pick_ref,
    pkt_line,
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
