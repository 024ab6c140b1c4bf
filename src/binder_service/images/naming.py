"""Image names: deterministic, registry-valid, hashed, derived only here.

An image name is ``[host/]<prefix><slug>:<tag>``: the slug comes from the repository's identity,
escaped to the registry's grammar and suffixed with a hash of the unescaped identity (so two repositories
whose escaped forms collide still differ), and the tag is the resolved commit.
"""

from __future__ import annotations

import functools
import hashlib
import re
from urllib.parse import urlsplit

# The distribution spec's grammar for a repository path component and for a tag.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")

MAX_NAME = 255  # docker's limit on the repository part (host/path), without the tag
SLUG_HASH_LEN = 10
MAX_SLUG = 96  # keeps names readable; the hash carries uniqueness


def registry_host(registry_url: str) -> str:
    """`http://127.0.0.1:5055` -> `127.0.0.1:5055`."""
    return urlsplit(registry_url).netloc


def reference_host(reference: str) -> str | None:
    """The registry host of an image reference (or prefix); None for a short name. Docker's own rule: the
    first path part is a registry host if it has a dot or a colon, or is localhost."""
    first, sep, _ = reference.partition("/")
    return first if sep and ("." in first or ":" in first or first == "localhost") else None


def _has_host(prefix: str) -> bool:
    return reference_host(prefix) is not None


def qualified_prefix(image_prefix: str, registry_url: str) -> str:
    """The prefix with the registry host in front, unless it already names a host."""
    if not registry_url or _has_host(image_prefix):
        return image_prefix
    return f"{registry_host(registry_url)}/{image_prefix}"


def validate_prefix(prefix: str) -> None:
    """Raise ValueError unless `prefix + "x"` is a valid repository name."""
    path = prefix.split("/", 1)[1] if _has_host(prefix) else prefix
    probe = path + "x"
    if not all(_COMPONENT.fullmatch(part) for part in probe.split("/")):
        raise ValueError(
            f"image prefix {prefix!r} does not form valid image names (lowercase a-z, 0-9, . _ - /)"
        )


def slugify(identity: str, *, max_len: int = MAX_SLUG) -> str:
    """A registry-safe, collision-resistant slug for a repository identity (any string)."""
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:SLUG_HASH_LEN]
    readable = _NOT_SLUG.sub("-", identity.lower()).strip("-")[: max(max_len - SLUG_HASH_LEN - 1, 0)]
    readable = readable.strip("-")
    return f"{readable}-{digest}" if readable else digest


def safe_tag(ref: str) -> str:
    """A commit id is already a valid tag; anything else is escaped and hashed into one."""
    if _TAG.fullmatch(ref):
        return ref
    digest = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()[:SLUG_HASH_LEN]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", ref).strip("-.")[:100]
    return f"{readable}-{digest}" if readable else digest


# A pure function the cached path calls on every request, for the same few repositories: hashing and
# slugging again cost ~3% of a request's instructions (bench/instructions.py). At most ~1 MB of names.
@functools.lru_cache(maxsize=512)
def image_name(prefix: str, identity: str, ref: str) -> str:
    """The image for repository `identity` at resolved `ref`, under a qualified `prefix`."""
    room = MAX_NAME - len(prefix)
    slug = slugify(identity, max_len=min(MAX_SLUG, room))
    return f"{prefix}{slug}:{safe_tag(ref)}"


def is_valid_image_name(name: str) -> bool:
    """True if docker and a v2 registry accept `name` (host/path:tag)."""
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag or not _TAG.fullmatch(tag) or len(repo) > MAX_NAME:
        return False
    path = repo.split("/", 1)[1] if _has_host(repo) else repo
    return all(_COMPONENT.fullmatch(part) for part in path.split("/"))


def cache_repository(image: str) -> str:
    """The registry repository that holds buildah's layer cache for `image`'s repository:
    `<repository>-cache` (buildah's `--cache-to/--cache-from` take a repository, never a tag). Never one
    of our image repositories: their last component ends in a hash."""
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    repo = name.rpartition(":")[0] if ":" in last else name
    return f"{repo}{CACHE_SUFFIX}"


CACHE_SUFFIX = "-cache"  # what cache_repository appends to an image repository


POD_NAME_MAX = 63  # a DNS-1123 label: Kubernetes' limit on pod names that also serve as hostnames
POD_HASH_LEN = 16


def build_pod_name(image: str) -> str:
    """The build pod for `image`: deterministic (it is the lock between replicas), a DNS-1123 label,
    readable from the image's last path component, unique by a hash of the whole name."""
    digest = hashlib.sha256(image.encode("utf-8", "surrogatepass")).hexdigest()[:POD_HASH_LEN]
    repo = image.rsplit("/", 1)[-1].split(":", 1)[0]
    room = POD_NAME_MAX - len("build--") - POD_HASH_LEN
    readable = _NOT_SLUG.sub("-", repo.lower()).strip("-")[:room].strip("-")
    return f"build-{readable}-{digest}" if readable else f"build-{digest}"
