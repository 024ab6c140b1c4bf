"""git's ref advertisement, sans-IO: bytes in (pkt-lines or `git ls-remote` output), RemoteRefs out.

The transports feed whatever they read; everything here is synchronous and testable on plain bytes.
A malformed or hostile answer becomes RepoUnreachable/RepoNotFound, never an exception of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from ...errors import RepoNotFound, RepoUnreachable
from ...security.redaction import scrub

__all__ = [
    "MAX_ADVERTISEMENT",
    "Advertisement",
    "PktReader",
    "RefsParser",
    "RemoteRefs",
    "parse_ls_remote",
    "pick_ref",
    "pkt_line",
]

# A hostile server must not exhaust memory: real advertisements, even GitHub's biggest, are far smaller.
MAX_ADVERTISEMENT: Final = 32 << 20

_SHA = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class RemoteRefs:
    """A repository's ref advertisement; annotated tags are peeled to the commit they tag."""

    refs: dict[str, str]  # full ref name -> commit id
    head: str | None  # commit HEAD points at, if advertised
    head_target: str | None  # e.g. "refs/heads/main", if the server advertised HEAD's symref


def pick_ref(refs: RemoteRefs, ref: str) -> str | None:
    """The commit `ref` names: HEAD, a full ref, a tag, a branch, else `refs/<ref>` (e.g. pull/1/head)."""
    if ref == "HEAD":
        return refs.head
    if ref.startswith("refs/"):
        return refs.refs.get(ref)
    for candidate in (f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/{ref}"):
        if candidate in refs.refs:
            return refs.refs[candidate]
    return None


def pkt_line(payload: bytes) -> bytes:
    """`payload` framed as one pkt-line (four hex digits of length, then the payload)."""
    return f"{len(payload) + 4:04x}".encode() + payload


class Advertisement:
    """Collects `<sha> <name>` lines (pkt-line payloads or ls-remote output) into RemoteRefs."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._refs: dict[str, str] = {}
        self._peeled: dict[str, str] = {}
        self._head: str | None = None
        self._head_target: str | None = None
        self._first = True

    def _bad(self) -> RepoUnreachable:
        return RepoUnreachable(f"{self._where} sent a malformed ref advertisement")

    def add_pkt(self, line: bytes) -> None:
        """One v0/v1 advertisement line; the first carries capabilities after a NUL."""
        if self._first:
            self._first = False
            line, _, caps = line.partition(b"\0")
            for cap in caps.split():
                if cap.startswith(b"symref=HEAD:"):
                    self._head_target = cap[len(b"symref=HEAD:") :].decode("utf-8", "replace")
        sha, sep, name = line.partition(b" ")
        if not sep:
            raise self._bad()
        if name == b"capabilities^{}":  # an empty repository advertises only its capabilities
            return
        self._add(sha, name)

    def add_ls_remote(self, line: bytes) -> None:
        """One line of `git ls-remote --symref`: `<sha>\\t<name>` or `ref: <target>\\t<name>`."""
        left, sep, name = line.partition(b"\t")
        if not sep:
            raise self._bad()
        if left.startswith(b"ref: "):
            if name == b"HEAD":
                self._head_target = left[5:].decode("utf-8", "replace")
            return
        self._add(left, name)

    def _add(self, sha: bytes, name: bytes) -> None:
        if not _SHA.fullmatch(sha) or not name:
            raise self._bad()
        commit, ref = sha.decode("ascii"), name.decode("utf-8", "replace")
        if ref.endswith("^{}"):
            self._peeled[ref[:-3]] = commit
        elif ref == "HEAD":
            self._head = commit
        else:
            self._refs[ref] = commit

    def result(self) -> RemoteRefs:
        refs = self._refs | {name: sha for name, sha in self._peeled.items() if name in self._refs}
        return RemoteRefs(refs=refs, head=self._head, head_target=self._head_target)


def parse_ls_remote(output: bytes, where: str) -> RemoteRefs:
    """The whole stdout of `git ls-remote --symref` as RemoteRefs."""
    advert = Advertisement(where)
    for line in output.splitlines():
        if line:
            advert.add_ls_remote(line)
    return advert.result()


class PktReader:
    """Splits a byte stream into pkt-line payloads (trailing LF removed), with an overall size cap."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._buf = bytearray()
        self._seen = 0

    def feed(self, data: bytes) -> Iterator[bytes | None]:
        """Complete pkt-lines seen so far: payloads, None for a flush (0000)."""
        self._seen += len(data)
        if self._seen > MAX_ADVERTISEMENT:
            raise RepoUnreachable(f"{self._where} sent more than {MAX_ADVERTISEMENT >> 20} MiB of refs")
        self._buf += data
        pos = 0
        while len(self._buf) - pos >= 4:
            head = bytes(self._buf[pos : pos + 4])
            try:
                size = int(head, 16)
            except ValueError:
                raise RepoUnreachable(f"{self._where} did not answer with git's protocol") from None
            if size == 0:
                pos += 4
                yield None
                continue
            if size < 4:  # 0001/0002 are protocol v2 delimiters, which we never ask for
                raise RepoUnreachable(f"{self._where} answered with an unexpected git protocol version")
            if len(self._buf) - pos < size:
                break
            payload = bytes(self._buf[pos + 4 : pos + size])
            pos += size
            yield payload[:-1] if payload.endswith(b"\n") else payload
        del self._buf[:pos]


class RefsParser:
    """Turns pkt-line payloads into RemoteRefs; `done` once the advertisement's closing flush arrives."""

    def __init__(self, where: str, *, smart_http: bool) -> None:
        self._where = where
        self._state: Literal["service", "service-flush", "refs", "done"] = "service" if smart_http else "refs"
        self._advert = Advertisement(where)
        self._any = False

    @property
    def done(self) -> bool:
        return self._state == "done"

    def add(self, pkt: bytes | None) -> None:
        if pkt is not None and pkt.startswith(b"ERR "):
            message = scrub(pkt[4:].decode("utf-8", "replace"))
            raise RepoNotFound(f"{self._where}: {message}")
        if self._state == "service":
            if pkt != b"# service=git-upload-pack":
                raise RepoUnreachable(f"{self._where} does not speak git's smart HTTP protocol")
            self._state = "service-flush"
        elif self._state == "service-flush":
            self._state = "refs"
            if pkt is not None:  # some old servers omit this flush
                self.add(pkt)
        elif pkt is None:
            self._state = "done"
        elif not self._any and pkt == b"version 1":
            pass
        else:
            self._any = True
            self._advert.add_pkt(pkt)

    def result(self) -> RemoteRefs:
        if not self.done:
            raise RepoUnreachable(f"{self._where} closed the connection before the end of its refs")
        return self._advert.result()
