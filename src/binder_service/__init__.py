"""binder-service: repositories become container images, built with repo2docker and streamed live."""

__version__ = "0.1.0"
