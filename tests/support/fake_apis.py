"""Local fakes of GitHub's and GitLab's REST APIs: real HTTP/1.1 servers on loopback (stdlib only).

They answer with the status codes, headers and bodies the public REST docs show, for the endpoints
the providers use, and keep a log of every request so tests can see what was sent:

GitHub (`FakeGitHub`, docs.github.com/rest):
    GET /repos/{owner}/{repo}                    repository (`default_branch`, ...); 404 / 301 when renamed
    GET /repos/{owner}/{repo}/commits/{ref}      commit JSON, or the bare sha for
                                                 `Accept: application/vnd.github.sha`; 422 unknown ref,
                                                 404 unknown repository, 409 empty repository
    GET /repositories/{id}/...                   where a renamed repository's 301 points
    GET /gists/{id}                              gist with `public`, `owner` and `history` (newest first)
  Every answer carries `x-ratelimit-{limit,remaining,reset,used,resource}`; 200s carry an `ETag` and
  `If-None-Match` with it gives 304. Without a token the limit is 60 and every answer counts, 304s
  included; with a valid token it is 5000 and 304s are free (GitHub's documented rule). Past the limit:
  403 with "API rate limit exceeded for ...". Unknown tokens: 401 "Bad credentials".

GitLab (`FakeGitLab`, docs.gitlab.com/api):
    GET /api/v4/projects/{id or URL-escaped path}                       project; "404 Project Not Found"
    GET /api/v4/projects/{id or path}/repository/commits/{escaped ref}  commit JSON; "404 Commit Not Found"
  `PRIVATE-TOKEN` opens private projects; `RateLimit-*` headers on every answer, 429 "Retry later" past
  the limit with `Retry-After`.

Switches on both: `fail_status` (every request answers e.g. 502), `delay` (seconds before answering),
`malformed` ("json": truncated JSON, "shape": valid JSON of the wrong shape, "html": a proxy's page).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

GITHUB_DOCS = "https://docs.github.com/rest"
_ids = itertools.count(1000)


def sha_of(seed: str) -> str:
    """A deterministic 40-hex commit id for `seed`."""
    return hashlib.sha1(seed.encode()).hexdigest()


@dataclass(frozen=True)
class Seen:
    """One request the fake answered."""

    path: str  # raw request target, as sent
    headers: dict[str, str]  # request headers, lower-case names
    status: int
    answer_headers: dict[str, str]  # as sent back


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> Answer:
        body = json.dumps(data, indent=2).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **headers})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeApi

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end, and their threads with them
    # Head and body leave in one segment, as from a real server: written separately, Nagle plus the
    # client's delayed ACK add ~40 ms to every answer with a body.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        try:
            self.server.fake._handle(self)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True


class FakeApi:
    """The server, the request log and the switches; subclasses answer the API's routes."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.fail_status: int | None = None
        self.delay: float = 0.0
        self.malformed: str | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in `delay`
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeApi:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # --- what tests read --------------------------------------------------------------------------

    def requests_to(self, fragment: str) -> list[Seen]:
        """Requests whose path contains `fragment`."""
        return [s for s in self.seen if fragment in s.path]

    # --- serving ----------------------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        if self.delay:
            self._stopping.wait(self.delay)
        path = h.path.partition("?")[0]
        with self._lock:  # handlers run in threads; the counters and the log are shared
            if self.fail_status is not None:
                answer = Answer.json(self.fail_status, {"message": "Server Error"})
            else:
                answer = self.answer(path, headers)
                if self.malformed and answer.status == 200:
                    answer = self._malformed(answer)
            answer.headers.update(self.common_headers(headers))
            self.seen.append(Seen(h.path, headers, answer.status, dict(answer.headers)))
        h.send_response(answer.status)
        for name, value in answer.headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(answer.body)))
        h.end_headers()
        h.wfile.write(answer.body)

    def _malformed(self, answer: Answer) -> Answer:
        if self.malformed == "json":
            return Answer(
                200, answer.body[: len(answer.body) // 2] or b"{", {"Content-Type": "application/json"}
            )
        if self.malformed == "shape":
            return Answer.json(200, ["not", "what", "you", "asked", "for"])
        return Answer(200, b"<html><body>Bad gateway, try later</body></html>", {"Content-Type": "text/html"})

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        raise NotImplementedError

    def common_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {}


def _segments(path: str) -> list[str]:
    """Raw (still escaped) path segments: an escaped "/" stays inside its segment."""
    return path.strip("/").split("/")


# --- GitHub ---------------------------------------------------------------------------------------


@dataclass
class GhRepo:
    owner: str
    name: str
    id: int = field(default_factory=lambda: next(_ids))
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    private: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def commit_for(self, ref: str) -> str | None:
        """What GitHub's commits endpoint resolves `ref` to: HEAD, branch, tag, (abbreviated) sha."""
        if ref == "HEAD":
            return self.branches.get(self.default_branch)
        for name in (ref, ref.removeprefix("refs/heads/"), ref.removeprefix("refs/tags/")):
            if name in self.branches:
                return self.branches[name]
            if name in self.tags:
                return self.tags[name]
        commits = set(self.branches.values()) | set(self.tags.values())
        matches = [c for c in commits if len(ref) >= 7 and c.startswith(ref.lower())]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Gist:
    id: str
    owner: str | None
    versions: list[str]  # newest first
    public: bool = True


class FakeGitHub(FakeApi):
    """GitHub's REST API, for the endpoints `gh` and `gist` use."""

    def __init__(self, *, limit: int = 60, authenticated_limit: int = 5000) -> None:
        super().__init__()
        self.repos: dict[tuple[str, str], GhRepo] = {}
        self.moved: dict[tuple[str, str], int] = {}  # renamed (owner, name) -> repository id
        self.gists: dict[str, Gist] = {}
        self.tokens: set[str] = set()
        self.rate_limit_status = 403  # GitHub answers 403, sometimes 429, past the primary limit
        self.secondary_retry_after: int | None = None  # > 0: a secondary rate limit is in force
        self._limits = {"anonymous": limit, "token": authenticated_limit}
        self._used = {"anonymous": 0, "token": 0}
        self.reset_at = int(time.time()) + 3600

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    # --- state ------------------------------------------------------------------------------------

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        branches: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        default_branch: str = "main",
        private: bool = False,
    ) -> GhRepo:
        if branches is None:
            branches = {default_branch: sha_of(f"{owner}/{name}@{default_branch}")}
        repo = GhRepo(owner, name, default_branch=default_branch, branches=branches, tags=tags or {})
        repo.private = private
        self.repos[(owner.lower(), name.lower())] = repo
        return repo

    def delete_repo(self, owner: str, name: str) -> None:
        del self.repos[(owner.lower(), name.lower())]

    def rename_repo(self, owner: str, name: str, new_owner: str, new_name: str) -> None:
        repo = self.repos.pop((owner.lower(), name.lower()))
        repo.owner, repo.name = new_owner, new_name
        self.repos[(new_owner.lower(), new_name.lower())] = repo
        self.moved[(owner.lower(), name.lower())] = repo.id

    def add_gist(self, gist_id: str, *, owner: str | None, versions: list[str], public: bool = True) -> Gist:
        gist = Gist(gist_id, owner, versions, public)
        self.gists[gist_id] = gist
        return gist

    def exhaust(self, identity: str = "anonymous", *, reset_in: int = 600) -> None:
        """Use up the rate limit; it resets `reset_in` seconds from now."""
        self._used[identity] = self._limits[identity]
        self.reset_at = int(time.time()) + reset_in

    def remaining(self, identity: str = "anonymous") -> int:
        return self._limits[identity] - self._used[identity]

    # --- serving ----------------------------------------------------------------------------------

    def _identity(self, headers: dict[str, str]) -> str | None:
        """ "anonymous", "token", or None for a token GitHub does not know."""
        auth = headers.get("authorization")
        if auth is None:
            return "anonymous"
        scheme, _, token = auth.partition(" ")
        return "token" if scheme.lower() in ("bearer", "token") and token in self.tokens else None

    def common_headers(self, headers: dict[str, str]) -> dict[str, str]:
        identity = self._identity(headers) or "anonymous"
        return {
            "x-ratelimit-limit": str(self._limits[identity]),
            "x-ratelimit-remaining": str(max(0, self.remaining(identity))),
            "x-ratelimit-reset": str(self.reset_at),
            "x-ratelimit-used": str(self._used[identity]),
            "x-ratelimit-resource": "core",
            "x-github-api-version-selected": "2022-11-28",
            "x-github-request-id": uuid.uuid4().hex[:16].upper(),
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
        }

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        identity = self._identity(headers)
        if identity is None:
            return Answer.json(
                401, {"message": "Bad credentials", "documentation_url": GITHUB_DOCS, "status": "401"}
            )
        if self.secondary_retry_after:
            return Answer.json(
                403,
                {
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes "
                    "before you try again. If you reach out to GitHub Support for help, please include "
                    "the request ID.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                    "#about-secondary-rate-limits",
                },
                **{"Retry-After": str(self.secondary_retry_after)},
            )
        if self.remaining(identity) <= 0:
            return Answer.json(
                self.rate_limit_status,
                {
                    "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                    "Authenticated requests get a higher rate limit. Check out the documentation for more "
                    "details.)",
                    "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api"
                    "#rate-limiting",
                },
            )
        answer = self._route(path, headers, identity)
        answer = self._conditional(answer, headers)
        if answer.status != 304 or identity == "anonymous":  # 304s are free for authorised requests only
            self._used[identity] += 1
        return answer

    def _conditional(self, answer: Answer, headers: dict[str, str]) -> Answer:
        if answer.status != 200:
            return answer
        weak = not answer.headers.get("Content-Type", "").startswith("application/vnd.github.sha")
        digest = hashlib.sha256(answer.body).hexdigest()[:32]
        etag = f'W/"{digest}"' if weak else f'"{digest}"'
        answer.headers["ETag"] = etag
        answer.headers["Cache-Control"] = "public, max-age=60, s-maxage=60"
        wanted = [t.strip() for t in headers.get("if-none-match", "").split(",") if t.strip()]
        if etag in wanted or "*" in wanted:
            return Answer(304, b"", {"ETag": etag, "Cache-Control": answer.headers["Cache-Control"]})
        return answer

    def _route(self, path: str, headers: dict[str, str], identity: str) -> Answer:
        seg = _segments(path)
        if seg[0] == "repos" and len(seg) >= 3:
            key = (unquote(seg[1]).lower(), unquote(seg[2]).lower())
            if key in self.moved:
                return self._moved(self.moved[key], seg[3:])
            repo = self.repos.get(key)
            if repo is not None and repo.private and identity != "token":
                repo = None  # private repositories are invisible, not forbidden
            return self._repo_route(repo, seg[3:], headers)
        if seg[0] == "repositories" and len(seg) >= 2:
            repo = next((r for r in self.repos.values() if str(r.id) == seg[1]), None)
            return self._repo_route(repo, seg[2:], headers)
        if seg[0] == "gists" and len(seg) == 2:
            return self._gist(unquote(seg[1]))
        return self._not_found("https://docs.github.com/rest")

    def _moved(self, repo_id: int, rest: list[str]) -> Answer:
        location = f"{self.url}/repositories/{repo_id}" + "".join(f"/{s}" for s in rest)
        body = {"message": "Moved Permanently", "url": location, "documentation_url": GITHUB_DOCS}
        return Answer.json(301, body, Location=location)

    def _not_found(self, docs: str) -> Answer:
        return Answer.json(404, {"message": "Not Found", "documentation_url": docs, "status": "404"})

    def _repo_route(self, repo: GhRepo | None, rest: list[str], headers: dict[str, str]) -> Answer:
        if not rest:
            if repo is None:
                return self._not_found("https://docs.github.com/rest/repos/repos#get-a-repository")
            return Answer.json(200, self._repo_json(repo))
        if rest[0] == "commits" and len(rest) >= 2:
            docs = "https://docs.github.com/rest/commits/commits#get-a-commit"
            if repo is None:
                return self._not_found(docs)
            if not repo.branches:
                return Answer.json(
                    409, {"message": "Git Repository is empty.", "documentation_url": docs, "status": "409"}
                )
            ref = unquote("/".join(rest[1:]))  # octokit escapes "/" in the ref; raw slashes work too
            sha = repo.commit_for(ref)
            if sha is None:
                return Answer.json(
                    422,
                    {
                        "message": f"No commit found for SHA: {ref}",
                        "documentation_url": docs,
                        "status": "422",
                    },
                )
            if "application/vnd.github.sha" in headers.get("accept", ""):
                return Answer(
                    200, sha.encode(), {"Content-Type": "application/vnd.github.sha; charset=utf-8"}
                )
            return Answer.json(200, self._commit_json(repo, sha))
        return self._not_found(GITHUB_DOCS)

    def _repo_json(self, repo: GhRepo) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": {"login": repo.owner, "id": 1, "type": "Organization"},
            "html_url": f"https://github.com/{repo.full_name}",
            "fork": False,
            "url": api,
            "clone_url": f"https://github.com/{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "archived": False,
            "disabled": False,
        }

    def _commit_json(self, repo: GhRepo, sha: str) -> dict[str, Any]:
        person = {"name": "Octo Cat", "email": "octocat@github.com", "date": "2024-01-01T00:00:00Z"}
        return {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "commit": {
                "author": person,
                "committer": person,
                "message": "A commit",
                "tree": {
                    "sha": sha_of(sha),
                    "url": f"{self.url}/repos/{repo.full_name}/git/trees/{sha_of(sha)}",
                },
                "url": f"{self.url}/repos/{repo.full_name}/git/commits/{sha}",
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
            },
            "url": f"{self.url}/repos/{repo.full_name}/commits/{sha}",
            "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
            "comments_url": f"{self.url}/repos/{repo.full_name}/commits/{sha}/comments",
            "author": None,
            "committer": None,
            "parents": [],
            "stats": {"total": 1, "additions": 1, "deletions": 0},
            "files": [],
        }

    def _gist(self, gist_id: str) -> Answer:
        gist = self.gists.get(gist_id)
        if gist is None:
            return self._not_found("https://docs.github.com/rest/gists/gists#get-a-gist")
        owner = {"login": gist.owner, "id": 1, "type": "User"} if gist.owner else None
        return Answer.json(
            200,
            {
                "url": f"{self.url}/gists/{gist.id}",
                "id": gist.id,
                "node_id": f"G_{gist.id}",
                "git_pull_url": f"https://gist.github.com/{gist.id}.git",
                "html_url": f"https://gist.github.com/{gist.id}",
                "files": {
                    "hello.py": {
                        "filename": "hello.py",
                        "type": "application/x-python",
                        "language": "Python",
                        "raw_url": f"https://gist.githubusercontent.com/raw/{gist.id}/hello.py",
                        "size": 15,
                        "truncated": False,
                        "content": "print('hello')\n",
                    }
                },
                "public": gist.public,
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-02T00:00:00Z",
                "description": "a gist",
                "comments": 0,
                "user": None,
                "owner": owner,
                "truncated": False,
                "history": [
                    {
                        "user": owner,
                        "version": version,
                        "committed_at": "2024-01-01T00:00:00Z",
                        "change_status": {"total": 1, "additions": 1, "deletions": 0},
                        "url": f"{self.url}/gists/{gist.id}/{version}",
                    }
                    for version in gist.versions
                ],
            },
        )


