"""`BinderKubeSpawner`: KubeSpawner with "Build from repository" (needs `jupyterhub-kubespawner`)."""

from __future__ import annotations

from kubespawner import KubeSpawner

from .spawner import BuildFromRepoMixin


class BinderKubeSpawner(BuildFromRepoMixin, KubeSpawner):  # type: ignore[misc]
    """KubeSpawner that can start the user's server in an image built from a repository.

    The profile list stays as configured: a user picks a profile (resources, ...) and may build an
    image for it; the built image replaces the profile's image.
    """

    async def load_user_options(self) -> None:
        # KubeSpawner applies the chosen profile's overrides (often an image) inside start();
        # a built image comes after and wins.
        await super().load_user_options()
        if self._binder_image is not None:
            self.image = self._binder_image
