"""The one error tree of binder-service.

Core code raises these; the edges map them once: to a JSON body ``{"code", "message"}`` with ``status``
for plain HTTP, or to a ``failed`` event for a stream. Messages are for people and never hold secrets.

    BinderError                      500 internal_error
    ├── InvalidRequest               400 invalid_request
    │   ├── InvalidSpec              400 invalid_spec
    │   └── InputTooLarge            413 input_too_large
    ├── Unauthorized                 401 unauthorized
    ├── Forbidden                    403 forbidden
    │   └── RepoNotAllowed           403 repo_not_allowed
    │       ├── RepoBanned           403 repo_banned
    │       └── DestinationNotAllowed 403 destination_not_allowed
    ├── NotFound                     404 not_found
    │   ├── UnknownProvider          404 unknown_provider
    │   ├── RepoNotFound             404 repo_not_found
    │   ├── RefNotFound              404 ref_not_found
    │   ├── BuildNotFound            404 build_not_found
    │   └── ImageNotFound            404 image_not_found
    ├── BuildShared                  409 build_shared
    ├── BuildCancelled               409 build_cancelled
    ├── TooManyRequests              429 too_many_requests
    │   ├── TooManyBuilds            429 too_many_builds
    │   ├── QuotaExceeded            429 quota_exceeded
    │   └── RateLimited              429 rate_limited
    ├── UpstreamError                502 upstream_error
    │   ├── HubUnavailable           503 hub_unavailable
    │   ├── RepoUnreachable          502 repo_unreachable
    │   ├── UpstreamTimeout          504 upstream_timeout
    │   ├── RegistryUnavailable      503 registry_unavailable
    │   ├── EngineUnavailable        503 engine_unavailable
    │   ├── BuilderUnavailable       503 builder_unavailable
    │   ├── StoreUnavailable         503 store_unavailable
    │   └── KubeStatus               502 kubernetes_error
    ├── ImageShared                  409 image_shared
    ├── NoRegistry                   409 no_registry
    ├── ServiceStopping              503 service_stopping
    └── BuildError                   500 build_failed
        ├── BuildTimeout             504 build_timeout
        ├── BuildOutOfMemory         500 build_out_of_memory
        └── BuildOwnerGone           503 build_owner_gone

A branch's status holds for its children: each child refines its branch's answer (a 413 is a bad
request, a 503 or 504 a failed upstream) and never changes its kind, so code that catches a branch
knows what the client will be told. A test checks this.
"""

from __future__ import annotations

from typing import ClassVar


