"""Container engines for repo2docker that binder-service ships (entry points `repo2docker.engines`)."""
