"""`BinderDockerSpawner`: DockerSpawner with "Build from repository" (needs `dockerspawner`)."""

from __future__ import annotations

from dockerspawner import DockerSpawner

from .spawner import BuildFromRepoMixin, user_options_without


class BinderDockerSpawner(BuildFromRepoMixin, DockerSpawner):  # type: ignore[misc]
    """DockerSpawner that can start the user's server in an image built from a repository.

    The built image is local to the Docker engine binder-service builds with (and pushed to its
    registry, if one is set), so DockerSpawner finds it without pulling when both share an engine.
    """

    def _use_image(self, image: str) -> None:
        # DockerSpawner.start() would replace self.image with an image chosen on its own form.
        self.user_options = user_options_without(self.user_options, "image")
        self.image = image
