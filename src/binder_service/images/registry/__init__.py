"""A distribution v2 registry: the client (auth, references), its catalogue (tags, manifests, deletes) and
garbage collection."""
