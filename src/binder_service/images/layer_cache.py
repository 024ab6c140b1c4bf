"""The layer cache any engine can use: which image a build imports cache from, and whether it did.

Images are ``<prefix><slug-hash>:<commit>``, so every commit of a repository is a tag of one registry
repository; the most recent of them carries the inline cache metadata of the layers a new commit most
likely shares. The last image this process built per repository is remembered; otherwise (after a
restart, or a build by another replica) the registry's tags are asked, newest `created` first.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import BinderError
from ..events import Phase
from .registry.catalogue import RegistryImages
from .registry.client import split_image

if TYPE_CHECKING:
    from ..builds.executor import Emit

log = logging.getLogger(__name__)

MAX_REMEMBERED = 10000  # repositories whose latest image is kept in memory


class LayerCache:
    """Chooses the image a build of `image` imports its layer cache from."""

    def __init__(self, registry: RegistryImages | None, *, tag_limit: int = 50) -> None:
        self._registry = registry
        self._tag_limit = tag_limit
        self._latest: OrderedDict[str, str] = OrderedDict()  # registry repository -> its latest image

    async def source(self, image: str) -> str | None:
        """The repository's most recent image other than `image`; None when there is none (or no registry:
        a local engine already has its own layers)."""
        if self._registry is None:
            return None
        name, _, tag = image.rpartition(":")
        known = self._latest.get(name)
        if known is not None and known != image:
            return known
        _, repo, _ = split_image(image)
        try:
            newest = await self._registry.newest(repo, limit=self._tag_limit)
        except BinderError as e:  # no cache is a slower build, never a failed one
            log.warning("layer cache lookup failed", extra={"image": image, "error": e.message})
            return None
        return f"{name}:{newest}" if newest and newest != tag else None

    def built(self, image: str) -> None:
        """`image` was just built: the next commit of its repository imports from it."""
        name = image.rpartition(":")[0]
        self._latest[name] = image
        self._latest.move_to_end(name)
        while len(self._latest) > MAX_REMEMBERED:
            self._latest.popitem(last=False)


# buildx's plain progress: "#4 importing cache manifest from <ref>", "#4 ERROR: ...", "#7 CACHED".
_IMPORT = re.compile(r"^#(\d+) importing cache manifest from (\S+)")
_ERROR = re.compile(r"^#(\d+) ERROR\b")
_CACHED = re.compile(r"^#\d+ CACHED\b")
# buildah (engines/buildah.py): a step taken from the registry cache repository (`--cache-from`).
_PULLED = re.compile(r"^--> Cache pulled from remote (\S+):[0-9a-f]+$")


@dataclass
class CacheWatch:
    """Reads a build's log lines: did it reuse layers, and were they the imported image's?

    Says "Reusing layers of <image>" once, at the first step the engine took from a cache it imported.
    """

    cache_from: str | None
    hit: bool = False
    _import_steps: set[str] = field(default_factory=set)
    _import_failed: bool = False

    def _imported(self) -> bool:
        return bool(self.cache_from and self._import_steps and not self._import_failed)

    def feed(self, emit: Emit, phase: Phase, message: str) -> None:
        for line in message.splitlines():
            if (found := _IMPORT.match(line)) and found.group(2) == self.cache_from:
                self._import_steps.add(found.group(1))
            elif (found := _ERROR.match(line)) and found.group(1) in self._import_steps:
                self._import_failed = True
            elif (found := _PULLED.match(line)) and not self.hit:
                # Only the registry's cache counts (buildah's "Using cache" alone is its local storage).
                self.hit = True
                emit(phase, f"Reusing layers of {self.cache_from or found.group(1)}\n")
            elif _CACHED.match(line) and not self.hit and self._imported():
                # A hit is a step taken from the imported image's cache: a step the engine happened to
                # have cached itself (an earlier build on this node) is not the layer cache at work.
                self.hit = True
                emit(phase, f"Reusing layers of {self.cache_from}\n")