class BinderError(Exception):
    """Base of every error binder-service reports to a client."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(BinderError):
    """The request itself is malformed."""

    code = "invalid_request"
    status = 400


class InvalidSpec(InvalidRequest):
    """A repository spec, URL or ref that cannot be parsed."""

    code = "invalid_spec"


class InputTooLarge(InvalidRequest):
    """A spec, URL or ref longer than the configured limit."""

    code = "input_too_large"
    status = 413


class Unauthorized(BinderError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    status = 401


class Forbidden(BinderError):
    """Valid credentials without the permission needed."""

    code = "forbidden"
    status = 403


class RepoNotAllowed(Forbidden):
    """A repository the configuration does not allow (protocol, local path, option-like URL)."""

    code = "repo_not_allowed"


class RepoBanned(RepoNotAllowed):
    """The repository matches a banned pattern, or no allowed one (operator's spec policy)."""

    code = "repo_banned"


class DestinationNotAllowed(RepoNotAllowed):
    """A repository host that resolves to a loopback, private, link-local or other non-public address."""

    code = "destination_not_allowed"


class NotFound(BinderError):
    """Something named in the request does not exist."""

    code = "not_found"
    status = 404


class UnknownProvider(NotFound):
    """No repository provider of that name is enabled."""

    code = "unknown_provider"


class RepoNotFound(NotFound):
    """The repository host answered, but it has no such repository (or will not show it to us)."""

    code = "repo_not_found"


class RefNotFound(NotFound):
    """The repository exists but the ref does not resolve to a commit."""

    code = "ref_not_found"


class BuildNotFound(NotFound):
    """No build with that id is known (it never existed or left the history)."""

    code = "build_not_found"


class ImageNotFound(NotFound):
    """No image of that name was built by this service (or it was deleted)."""

    code = "image_not_found"


class BuildShared(BinderError):
    """A user asked to cancel a build that other users are waiting for too."""

    code = "build_shared"
    status = 409


class BuildCancelled(BinderError):
    """The build was cancelled on request."""

    code = "build_cancelled"
    status = 409


class TooManyRequests(BinderError):
    """Too many requests: a user went past their request rate, or a limit below says so."""

    code = "too_many_requests"
    status = 429


class TooManyBuilds(TooManyRequests):
    """A user already has as many builds queued or running as they may."""

    code = "too_many_builds"


class QuotaExceeded(TooManyRequests):
    """As many builds of matching repositories are running as the operator's per-spec quota allows."""

    code = "quota_exceeded"


class RateLimited(TooManyRequests):
    """A repository host's API refuses more requests until its rate limit resets."""

    code = "rate_limited"


class UpstreamError(BinderError):
    """Something binder-service depends on answered badly."""

    code = "upstream_error"
    status = 502


class HubUnavailable(UpstreamError):
    """JupyterHub's API, which identifies users, did not answer properly."""

    code = "hub_unavailable"
    status = 503


class RepoUnreachable(UpstreamError):
    """The repository host could not be reached or refused us."""

    code = "repo_unreachable"


class UpstreamTimeout(UpstreamError):
    """A network call did not finish within its timeout."""

    code = "upstream_timeout"
    status = 504


class RegistryUnavailable(UpstreamError):
    """The container registry is down, refused our credentials or answered nonsense."""

    code = "registry_unavailable"
    status = 503


class EngineUnavailable(UpstreamError):
    """The Docker engine at DOCKER_HOST does not answer."""

    code = "engine_unavailable"
    status = 503


class ImageShared(BinderError):
    """Other users asked for this image too: only an admin deletes it."""

    code = "image_shared"
    status = 409


class NoRegistry(BinderError):
    """Images are kept in the local engine: there is no registry to delete one from."""

    code = "no_registry"
    status = 409


class ServiceStopping(BinderError):
    """The service is stopping (a graceful stop): an open stream's last word."""

    code = "service_stopping"
    status = 503


class BuilderUnavailable(UpstreamError):
    """repo2docker (the builder) is missing or broken here: no build can run."""

    code = "builder_unavailable"
    status = 503


class StoreUnavailable(UpstreamError):
    """The build store's database does not answer (a read the request needs could not be made)."""

    code = "store_unavailable"
    status = 503


class KubeStatus(UpstreamError):
    """The Kubernetes API answered a call with an error Status (translated once, in its client).

    `api_status` is the API's HTTP status and `reason` its Status reason (AlreadyExists, NotFound,
    Expired, Forbidden, ...): the executor decides on those (409 attach, 404 gone, 410 re-list).
    """

    code = "kubernetes_error"

    def __init__(self, api_status: int, reason: str, message: str) -> None:
        super().__init__(f"{message or reason} (HTTP {api_status})")
        self.api_status, self.reason = api_status, reason


class BuildError(BinderError):
    """repo2docker (or the build pod) failed."""

    code = "build_failed"
    status = 500


class BuildTimeout(BuildError):
    """The build ran past its timeout and was stopped."""

    code = "build_timeout"
    status = 504


class BuildOutOfMemory(BuildError):
    """The build (a RUN step, or repo2docker or buildah) went over its memory limit
    (`BINDER_SERVICE_BUILD_MEMORY_LIMIT`, or the build pod's) and the kernel killed it."""

    code = "build_out_of_memory"


class BuildOwnerGone(BuildError):
    """The replica running the build stopped answering (its lease ran out): the build is abandoned, and
    the next request builds the image again."""

    code = "build_owner_gone"
    status = 503


def error_tree() -> list[type[BinderError]]:
    """BinderError and the classes of this module below it, depth first in definition order: the tree
    drawn above (the docs' error table and its tests read it)."""
    order: list[type[BinderError]] = []

    def walk(cls: type[BinderError]) -> None:
        order.append(cls)
        for sub in cls.__subclasses__():
            if sub.__module__ == __name__:
                walk(sub)

    walk(BinderError)
    return order
