"""Images, the registry they are pushed to and the engine they are built in.

    naming.py         image and pod names: deterministic, registry-valid, hashed (a leaf: no I/O)
    store.py          does this image exist? a registry's manifest or the engine's image list
    registry/         client.py (auth, image references), catalogue.py (tags, manifests, deletes),
                      gc.py (delete what nobody asked for within the retention window)
    engine/           client.py (the one Docker engine client), disk.py (its disk budget)
    layer_cache.py    which image a build imports cache from, and whether it did
    admin.py          the images users built: list and delete their own
    docker_config.py  registry credentials from a docker config.json

Nothing is re-exported here, so importing `naming` (which Settings and the builds use) loads nothing else.
"""