# --- GitLab ---------------------------------------------------------------------------------------


@dataclass
class GlProject:
    path: str  # "group/subgroup/project"
    id: int = field(default_factory=lambda: next(_ids))
    default_branch: str | None = "main"
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    private: bool = False

    def commit_for(self, ref: str) -> str | None:
        if ref == "HEAD":
            return self.branches.get(self.default_branch or "")
        if ref in self.branches:
            return self.branches[ref]
        if ref in self.tags:
            return self.tags[ref]
        commits = set(self.branches.values()) | set(self.tags.values())
        matches = [c for c in commits if len(ref) >= 7 and c.startswith(ref.lower())]
        return matches[0] if len(matches) == 1 else None


class FakeGitLab(FakeApi):
    """GitLab's REST API v4, for the endpoints `gl` uses."""

    def __init__(self, *, limit: int = 2000) -> None:
        super().__init__()
        self.projects: dict[str, GlProject] = {}
        self.tokens: set[str] = set()
        self.limit = limit
        self.used = 0
        self.reset_at = int(time.time()) + 60

    def __enter__(self) -> FakeGitLab:
        self.start()
        return self

    def add_project(
        self,
        path: str,
        *,
        branches: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        default_branch: str | None = "main",
        private: bool = False,
    ) -> GlProject:
        if branches is None:
            branches = {default_branch: sha_of(f"{path}@{default_branch}")} if default_branch else {}
        project = GlProject(
            path, default_branch=default_branch, branches=branches, tags=tags or {}, private=private
        )
        self.projects[path.lower()] = project
        return project

    def common_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {
            "RateLimit-Name": "throttle_authenticated_api"
            if "private-token" in headers
            else "throttle_unauthenticated_api",
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Observed": str(self.used),
            "RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "RateLimit-Reset": str(self.reset_at),
            "RateLimit-ResetTime": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(self.reset_at)),
            "X-Request-Id": uuid.uuid4().hex,
        }

    def answer(self, path: str, headers: dict[str, str]) -> Answer:
        if self.used >= self.limit:
            retry = max(1, self.reset_at - int(time.time()))
            return Answer(429, b"Retry later\n", {"Content-Type": "text/plain", "Retry-After": str(retry)})
        self.used += 1
        token = headers.get("private-token")
        if token is not None and token not in self.tokens:
            return Answer.json(401, {"message": "401 Unauthorized"})
        seg = _segments(path)
        if seg[:3] != ["api", "v4", "projects"] or len(seg) < 4:
            return Answer.json(404, {"error": "404 Not Found"})
        project = self._project(unquote(seg[3]))
        if project is not None and project.private and token is None:
            project = None
        if project is None:
            return Answer.json(404, {"message": "404 Project Not Found"})
        rest = seg[4:]
        if not rest:
            return Answer.json(200, self._project_json(project))
        if rest[:2] == ["repository", "commits"] and len(rest) >= 3:
            sha = project.commit_for(unquote("/".join(rest[2:])))
            if sha is None:
                return Answer.json(404, {"message": "404 Commit Not Found"})
            return Answer.json(200, self._commit_json(project, sha))
        return Answer.json(404, {"error": "404 Not Found"})

    def _project(self, id_or_path: str) -> GlProject | None:
        if id_or_path.isdigit():
            return next((p for p in self.projects.values() if p.id == int(id_or_path)), None)
        return self.projects.get(id_or_path.lower())

    def _project_json(self, p: GlProject) -> dict[str, Any]:
        namespace, _, name = p.path.rpartition("/")
        return {
            "id": p.id,
            "description": None,
            "name": name,
            "path": name,
            "path_with_namespace": p.path,
            "default_branch": p.default_branch,
            "visibility": "private" if p.private else "public",
            "http_url_to_repo": f"https://gitlab.com/{p.path}.git",
            "web_url": f"https://gitlab.com/{p.path}",
            "namespace": {"full_path": namespace, "kind": "group"},
            "empty_repo": not p.branches,
            "archived": False,
        }

    def _commit_json(self, p: GlProject, sha: str) -> dict[str, Any]:
        return {
            "id": sha,
            "short_id": sha[:8],
            "created_at": "2024-01-01T00:00:00.000+00:00",
            "parent_ids": [],
            "title": "A commit",
            "message": "A commit\n",
            "author_name": "Tanuki",
            "author_email": "tanuki@example.com",
            "authored_date": "2024-01-01T00:00:00.000+00:00",
            "committer_name": "Tanuki",
            "committer_email": "tanuki@example.com",
            "committed_date": "2024-01-01T00:00:00.000+00:00",
            "trailers": {},
            "extended_trailers": {},
            "web_url": f"https://gitlab.com/{p.path}/-/commit/{sha}",
            "stats": {"additions": 1, "deletions": 0, "total": 1},
            "status": None,
            "project_id": p.id,
            "last_pipeline": None,
        }
